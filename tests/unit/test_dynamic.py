"""Dynamic training's pure parts: rolling windows, the data profile and PSI, the new-data check."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys import drift
from mlsys.config.schema import DataCheckConfig, FeaturesConfig, TrainingConfig
from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.dynamic import check_new_data, data_profile
from mlsys.features import FeaturePipeline, fit_pipeline
from mlsys.reports import refusal_warning
from mlsys.split import resolve

SPLIT = OmegaConf.create(
    {
        "tz": "America/New_York",
        "periods": [
            {"name": "train", "start": "2013-01-01", "end": "2013-09-01"},
            {"name": "valid", "start": "2013-09-01", "end": "2013-10-01"},
            {"name": "test", "start": "2013-10-01", "end": "2014-01-01"},
        ],
        "train": "train",
        "valid": "valid",
        "test": "test",
    }
)


def _times(last_local: str) -> pd.Series:
    return pd.Series(pd.to_datetime(["2013-01-01 06:00", last_local])).dt.tz_localize("America/New_York")


def _windows(last_local: str, **training) -> list[tuple[str, str]]:
    cfg = OmegaConf.merge(OmegaConf.structured(TrainingConfig), {"mode": "dynamic", **training})
    return [(p.start, p.end) for p in resolve(SPLIT, cfg, _times(last_local)).periods]


def test_static_mode_keeps_the_declared_split():
    assert resolve(SPLIT, OmegaConf.structured(TrainingConfig), _times("2013-12-31 23:00")) is SPLIT


@pytest.mark.parametrize(
    ("last", "training", "bounds"),
    [
        # Data through Dec 31: December is complete; test = its last 7 days, valid = the 7 before.
        ("2013-12-31 23:00", {}, ("2013-01-01", "2013-12-18", "2013-12-25", "2014-01-01")),
        # Mid-November: November is incomplete, so the windows end with October.
        ("2013-11-15 10:00", {}, ("2013-01-01", "2013-10-18", "2013-10-25", "2013-11-01")),
        # Sliding: the last 3 months up to the valid window.
        ("2013-12-31 23:00", {"window": "sliding"}, ("2013-10-01", "2013-12-18", "2013-12-25", "2014-01-01")),
        # Weekly: windows end on the last complete week (Monday to Monday).
        ("2013-11-15 10:00", {"cadence": "week"}, ("2013-01-01", "2013-10-28", "2013-11-04", "2013-11-11")),
    ],
)
def test_dynamic_windows_roll_to_the_last_complete_period(last, training, bounds):
    assert _windows(last, **training) == list(pairwise(bounds))


def test_windows_move_only_when_a_period_completes():
    assert _windows("2013-11-02 08:00") == _windows("2013-11-29 20:00")  # same month: no retrain
    assert _windows("2013-11-30 20:00") != _windows("2013-11-29 20:00")  # November complete


def test_psi_is_zero_on_the_same_sample_and_flags_shift_and_nulls():
    rng = np.random.default_rng(0)
    ref = np.column_stack([rng.normal(size=5000), rng.integers(0, 5, 5000).astype(float)])
    prof = drift.profile(ref, ["x", "c"], categorical=[1])
    assert drift.psi(prof, ref, ["x", "c"]) == pytest.approx({"x": 0, "c": 0}, abs=1e-12)
    same = np.column_stack([rng.normal(size=5000), rng.integers(0, 5, 5000).astype(float)])
    assert max(drift.psi(prof, same, ["x", "c"]).values()) < 0.02  # sampling noise only
    shifted = same + np.array([1.0, 0.0])
    shifted[:, 1] = np.where(rng.random(5000) < 0.5, 7.0, shifted[:, 1])  # half the rows: an unseen code
    psi = drift.psi(prof, shifted, ["x", "c"])
    assert psi["x"] > 0.25 and psi["c"] > 0.25
    nulls = same.copy()
    nulls[:2500, 0] = np.nan
    assert drift.psi(prof, nulls, ["x", "c"])["x"] > 0.25
    assert drift.missing_change(prof, nulls, ["x", "c"])["x"] == pytest.approx(0.5)


COLUMNS = {"distance": {"source": "distance"}, "wx_temp": {"source": "wx_temp"}}
FEATURES = OmegaConf.merge(OmegaConf.structured(FeaturesConfig), {"name": "t", "columns": COLUMNS})


def _frame(n: int, seed: int, temp: float = 50.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "distance": rng.gamma(2.0, 500.0, n),
            "wx_temp": rng.normal(temp, 10.0, n),
            LABEL: rng.integers(0, 2, n),
            EVENT_TIME: pd.Timestamp("2013-05-01", tz="UTC"),
        }
    )


def _check(frame: pd.DataFrame, pipeline: FeaturePipeline, reference: pd.DataFrame, **check) -> dict:
    cfg = OmegaConf.merge(OmegaConf.structured(DataCheckConfig), {"expected_drift": ["wx_*"], **check})
    return check_new_data(frame, pipeline, data_profile(pipeline, reference), None, cfg)


def test_new_data_is_adopted_only_when_safe():
    before = _frame(3000, 0)
    pipeline = fit_pipeline(FEATURES, before)
    assert _check(_frame(3000, 1, temp=80.0), pipeline, before)["adopted"]  # a warm month: expected drift
    broken = _frame(3000, 2).assign(distance=lambda f: f.distance * 1.609)  # miles became km
    result = _check(broken, pipeline, before)
    assert not result["adopted"] and result["reasons"][0].startswith("distance: PSI")
    assert "training.data_check.max_psi=0.25" in result["reasons"][0]
    few = _check(_frame(500, 3), pipeline, before)
    assert not few["adopted"] and few["reasons"] == ["rows: 500 < training.data_check.min_rows=1000"]
    gone = _frame(3000, 4).assign(wx_temp=np.nan)  # expected to drift, but not to vanish
    assert any(
        r.startswith("wx_temp: missing share changed by +1.000") for r in _check(gone, pipeline, before)["reasons"]
    )


def test_a_data_check_that_refuses_every_period_is_a_backtest_warning():
    before = _frame(3000, 0)
    pipeline = fit_pipeline(FEATURES, before)
    periods = [{"retrain": _check(_frame(500, seed), pipeline, before, min_rows=1000)} for seed in (5, 6)]
    warning = refusal_warning(periods)
    assert warning.startswith("no retrain was adopted") and "rows: 500 < training.data_check.min_rows=1000" in warning
    periods[1]["retrain"] = _check(_frame(3000, 7, temp=80.0), pipeline, before)  # one adopted: no warning
    assert refusal_warning(periods) is None
