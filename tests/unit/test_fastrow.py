"""LightGBM's single-row fast path (`Model.predict_matrix` on one row) gives exactly
`Booster.predict`'s numbers for each task, from several threads at once, and a used model
still pickles (Dask ships it to workers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cloudpickle
import numpy as np
import pytest

from tests.unit.small_models import TASKS, small_model


@pytest.mark.parametrize("kind", list(TASKS))
def test_one_row_at_a_time_equals_the_batch_from_many_threads(kind):
    model, x = small_model(kind)
    batch = model.predict_matrix(x)
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda i: model.predict_matrix(x[i : i + 1]), range(len(x))))
    assert all(r.shape == batch[i : i + 1].shape for i, r in enumerate(rows))
    assert np.array_equal(np.concatenate(rows), batch)
    again = cloudpickle.loads(cloudpickle.dumps(model))  # as Dask ships it: without the per-thread setups
    assert np.array_equal(again.predict_matrix(x[:1]), batch[:1])
