"""LightGBM's single-row fast path (`Model.predict_matrix` on one row) gives exactly
`Booster.predict`'s numbers for each task, from several threads at once, and a used model
still pickles (Dask ships it to workers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cloudpickle
import lightgbm as lgb
import numpy as np
import pytest

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


def _model(kind: str) -> tuple[Model, np.ndarray]:
    task, params = TASKS[kind]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 5))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take their own branch
    signal = x[:, 0] - np.nan_to_num(x[:, 1]) + rng.normal(0, 0.5, 3000)
    y = {"binary": signal > 0, "regression": np.abs(signal), "multiclass": np.digitize(signal, [-0.5, 0.5])}[kind]
    booster = lgb.train({**params, "verbose": -1, "num_leaves": 7}, lgb.Dataset(x, y.astype(float)), 40)
    specs = [
        {"name": f"f{i}", "source": f"f{i}", "type": "numeric", "transform": "identity", "state": {}} for i in range(5)
    ]
    return Model(booster, FeaturePipeline(specs), "t", {}, task), x[:300]


@pytest.mark.parametrize("kind", list(TASKS))
def test_one_row_at_a_time_equals_the_batch_from_many_threads(kind):
    model, x = _model(kind)
    batch = model.predict_matrix(x)
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda i: model.predict_matrix(x[i : i + 1]), range(len(x))))
    assert all(r.shape == batch[i : i + 1].shape for i, r in enumerate(rows))
    assert np.array_equal(np.concatenate(rows), batch)
    again = cloudpickle.loads(cloudpickle.dumps(model))  # as Dask ships it: without the per-thread setups
    assert np.array_equal(again.predict_matrix(x[:1]), batch[:1])
