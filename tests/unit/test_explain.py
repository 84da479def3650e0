"""`explain.breakdown` on small real LightGBM models of each task: the contributions plus the
bias equal the raw score; binary shows the sigmoid of it, multiclass a breakdown per class, a
regression with a label transform its inverse; linear trees are a config error, named."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys.config.schema import FeaturesConfig
from mlsys.errors import ConfigError
from mlsys.features import fit_pipeline
from mlsys.model import Model
from mlsys.model.explain import breakdown
from mlsys.tasks import Task


def _model(task: Task, params: dict | None = None) -> tuple[Model, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(0, 10, n), "kind": rng.choice(["x", "y", "z"], n)})
    signal = frame.a + 0.3 * frame.b + (frame.kind == "z") * 1.5 + rng.normal(0, 0.5, n)
    if task.kind == "binary":
        y = (signal > signal.median()).astype(float)
    elif task.kind == "multiclass":
        y = pd.cut(signal, 3, labels=False).astype(float)
    else:
        y = np.exp(signal / 4)
    spec = {
        "name": "t",
        "columns": {
            "a": {"source": "a"},
            "b": {"source": "b"},
            "kind": {"source": "kind", "type": "categorical", "transform": "vocab"},
        },
    }
    pipeline = fit_pipeline(OmegaConf.merge(OmegaConf.structured(FeaturesConfig), spec), frame)
    lgb_params = task.lgb_params({"verbose": -1, "seed": 0, **(params or {})})
    data = lgb.Dataset(pipeline.transform_frame(frame), task.target(y), categorical_feature=pipeline.categorical)
    booster = lgb.train(lgb_params, data, num_boost_round=30)
    return Model(booster, pipeline, "t", {}, task, None), frame


RECORD = {"a": 0.7, "b": 3.0, "kind": "z"}


def test_binary_contributions_and_bias_sum_to_the_raw_score_and_its_sigmoid_is_the_score():
    model, _ = _model(Task("binary"))
    out = breakdown(model, RECORD)
    assert set(out["contributions"]) == {"a", "b", "kind"}
    assert sum(out["contributions"].values()) + out["bias"] == pytest.approx(out["raw_score"], abs=1e-9)
    assert out["probability_uncalibrated"] == pytest.approx(1 / (1 + np.exp(-out["raw_score"])))
    assert out["answer"]["score"] == pytest.approx(out["probability_uncalibrated"])  # no calibration
    by = {f["name"]: f for f in out["features"]}
    assert by["kind"]["input"] == "z" and by["kind"]["encoded"] != "z"  # the fitted vocabulary applied
    assert out["contributions"]["kind"] > 0  # "z" raises the label in the data


def test_multiclass_has_a_breakdown_per_class_each_summing_to_its_raw_score():
    model, _ = _model(Task("multiclass", classes=("low", "mid", "high"), objective="multiclass"))
    out = breakdown(model, RECORD)
    assert set(out["classes"]) == {"low", "mid", "high"}
    raws = []
    for part in out["classes"].values():
        assert sum(part["contributions"].values()) + part["bias"] == pytest.approx(part["raw_score"], abs=1e-9)
        raws.append(part["raw_score"])
    softmax = np.exp(raws) / np.exp(raws).sum()
    assert [p["probability_uncalibrated"] for p in out["classes"].values()] == pytest.approx(softmax)
    assert out["answer"]["prediction"] == ("low", "mid", "high")[int(np.argmax(softmax))]


def test_regression_with_a_log_label_answers_the_inverse_of_the_raw_score():
    model, _ = _model(Task("regression", transform="log1p", objective="regression"))
    out = breakdown(model, RECORD)
    assert sum(out["contributions"].values()) + out["bias"] == pytest.approx(out["raw_score"], abs=1e-9)
    assert out["prediction"] == pytest.approx(np.expm1(out["raw_score"]))
    assert out["answer"]["prediction"] == pytest.approx(out["prediction"])


def test_a_missing_input_is_shown_as_missing_and_still_explained():
    model, _ = _model(Task("binary"))
    out = breakdown(model, {"a": 0.7, "kind": "z"})
    assert {f["name"]: f["encoded"] for f in out["features"]}["b"] is None
    assert sum(out["contributions"].values()) + out["bias"] == pytest.approx(out["raw_score"], abs=1e-9)


def test_linear_trees_are_a_config_error_naming_the_key():
    model, _ = _model(Task("regression", objective="regression"), {"linear_tree": True})
    with pytest.raises(ConfigError, match=r"model\.params\.linear_tree"):
        breakdown(model, RECORD)
