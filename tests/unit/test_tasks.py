"""The task rules (mlsys.tasks): label encodings and their refusals, objectives, the metric
registry, baselines, and the answer the server gives, per task."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.config.schema import ReleaseConfig
from mlsys.errors import ConfigError, ContractError
from mlsys.release.gates import check_release, per_class_gates
from mlsys.tasks import Task

BINARY, REGRESSION = Task(), Task("regression", transform="log1p", objective="regression")
MULTI = Task("multiclass", ("low", "mid", "high"), objective="multiclass")


def test_binary_label_from_a_rule_or_a_zero_one_column():
    values = pd.Series([0.0, 20.0, None, 15.0])
    assert BINARY.encode(values, {"column": "d", "op": "gt", "threshold": 15}).tolist() == [0, 1, pd.NA, 0]
    assert BINARY.encode(pd.Series([1, 0, None]), {"column": "d"}).tolist() == [1, 0, pd.NA]
    assert BINARY.encode(pd.Series([True, False]), {"column": "d"}).tolist() == [1, 0]
    with pytest.raises(ContractError, match=r"'d': a binary label without data.label.op/threshold must be 0/1"):
        BINARY.encode(pd.Series([0.0, 3.5]), {"column": "d"})  # not silently "> 0"


def test_regression_and_multiclass_labels():
    assert REGRESSION.encode(pd.Series(["1.5", None]), {"column": "h"}).tolist() == [1.5, pd.NA]
    with pytest.raises(ContractError, match=r"'h': 1 values are not numbers"):
        REGRESSION.encode(pd.Series(["1.5", "soon"]), {"column": "h"})
    assert MULTI.encode(pd.Series(["high", "low", None]), {"column": "s"}).tolist() == [2, 0, pd.NA]
    with pytest.raises(ContractError, match=r"not among data.label.classes \['low', 'mid', 'high'\]: \{'top': 2\}"):
        MULTI.encode(pd.Series(["top", "low", "top"]), {"column": "s"})


@pytest.mark.parametrize(
    ("task", "labels", "message"),
    [
        (BINARY, [1, 1, 1], r"'y': every labelled row is in one class \(distribution \{'0': 0, '1': 3"),
        (MULTI, [2, 2], r"every labelled row is in one class .*'high': 2"),
        (REGRESSION, [4.0, 4.0], r"'y': the regression label is constant over 2 labelled rows"),
        (REGRESSION, [-1.0, 3.0], r"data.label.transform 'log1p': needs 'y' > -1, but its minimum is -1.0"),
    ],
)
def test_a_label_nothing_can_be_learnt_from_is_refused(task, labels, message):
    with pytest.raises(ContractError, match=message):
        task.check_label(pd.Series(labels), "y")


@pytest.mark.parametrize(
    ("task", "label", "params", "message"),
    [
        (BINARY, {"op": "gt"}, {}, r"data.label.op and data.label.threshold: give both"),
        (REGRESSION, {"op": "gt", "threshold": 1}, {}, r"data.label.op: only a binary label has one"),
        (BINARY, {"classes": ["a", "b"]}, {}, r"data.label.classes: only a multiclass label"),
        (BINARY, {"transform": "log1p"}, {}, r"data.label.transform: only a regression label"),
        (BINARY, {}, {"objective": "poisson"}, r"'poisson' is a regression objective, but data.label.task is binary"),
        (REGRESSION, {}, {"loss": "multiclass"}, r"model.params.loss: 'multiclass' is a multiclass objective"),
        (Task("multiclass", ("a",)), {}, {}, r"at least 2 distinct classes, got \['a'\]"),
        (MULTI, {}, {"num_class": 4}, r"model.params.num_class: 4 != 3 classes"),
    ],
)
def test_config_that_does_not_fit_the_task_names_the_key(task, label, params, message):
    with pytest.raises(ConfigError, match=message):
        task.check(label, params)


def test_lightgbm_params_default_from_the_task_and_keep_what_is_set():
    assert BINARY.lgb_params({}) == {"objective": "binary", "metric": ["auc", "binary_logloss"]}
    assert MULTI.lgb_params({"metric": "multi_error"}) == {"objective": "multiclass", "metric": "multi_error",
                                                           "num_class": 3}  # fmt: skip
    poisson = Task("regression", objective="poisson")
    assert poisson.lgb_params({"objective": "poisson"})["metric"] == ["poisson"]
    assert "poisson_deviance" in poisson.metrics and "poisson_deviance" not in REGRESSION.metrics


def test_metric_directions_and_values():
    y = np.array([0, 1, 1, 0])
    good, bad = BINARY.scores(y, np.array([0.1, 0.9, 0.8, 0.2])), BINARY.scores(y, np.array([0.9, 0.1, 0.2, 0.8]))
    for name, m in BINARY.metrics.items():
        if name != "ece":
            assert (good[name] - bad[name]) * m.direction > 0, name
    r = REGRESSION.scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert r["mae"] == pytest.approx(1 / 3) and r["rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert r["wape"] == pytest.approx(1 / 6) and r["r2"] == pytest.approx(0.5)


def test_a_class_absent_from_the_window_is_not_a_crash_and_not_gated():
    y = np.array([0, 0, 2, 2])  # no "mid"
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.1, 0.2, 0.7], [0.3, 0.1, 0.6]])
    s = MULTI.scores(y, p)
    assert (
        s["accuracy"] == 1.0 and s["auc_ovr"] == 1.0 and s["per_class"]["mid"] == {"rows": 0, "auc": None, "f1": None}
    )
    release = OmegaConf.merge(OmegaConf.structured(ReleaseConfig), {"per_class": {"auc": {"min": 0.9}}})
    gates = {g["metric"]: g for g in per_class_gates(MULTI, s, release)}
    assert gates["class=low:auc"]["passed"] is True and gates["class=mid:auc"]["passed"] is None
    assert "absent" in gates["class=mid:auc"]["reason"]


def test_gated_metrics_must_be_the_tasks():
    release = OmegaConf.merge(OmegaConf.structured(ReleaseConfig), {"model_name": "m", "absolute": {"auc": {"min": 1}}})
    with pytest.raises(ConfigError, match=r"release.absolute.auc: 'auc' is not a metric of the regression task .*'r2'"):
        check_release(release, REGRESSION)
    per_class = OmegaConf.merge(release, {"absolute": {}, "per_class": {"auc": {"min": 0.5}}})
    with pytest.raises(ConfigError, match=r"release.per_class.auc: per-class bounds are for a multiclass task"):
        check_release(per_class, BINARY)


def test_baselines_per_task():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200)})
    frame["y_reg"] = 3 * frame["x"] + rng.normal(size=200)
    frame["y_cls"] = np.digitize(frame["x"], [-0.5, 0.5])
    linear = REGRESSION.baselines(frame, frame, ["x"], "y_reg", 100)
    assert REGRESSION.scores(frame["y_reg"].to_numpy(), linear["linear"])["r2"] > 0.8
    assert np.all(linear["mean"] == frame["y_reg"].mean())
    multi = MULTI.baselines(frame, frame, ["x"], "y_cls", 200)
    assert multi["logreg"].shape == (200, 3) and np.allclose(multi["logreg"].sum(axis=1), 1)
    assert (multi["majority"].argmax(axis=1) == np.bincount(frame["y_cls"]).argmax()).all()


def test_a_regression_is_trained_on_the_transform_and_answers_on_the_label_scale():
    y = np.array([0.0, 9.0, 99.0])
    assert np.allclose(REGRESSION.target(y), np.log1p(y)) and np.allclose(REGRESSION.output(REGRESSION.target(y)), y)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=3, max_size=3))
def test_an_answer_gives_back_its_numbers(values):
    for task, numbers in ((BINARY, values[:1]), (REGRESSION, values[:1]), (MULTI, values)):
        answer = task.answer(numbers)
        assert task.numbers(answer) == [float(v) for v in numbers]
        if task is MULTI:
            assert answer["prediction"] == MULTI.classes[int(np.argmax(numbers))]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=3, max_size=3))
def test_the_servers_json_reads_back_as_the_answer(values):
    """The server writes with orjson: every task's answer reads back as itself; numpy numbers
    as numbers, a non-finite one as null; what orjson refuses (an integer past 64 bits, deep
    nesting) is written by the json module, not failed."""
    from mlsys.serving.app import JSONResponse

    for answer in (MULTI.answer(values), REGRESSION.answer(values[:1]), {"predictions": [BINARY.answer(values[:1])]}):
        assert json.loads(JSONResponse(answer).body) == answer
    numbers = {"score": np.float64(values[0]), "n": np.int64(3), "gone": float("nan"), "inf": np.float32("inf")}
    assert json.loads(JSONResponse(numbers).body) == {"score": values[0], "n": 3, "gone": None, "inf": None}
    deep: list = []
    for _ in range(300):
        deep = [deep]
    assert json.loads(JSONResponse({"flight": 2**70, "deep": deep}).body) == {"flight": 2**70, "deep": deep}
