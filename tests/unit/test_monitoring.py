"""`mlsys monitor`'s checks on a small real model: bounds, skew, drift against the train
window and, for features expected to drift, against the window before."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys import drift
from mlsys.config.schema import Bounds, DriftMonitor, FeaturesConfig
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


def test_expected_drift_is_judged_against_the_window_before(window_of):
    cfg = OmegaConf.merge(OmegaConf.structured(DriftMonitor), {"expected_drift": ["wx_*"]})
    summer = window_of(_rows(2000, 2, temp=80.0))  # far from the train window, as the season goes
    before = window_of(_rows(2000, 3, temp=79.0)).features()
    quiet = c.drift_check(summer, cfg, before)
    assert quiet.figures["wx_temp"]["psi"] > 1.0 and "wx_temp" not in {f.subject for f in quiet.findings}
    celsius = window_of(_rows(2000, 4, temp=80.0).assign(wx_temp=lambda f: (f.wx_temp - 32) / 1.8))
    loud = c.drift_check(celsius, cfg, before)
    assert {(f.subject, f.measure) for f in loud.findings if f.severity == "fail"} >= {
        ("wx_temp", "psi_vs_previous_window")
    }
    unexpected = c.drift_check(summer, OmegaConf.structured(DriftMonitor), before)  # not declared: against train
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
        (f.subject, f.measure) for f in c.drift_check(w, OmegaConf.structured(DriftMonitor), pd.DataFrame()).findings
    }
