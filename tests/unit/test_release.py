"""Release gates (pure) and the registry (real files): pass, fail, skip; atomic pointer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from mlsys.config import ReleaseConfig
from mlsys.errors import ExitCode
from mlsys.release import gates as g
from mlsys.release.registry import Registry, RegistryError

RELEASE = OmegaConf.merge(
    OmegaConf.structured(ReleaseConfig),
    {
        "absolute": {"auc": {"min": 0.7}, "logloss": {"max": 0.5}},
        "slices": {"metric": "auc", "bound": {"min": 0.6}, "min_rows": 100},
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
    skipped = g.change_gates(METRICS, None, None, RELEASE)
    assert all(x["passed"] is None and "no model is released" in x["reason"] for x in skipped)
    live = {"auc": 0.735, "logloss": 0.455}
    assert _passed(g.change_gates(METRICS, live, "v1", RELEASE)) == {"auc": True, "logloss": True}
    worse = {"auc": 0.72, "logloss": 0.47}  # auc -0.015 (> 0.01); logloss +2.2% (> 2%)
    assert _passed(g.change_gates(worse, live, "v1", RELEASE)) == {"auc": False, "logloss": False}
    better = {"auc": 0.9, "logloss": 0.2}
    assert _passed(g.change_gates(better, live, "v1", RELEASE)) == {"auc": True, "logloss": True}


def test_baseline_and_stability_gates():
    assert g.baseline_gate(METRICS, RELEASE)["passed"] is True
    assert g.baseline_gate({**METRICS, "auc": 0.67}, RELEASE)["passed"] is False
    ok = _passed(g.stability_gates(np.linspace(0.1, 0.9, 100), RELEASE))
    assert all(ok.values())
    assert _passed(g.stability_gates(np.full(100, 0.3), RELEASE))["prediction_std"] is False
    with_nan = np.r_[np.linspace(0.1, 0.9, 99), np.nan]
    assert _passed(g.stability_gates(with_nan, RELEASE))["non_finite_predictions"] is False


def test_blessing_lists_every_failure():
    gates = [*g.absolute_gates({"auc": 0.5, "logloss": 0.4}, RELEASE), g.baseline_gate(METRICS, RELEASE)]
    record = g.blessing(gates, "cand", "live1")
    assert record["blessed"] is False and len(record["failed"]) == 1
    assert "REJECTED" in g.summary(record) and "absolute:auc" in g.summary(record)


def _bundle(tmp_path, name: str, auc: float):
    d = tmp_path / "bundles" / name
    d.mkdir(parents=True)
    (d / "model.txt").write_text(name)
    (d / "card.json").write_text(
        json.dumps(
            {
                "version": name,
                "created_at": "2026-01-01T00:00:00",
                "metrics": {"auc": auc, "logloss": 0.4, "brier": 0.1},
                "features": [],
            }
        )
    )
    return d


def test_registry_release_rollback_and_history(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSYS_USER", "alice")
    reg = Registry(tmp_path / "registry")
    assert reg.live() is None
    for name, auc in (("v1", 0.7), ("v2", 0.72), ("v3", 0.71)):
        reg.add(_bundle(tmp_path, name, auc), name, {"blessing.json": "{}"})
        reg.release(name)
    assert reg.live() == "v3" and reg.versions() == ["v1", "v2", "v3"]
    assert reg.rollback(reason="bad v3")["to"] == "v2"
    assert reg.live() == "v2"
    assert reg.rollback()["to"] == "v1"
    with pytest.raises(RegistryError, match="only version ever live") as err:
        reg.rollback()
    assert err.value.code == ExitCode.MISSING_INPUT
    assert reg.rollback(to="v3")["to"] == "v3"
    history = reg.history()
    assert [e["action"] for e in history] == ["release"] * 3 + ["rollback"] * 3
    assert all(e["by"] == "alice" and e["at"] for e in history)
    assert history[3] == {**history[3], "from": "v3", "to": "v2", "reason": "bad v3"}
    assert (reg.path("v1") / "blessing.json").exists()  # every version kept


def test_crash_mid_release_leaves_the_old_pointer(tmp_path, monkeypatch):
    import mlsys.io

    reg = Registry(tmp_path / "registry")
    reg.add(_bundle(tmp_path, "v1", 0.7), "v1", {})
    reg.release("v1")
    reg.add(_bundle(tmp_path, "v2", 0.7), "v2", {})
    real_replace = mlsys.io.os.replace

    def crash(src, dst):
        if str(dst).endswith("released.json"):
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(mlsys.io.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        reg.release("v2")
    monkeypatch.setattr(mlsys.io.os, "replace", real_replace)
    assert reg.live() == "v1"
    assert json.loads((reg.root / "released.json").read_text())["stack"] == ["v1"]
    assert not list(reg.root.glob(".released.json*"))  # no half-written pointer left behind
