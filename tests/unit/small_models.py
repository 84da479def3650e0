"""Small real LightGBM models of each task, with missing values and a categorical input,
wrapped as mlsys Models (for the scoring paths' parity tests)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from mlsys.features import FeaturePipeline
from mlsys.model import Model
from mlsys.tasks import Task

TASKS = {
    "binary": (Task("binary"), {"objective": "binary"}),
    "regression": (Task("regression", objective="regression", transform="log1p"), {"objective": "regression"}),
    "multiclass": (
        Task("multiclass", ("a", "b", "c"), "none", "multiclass"),
        {"objective": "multiclass", "num_class": 3},
    ),
}


def small_model(kind: str, rounds: int = 40, **params: object) -> tuple[Model, np.ndarray]:
    """A model of `kind` on 5 inputs (the last categorical, 6 codes) and 300 rows it did not see."""
    task, objective = TASKS[kind]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3300, 5))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take their own branch
    x[:, 4] = rng.integers(0, 6, len(x))
    signal = x[:, 0] - np.nan_to_num(x[:, 1]) + (x[:, 4] % 3 - 1) + rng.normal(0, 0.5, len(x))
    y = {"binary": signal > 0, "regression": np.abs(signal), "multiclass": np.digitize(signal, [-0.5, 0.5])}[kind]
    data = lgb.Dataset(x[:3000], y[:3000].astype(float), categorical_feature=[4])
    booster = lgb.train({**objective, "verbose": -1, "num_leaves": 7, **params}, data, rounds)
    specs = [
        {"name": f"f{i}", "source": f"f{i}", "type": "categorical" if i == 4 else "numeric", "transform": "identity",
         "state": {}}
        for i in range(5)
    ]  # fmt: skip
    return Model(booster, FeaturePipeline(specs), f"t{kind}", {}, task), x[3000:]
