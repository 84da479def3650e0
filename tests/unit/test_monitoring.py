"""`mlsys monitor`'s checks on a small real model: bounds, skew, drift against the train
window and, for features expected to drift, against the batch path on the same records;
performance, volume, upstream, quality per slice."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys import drift
from mlsys.config.schema import (
    Bounds,
    DriftMonitor,
    FeaturesConfig,
    PerformanceMonitor,
    QualityMonitor,
    UpstreamMonitor,
)
from mlsys.data.columns import ANSWER, FEATURE, LABEL
from mlsys.features import fit_pipeline
from mlsys.model import Model
from mlsys.monitoring import checks as c
from mlsys.tasks import Task

FEATURES = OmegaConf.merge(
    OmegaConf.structured(FeaturesConfig),
    {"name": "t", "columns": {"distance": {"source": "distance"}, "wx_temp": {"source": "wx_temp"}}},
)


def _rows(n: int, seed: int, temp: float = 50.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    distance = rng.gamma(2.0, 500.0, n)
    return pd.DataFrame(
        {
            "entity": [f"e{seed}-{i}" for i in range(n)],
            "distance": distance,
            "wx_temp": rng.normal(temp, 10.0, n),
            LABEL: (rng.random(n) < 0.2 + 0.2 * (distance > 1000)).astype(float),
        }
    )


@pytest.fixture(scope="module")
def window_of():
    train = _rows(4000, 0)
    pipeline = fit_pipeline(FEATURES, train)
    x = pipeline.transform_frame(train)
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, train[LABEL]), num_boost_round=10)
    model = Model(booster, pipeline, "v1", {}, Task("binary"), None)
    profile = drift.profile(x, pipeline.names, pipeline.categorical)
    profile |= drift.profile(model.predict_matrix(x).reshape(-1, 1), [ANSWER + "score"], [])

    def window(rows: pd.DataFrame, built: pd.DataFrame | None = None) -> c.Window:
        x = pipeline.transform_frame(rows)
        log = pd.DataFrame({"entity": rows["entity"], "path": "dynamic", ANSWER + "score": model.predict_matrix(x)})
        log["prediction_time"] = pd.Timestamp("2013-12-01", tz="UTC") + pd.to_timedelta(
            np.arange(len(log)) % 5, unit="D"
        )
        for j, name in enumerate(pipeline.names):
            log[FEATURE + name] = x[:, j]
        return c.Window("v1", log, model, profile, {}, built)

    return window


@pytest.mark.parametrize(("value", "severity"), [(0.3, "fail"), (0.2, "warn"), (0.05, None), (float("nan"), None)])
def test_a_figure_past_a_bound_is_a_finding_of_that_severity(value, severity):
    result = c.Result("drift")
    result.judge("x", "psi", value, OmegaConf.structured(Bounds(0.1, 0.25)), "x")
    assert [f.severity for f in result.findings] == ([severity] if severity else [])
    only_warn = c.Result("drift")
    only_warn.judge("x", "psi", 99.0, OmegaConf.structured(Bounds(0.1, None)), "x")
    assert [f.severity for f in only_warn.findings] == ["warn"]  # fail: null, never


def test_skew_names_the_feature_that_differs_and_a_feature_all_missing_is_no_schema_skew(window_of):
    rows = _rows(500, 1).assign(wx_temp=np.nan)  # a sensor out all day: missing in the log and the data alike
    clean = c.skew(window_of(rows, rows), OmegaConf.structured(Bounds(0.0, 0.01)))
    assert clean.findings == [] and clean.figures["compared"] == 500
    w = window_of(rows, rows)
    w.log[FEATURE + "distance"] *= 1.609  # the server computes kilometres
    assert {f.subject for f in c.skew(w, OmegaConf.structured(Bounds(0.0, 0.01))).findings} == {"distance"}


def test_expected_drift_is_judged_against_the_batch_path_on_the_same_records(window_of):
    """Summer is far from the train window, and so are its built rows: quiet. A °C feed
    is far from the same records' built rows (°F): loud."""
    cfg = OmegaConf.merge(OmegaConf.structured(DriftMonitor), {"expected_drift": ["wx_*"]})
    rows = _rows(2000, 2, temp=80.0)
    summer = window_of(rows, rows)
    quiet = c.drift_check(summer, cfg)
    assert quiet.figures["wx_temp"]["psi"] > 1.0 and quiet.figures["wx_temp"]["psi_vs_built"] < 0.01
    assert "wx_temp" not in {f.subject for f in quiet.findings}
    celsius = window_of(rows.assign(wx_temp=(rows.wx_temp - 32) / 1.8), rows)  # served °C, built °F
    loud = c.drift_check(celsius, cfg)
    assert ("wx_temp", "psi_vs_built") in {(f.subject, f.measure) for f in loud.findings if f.severity == "fail"}
    unexpected = c.drift_check(summer, OmegaConf.structured(DriftMonitor))  # not declared: against train
    assert ("wx_temp", "psi") in {(f.subject, f.measure) for f in unexpected.findings}


def test_static_answers_are_profiled_by_the_batch_path_features_of_their_rows(window_of):
    """A lookup-store answer logs no features: drift reads the entity's built row through the
    batch path (what the store's prediction was computed from)."""
    rows = _rows(1000, 5, temp=20.0)
    w = window_of(rows, rows)
    w.log["path"] = "static"
    w.log[[FEATURE + "distance", FEATURE + "wx_temp"]] = np.nan  # the static path logs none
    features = w.features()
    assert len(features) == 1000 and features["wx_temp"].mean() == pytest.approx(rows["wx_temp"].mean())
    assert ("wx_temp", "psi") in {
        (f.subject, f.measure) for f in c.drift_check(w, OmegaConf.structured(DriftMonitor)).findings
    }


def _served(n: int, latency: float, records: int = 1) -> pd.DataFrame:
    """Answered records of `n` requests of `records` each (one received_at per request)."""
    received = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.repeat(np.arange(n), records), unit="s")
    return pd.DataFrame({"received_at": received, "latency_ms": latency, "path": "dynamic"})


def test_performance_judges_latency_error_and_refusal_rates_and_training_time(window_of):
    cfg = OmegaConf.structured(PerformanceMonitor)
    w = window_of(_rows(10, 6))
    w.log = _served(90, 6.0)
    refused = pd.DataFrame({"status": [503] * 2 + [422] * 8, "error": ["overloaded"] * 2 + ["invalid"] * 8})
    w.refused = refused
    before = c.Window("v1", _served(100, 2.0, records=5), w.model, w.profile, {})
    release = {"p50_ms": 1.0, "p99_ms": 1.5}
    out = c.performance(w, before, release, (30.0, 5.0), cfg)
    assert out.figures["error_rate"] == pytest.approx(0.02) and out.figures["rejected_rate"] == pytest.approx(0.08)
    assert out.figures["requests"] == 90 and out.figures["p99_ratio_to_previous_window"] == pytest.approx(3.0)
    found = {(f.subject, f.measure): f.severity for f in out.findings}
    assert found == {
        ("latency", "p99_vs_previous"): "warn",
        ("latency", "p50_vs_release"): "warn",  # 6 ms against 1 ms at release
        ("requests", "error_rate"): "fail",
        ("requests", "rejected_rate"): "fail",
        ("training", "train_seconds_vs_previous"): "warn",  # 30 s against 5 s
    }
    assert "overloaded" in next(f.message for f in out.findings if f.measure == "error_rate")


def test_volume_an_empty_window_is_a_warning_and_traffic_that_stops_a_drop():
    cfg = OmegaConf.structured(Bounds(0.5, 0.9))
    empty = c.volume(_served(0, 1.0), _served(0, 1.0), cfg)
    assert [f.severity for f in empty.findings] == ["warn"] and empty.figures["requests"] == 0
    dropped = c.volume(_served(5, 1.0), _served(100, 1.0, records=3), cfg)
    assert dropped.figures["drop"] == pytest.approx(0.95) and [f.severity for f in dropped.findings] == ["fail"]
    assert c.volume(_served(100, 1.0), _served(100, 1.0), cfg).findings == []


def test_upstream_names_a_source_that_shrank_or_changed_columns():
    cfg = OmegaConf.structured(UpstreamMonitor)
    then = {"fingerprint": "a", "rows": 1000, "columns": ["x", "y"]}
    card = {"data": {"s": then, "old": {"fingerprint": "b", "rows": 10}}}  # "old": a card without columns
    manifest = {
        "sources": {
            "s": {"fingerprint": "c", "rows": 800, "columns": ["x", "z"]},
            "old": {"fingerprint": "b", "rows": 10, "columns": ["q"]},
        }
    }
    out = c.upstream(card, manifest, cfg)
    found = {(f.subject, f.measure): f.severity for f in out.findings}
    assert found == {
        ("s", "rows_lost"): "fail",
        ("s", "columns_changed"): "warn",
        ("s (1,000 -> 800 rows)", "changed"): "warn",
    }
    assert "gone ['y'], new ['z']" in next(f.message for f in out.findings if f.measure == "columns_changed")


def test_quality_per_slice_is_judged_by_the_release_slice_gates_and_calibration_is_shown(window_of):
    rows = _rows(3000, 7).assign(band=np.where(np.arange(3000) % 2, "odd", "even"))
    w = window_of(rows)
    odd = (rows["band"] == "odd").to_numpy()
    w.log.loc[odd, ANSWER + "score"] = 1 - w.log.loc[odd, ANSWER + "score"]  # one slice's ranking inverted
    w.card = {"metrics": {"auc": 0.6, "ece": 0.01}}
    release = OmegaConf.create({"slices": {"bounds": {"auc": {"min": 0.5, "max": None}}, "min_rows": 99}})
    cfg = OmegaConf.merge(OmegaConf.structured(QualityMonitor), {"slice_min_rows": 500})
    out = c.quality(w, rows, cfg, release, ["band"])
    assert {(f.subject, f.measure) for f in out.findings} >= {("slices", "failing")}
    failing = [s["metric"] for s in out.figures["slices"] if s["passed"] is False]
    assert failing == ["band=odd:auc"] and out.figures["slices_judged"] == 2
    assert len(out.figures["by_day"]) == 5 and out.figures["calibration"][0]["rows"] > 0
    assert out.figures["served_ece"] > out.figures["release_test_ece"]


def test_a_small_window_drawn_from_the_reference_itself_is_not_drift():
    """400 records over 100 codes: the raw PSI and JS are mostly sampling noise."""
    rng = np.random.default_rng(3)
    reference = rng.choice(100, 50_000, p=rng.dirichlet(np.ones(100) * 2)).astype(float).reshape(-1, 1)
    spec = drift.profile(reference, ["dest"], [0])["dest"]
    sample = reference[rng.choice(len(reference), 400), 0]
    raw, net = drift.distances(spec, sample), drift.beyond_noise(spec, sample)
    assert raw["psi"] > 0.1 and raw["js"] > 0.15  # past the default warn bounds on noise alone
    assert net["psi"] < 0.1 and net["js"] < 0.15
    shifted = np.where(sample < 50, sample + 50, sample)  # half the traffic moved: still drift
    assert drift.beyond_noise(spec, shifted)["psi"] > 0.25
