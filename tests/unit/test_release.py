"""Release gates (pure): pass, fail, skip; the infra gate's sandboxed server."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf

from mlsys.config.schema import ReleaseConfig
from mlsys.release import gates as g
from mlsys.tasks import Task

BINARY = Task()

RELEASE = OmegaConf.merge(
    OmegaConf.structured(ReleaseConfig),
    {
        "absolute": {"auc": {"min": 0.7}, "logloss": {"max": 0.5}},
        "slices": {"bounds": {"auc": {"min": 0.6}}, "min_rows": 100},
        "change": {"auc": {"max_worsening": 0.01}, "logloss": {"max_worsening": 0.02, "relative": True}},
        "baseline": {"metric": "auc", "margin": 0.03},
    },
)
METRICS = {"auc": 0.73, "logloss": 0.46, "baseline_logreg": {"auc": 0.65}}


def _passed(gates):
    return {g_["metric"]: g_["passed"] for g_ in gates}


def test_absolute_gates_pass_and_fail():
    assert _passed(g.absolute_gates(METRICS, RELEASE)) == {"auc": True, "logloss": True}
    bad = g.absolute_gates({"auc": 0.69, "logloss": float("nan")}, RELEASE)
    assert _passed(bad) == {"auc": False, "logloss": False}
    assert "0.6900 < 0.7" in bad[0]["reason"]


def test_small_slices_are_reported_not_gated():
    slices = {
        "carrier": {
            "AA": {"rows": 5000, "auc": 0.55},
            "HA": {"rows": 20, "positive_rate": 0.1},
            "UA": {"rows": 4000, "auc": 0.7},
        }
    }
    out = {x["metric"]: x for x in g.slice_gates(slices, RELEASE)}
    assert out["carrier=AA:auc"]["passed"] is False
    assert out["carrier=UA:auc"]["passed"] is True
    assert out["carrier=HA:auc"]["passed"] is None and "not gated" in out["carrier=HA:auc"]["reason"]


def test_change_gates_skipped_without_live_model_and_directional_with_one():
    skipped = g.change_gates(BINARY, METRICS, None, None, RELEASE)
    assert all(x["passed"] is None and "no model is released" in x["reason"] for x in skipped)
    live = {"auc": 0.735, "logloss": 0.455}
    assert _passed(g.change_gates(BINARY, METRICS, live, "v1", RELEASE)) == {"auc": True, "logloss": True}
    worse = {"auc": 0.72, "logloss": 0.47}  # auc -0.015 (> 0.01); logloss +2.2% (> 2%)
    assert _passed(g.change_gates(BINARY, worse, live, "v1", RELEASE)) == {"auc": False, "logloss": False}
    better = {"auc": 0.9, "logloss": 0.2}
    assert _passed(g.change_gates(BINARY, better, live, "v1", RELEASE)) == {"auc": True, "logloss": True}
    broken = g.change_gates(
        BINARY, METRICS, {"error": "the live model v1 cannot score this test window"}, "v1", RELEASE
    )
    assert _passed(broken) == {"auc": False, "logloss": False}


def test_baseline_and_stability_gates():
    assert g.baseline_gate(BINARY, METRICS, RELEASE)["passed"] is True
    assert g.baseline_gate(BINARY, {**METRICS, "auc": 0.67}, RELEASE)["passed"] is False
    ok = _passed(g.stability_gates(BINARY, np.linspace(0.1, 0.9, 100), RELEASE))
    assert all(ok.values())
    assert _passed(g.stability_gates(BINARY, np.full(100, 0.3), RELEASE))["prediction_std"] is False
    with_nan = np.r_[np.linspace(0.1, 0.9, 99), np.nan]
    assert _passed(g.stability_gates(BINARY, with_nan, RELEASE))["non_finite_predictions"] is False


def test_blessing_lists_every_failure():
    gates = [*g.absolute_gates({"auc": 0.5, "logloss": 0.4}, RELEASE), g.baseline_gate(BINARY, METRICS, RELEASE)]
    record = g.blessing(gates, "cand", "live1")
    assert record["blessed"] is False and len(record["failed"]) == 1
    assert "REJECTED" in g.summary(record) and "absolute:auc" in g.summary(record)


def test_infra_gate_fails_on_timeout_or_crash(tmp_path, built):  # wrong scores: test_pipeline.py

    from mlsys.config import SECTIONS, load_sections, read_params
    from mlsys.release.infra import infra_config, infra_gate
    from tests.conftest import REPO

    serve = infra_config(load_sections(read_params(REPO), tuple(SECTIONS), "params.yaml"))
    requests = built.labelled.head(2).drop(columns=["label"])
    crashed = infra_gate(tmp_path / "no-bundle", requests, BINARY, np.array([0.1, 0.2]), serve, timeout=60)
    assert crashed["passed"] is False and "failed (exit" in crashed["reason"]
    assert "no-bundle" in crashed["reason"]  # it died on the missing bundle, not on the config
    slow = infra_gate(tmp_path / "no-bundle", requests, BINARY, np.array([0.1, 0.2]), serve, timeout=0.001)
    assert slow["passed"] is False and "within 0.001s" in slow["reason"]


def test_feature_list_gate():
    assert g.feature_list_gate(["a", "b"], ["a", "b"])["passed"] is True
    bad = g.feature_list_gate(["a", "b"], ["a", "c"])
    assert bad["passed"] is False and "['b', 'c']" in bad["reason"]


def test_rolling_absolute_gates_excuse_a_bound_the_live_model_misses_too():
    hard_week = {"auc": 0.69, "logloss": 0.45}  # within release.waiver.max_beyond of the floor
    gates = g.rolling_absolute_gates(hard_week, {"auc": 0.64, "logloss": 0.44}, RELEASE)
    assert _passed(gates) == {"auc": None, "logloss": True}
    assert "the live model misses it too" in gates[0]["reason"]
    # The live model meets the floor on these rows: the candidate is held to it.
    assert _passed(g.rolling_absolute_gates(hard_week, {"auc": 0.71, "logloss": 0.44}, RELEASE))["auc"] is False
    assert _passed(g.rolling_absolute_gates(hard_week, None, RELEASE))["auc"] is False  # nothing live


def test_a_waiver_cannot_ratchet():
    """A rolling retrain may be waived past a floor the live model misses too, but by at most
    release.waiver.max_beyond, and for at most max_consecutive releases in a row."""
    release = OmegaConf.merge(RELEASE, {"waiver": {"max_beyond": 0.02, "max_consecutive": 2}})
    live = {"auc": 0.64, "logloss": 0.44}
    near = g.rolling_absolute_gates({"auc": 0.685, "logloss": 0.45}, live, release, waivers_before=0)
    assert _passed(near)["auc"] is None and near[0]["waived"]
    assert g.waivers_in_a_row(near, 0) == 1 and g.waivers_in_a_row(g.absolute_gates(METRICS, release), 1) == 0
    far = g.rolling_absolute_gates({"auc": 0.675, "logloss": 0.45}, live, release, waivers_before=0)
    assert _passed(far)["auc"] is False and "max_beyond=0.02" in far[0]["reason"]  # 0.025 below the floor
    third = g.rolling_absolute_gates({"auc": 0.69, "logloss": 0.45}, live, release, waivers_before=2)
    assert _passed(third)["auc"] is False and "already used a waiver" in third[0]["reason"]
