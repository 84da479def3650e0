"""Featurize on a real LocalCluster (2 worker processes): exact order statistics over slices
equal numpy's quantiles and medians to the bit (ties, infinities, a single value, ranges
narrowed over several rounds), and the flights feature state and encoded windows equal the
local engine's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.features import fit_pipeline, sliced

QS = [0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0]


def _ranked(dask_client, values: np.ndarray, n: int) -> sliced.Ranked:
    slices = sliced.Slices(dask_client, pd.DataFrame({"x": values}), n)
    return sliced.Ranked(slices, lambda part: part["x"].to_numpy())


@pytest.fixture
def narrow(monkeypatch):
    """Few pivots and a small fetch: every rank takes several rounds of narrowing."""
    monkeypatch.setattr(sliced, "PIVOTS", 8)
    monkeypatch.setattr(sliced, "FETCH", 16)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(size=5001),
        np.random.default_rng(1).exponential(size=4000) ** 4,  # a long tail: equal-width pivots narrow slowly
        np.repeat([3.0, -1.0, 7.5], [1500, 2200, 300]),  # ties only
        np.concatenate([np.random.default_rng(2).integers(-50, 50, 3000).astype(float), [np.inf, -np.inf, np.inf]]),
        np.array([42.0]),
        np.array([1e-300, 2e-300, 1e300, -0.0, 0.0]),
    ],
    ids=["normal", "tail", "ties", "infinities", "one", "extremes"],
)
def test_order_statistics_over_slices_are_numpys_to_the_bit(dask_client, narrow, values):
    ranked = _ranked(dask_client, values, 3)
    assert np.array_equal(ranked.quantiles(QS), np.quantile(values, QS), equal_nan=True)  # inf - inf: NaN in both
    assert ranked.median() == np.median(values) or (np.isnan(ranked.median()) and np.isnan(np.median(values)))
    assert ranked.select([0, len(values) - 1]) == [values.min(), values.max()]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=300),
    st.integers(1, 4),
    st.floats(0, 1),
)
def test_any_values_any_slicing_any_quantile(dask_client, values, n, q):
    values = np.asarray(values, dtype=np.float64)
    ranked = _ranked(dask_client, values, n)
    got, want = ranked.quantiles([q])[0], float(np.quantile(values, q))
    assert got == want or (np.isnan(got) and np.isnan(want))  # inf - inf interpolates to NaN in both


@pytest.fixture(scope="module")
def windows(built, full_config):
    """Train and valid windows of the built flights table, with imputation on some inputs."""
    labelled = built.labelled
    features = OmegaConf.merge(
        full_config.features,
        {"columns": {"distance": {"impute": "median"}, "origin_dep_delay_3h": {"impute": "median"},
                     "tail_arr_delay_3d": {"impute": "zero"}, "dest": {"impute": "median"}}},
    )  # fmt: skip
    return features, labelled.iloc[:60_000], labelled.iloc[60_000:80_000]


@pytest.mark.parametrize("n", [2, 5])
def test_sliced_featurize_fits_and_encodes_as_the_local_engine(dask_client, windows, n):
    features, train, valid = windows
    local = fit_pipeline(features, train)
    x = local.transform_frame(train)
    pipeline, encoded = sliced.featurize(dask_client, features, train, n)
    assert pipeline.state() == local.state()  # vocabularies, clip bounds, medians: to the bit
    assert np.array_equal(encoded, x, equal_nan=True)
    assert np.array_equal(sliced.encode(dask_client, pipeline, valid, n), local.transform_frame(valid), equal_nan=True)
    fill = {s["name"]: s["state"].get("fill") for s in pipeline.specs}
    assert fill["tail_arr_delay_3d"] == 0.0 and fill["distance"] == float(
        np.nanmedian(x[:, local.names.index("distance")])
    )
