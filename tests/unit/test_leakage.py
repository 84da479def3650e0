"""Suspected leakage on small real LightGBM models: two columns that sum to the label are
refused naming both; an input that alone tells the label, or is a function of it, is named;
an accepted suspect passes with its reason; `warn` reports without blocking."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.config.schema import FeaturesConfig, LeakageGate
from mlsys.data.columns import LABEL
from mlsys.features import fit_pipeline
from mlsys.model import Model, leakage
from mlsys.release.gates import leakage_gates
from mlsys.tasks import Task

SPEC = OmegaConf.structured(LeakageGate)


def _frame(n: int, seed: int) -> pd.DataFrame:
    """Rentals in an hour split at random between casual and registered riders (their sum is
    the count the label thresholds), beside inputs of ordinary strength."""
    rng = np.random.default_rng(seed)
    hour, temp = rng.integers(0, 24, n), rng.normal(15, 8, n)
    rate = np.exp(1.5 + 1.2 * np.exp(-((hour - 17) ** 2) / 6) + 0.04 * temp)
    rentals = rng.poisson(rate)
    casual = rng.binomial(rentals, rng.uniform(0.1, 0.9, n))
    return pd.DataFrame(
        {
            "hour": hour.astype(float),
            "temp": temp,
            "humidity": rng.normal(60, 15, n),
            "wind": rng.gamma(2, 3, n),
            "noise": rng.normal(size=n),
            "casual": casual.astype(float),
            "registered": (rentals - casual).astype(float),
            LABEL: (rentals >= 12).astype(float),
        }
    )


def _figures(columns: list[str], task: Task | None = None, label: str = LABEL) -> dict:
    task = task or Task("binary")
    train, valid = _frame(6000, 0), _frame(2000, 1)
    spec = {"name": "t", "columns": {c: {"source": c} for c in columns}}
    pipeline = fit_pipeline(OmegaConf.merge(OmegaConf.structured(FeaturesConfig), spec), train)
    x, xv = pipeline.transform_frame(train), pipeline.transform_frame(valid)
    objective = {"binary": "binary", "regression": "regression"}[task.kind]
    booster = lgb.train(
        {"objective": objective, "verbose": -1, "seed": 0}, lgb.Dataset(x, train[label]), num_boost_round=60
    )
    return leakage.figures(Model(booster, pipeline, "t", {}, task, None), x, train[label], xv, valid[label])


def test_two_columns_that_sum_to_the_label_are_refused_naming_both():
    figures = _figures(["hour", "temp", "humidity", "wind", "noise", "casual", "registered"])
    by = {f["name"]: f for f in figures["features"]}
    assert 0.6 < by["casual"]["alone"] < 0.95 and 0.6 < by["registered"]["alone"] < 0.95  # moderate alone
    assert figures["overall"] >= 0.99 and set(figures["top_two"]) == {"casual", "registered"}
    failed = [g for g in leakage_gates(figures, SPEC) if g["passed"] is False]
    assert {g["metric"] for g in failed} == {"model:auc", "model:top_two_gain_share"}
    assert all("casual" in g["reason"] and "registered" in g["reason"] for g in failed)


def test_the_same_inputs_without_the_leak_raise_no_suspect():
    figures = _figures(["hour", "temp", "humidity", "wind", "noise"])
    (gate,) = leakage_gates(figures, SPEC)
    assert gate["passed"] is True and gate["metric"] == "suspects" and figures["overall"] < 0.95
    by = {f["name"]: f for f in figures["features"]}
    assert 0.4 < by["noise"]["alone"] < 0.6 and by["hour"]["alone"] > by["noise"]["alone"]


def test_an_input_that_is_a_function_of_the_label_is_named_and_an_accepted_one_passes():
    train, valid = _frame(6000, 0), _frame(2000, 1)
    train["echo"], valid["echo"] = train[LABEL] * 3 + 1, valid[LABEL] * 3 + 1
    spec = {"name": "t", "columns": {c: {"source": c} for c in ("hour", "temp", "echo")}}
    pipeline = fit_pipeline(OmegaConf.merge(OmegaConf.structured(FeaturesConfig), spec), train)
    x, xv = pipeline.transform_frame(train), pipeline.transform_frame(valid)
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, train[LABEL]), num_boost_round=10)
    model = Model(booster, pipeline, "t", {}, Task("binary"), None)
    figures = leakage.figures(model, x, train[LABEL], xv, valid[LABEL])
    failed = {g["metric"] for g in leakage_gates(figures, SPEC) if g["passed"] is False}
    assert {"echo:label_function", "echo:alone_auc", "echo:gain_share"} <= failed
    accepted = OmegaConf.merge(SPEC, {"accepted": {"echo": "reviewed: the label's own code (a test)"}})
    gates = [g for g in leakage_gates(figures, accepted) if "echo" in g["metric"]]
    assert gates and all(g["passed"] is True and "reviewed" in g["reason"] for g in gates)
    warned = leakage_gates(figures, OmegaConf.merge(SPEC, {"policy": "warn"}))
    assert not [g for g in warned if g["passed"] is False] and any(g["passed"] is None for g in warned)


@pytest.mark.parametrize(
    ("column", "label", "expected"),
    [
        (np.array([1.0, 1, 5, 5, 1]), np.array([0, 0, 1, 1, 0]), True),
        (np.array([1.0, 2, 5, 5, 1]), np.array([0, 0, 1, 1, 0]), False),
        (np.array([7.0, 7, 7, 7, 7]), np.array([0, 0, 1, 1, 0]), False),  # a constant tells nothing
        (np.arange(5.0), np.array([0.1, 0.2, 0.3, 0.4, 0.5]), False),  # a continuous label, each value once
        (np.array([np.nan, np.nan, 2, 2]), np.array([0, 0, 1, 1]), True),  # missing is a value
    ],
)
def test_a_function_of_the_label(column, label, expected):
    assert leakage.label_function(column, leakage.label_groups(label)) is expected


def test_regression_power_is_r2_and_an_old_bundle_is_not_gated():
    figures = _figures(["hour", "temp", "casual"], Task("regression"), label="registered")
    assert figures["measure"] == "r2" and -1 < figures["overall"] < 0.99
    (gate,) = leakage_gates(None, SPEC)
    assert gate["passed"] is None and "older bundle" in gate["reason"]


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8),
    rows=st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=0, max_size=300),
)
def test_the_auc_of_binned_answers_is_sklearns(values, rows):
    from sklearn.metrics import roc_auc_score

    values = np.array(values)
    bins = np.array([b % len(values) for b, _ in rows], dtype=np.int64)
    y = np.array([float(label) for _, label in rows])
    got = leakage.binned_auc(values, bins, y)
    if len(np.unique(y)) < 2:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(roc_auc_score(y, values[bins]), abs=1e-12)
