"""The build stage on a real LocalCluster (2 worker processes), time slice by time slice: the
built table equals the local engine's on real flights, with aggregates that look back (delays
observed as they happen, arrivals a day later) and ahead (the published schedule, early
arrivals observed before the prediction time of a later flight)."""

from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys.data import sliced
from mlsys.data.build import build, context
from mlsys.errors import ConfigError, ContractError
from tests.conftest import engine_at

LOCAL = OmegaConf.create({"kind": "local"})


@pytest.fixture(scope="module")
def spring(parsed_tables, full_config):
    """Two months of flights (DST starts within them), predicted at the scheduled time, with a
    window read by arrival (an early arrival is observed up to ~1.5 h before its scheduled time)."""
    flights = parsed_tables["flights"]
    tables = {**parsed_tables, "flights": flights[flights["month"].isin([3, 4])].reset_index(drop=True)}
    data = OmegaConf.merge(
        full_config.data,
        {
            "prediction_lead": "0h",
            "aggregates": {
                "origin_arrivals_2h": {
                    "by": ["origin"],
                    "value": "arr_delay",
                    "stat": "sum",
                    "window": "2h",
                    "observed_after": "arr_delay",
                },
            },
        },
    )
    return tables, data


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.labelled, b.labelled, check_exact=True)
    pd.testing.assert_frame_equal(a.unlabelled, b.unlabelled, check_exact=True)
    assert a.report == b.report


def test_the_context_reaches_as_far_as_the_config_and_the_data_allow(spring):
    tables, data = spring
    flights = tables["flights"]
    back, ahead = context(flights, data)
    late_dep, late_arr = (pd.Timedelta(minutes=flights[c].max()) for c in ("dep_delay", "arr_delay"))
    # The longest past window plus its lag or the longest delay of its observation column.
    assert back == max(pd.Timedelta("8D"), pd.Timedelta("24h") + late_dep, pd.Timedelta("2h") + late_arr)
    early = pd.Timedelta(minutes=-flights["arr_delay"].min())
    assert ahead == early > pd.Timedelta("1h")  # beyond the schedule aggregate's 1h


@pytest.mark.parametrize("slices", [2, 7])
def test_a_sliced_build_equals_the_local_build(dask_client, spring, slices):
    tables, data = spring
    as_of = pd.Timestamp("2013-04-25", tz="UTC")
    local = build(tables, data, as_of)
    spread = sliced.build(tables, data, as_of, engine_at(dask_client, partitions=slices), dask_client)
    assert len(local.labelled) > 40_000 and len(local.unlabelled) > 1_000
    _same(local, spread)
    _same(sliced.build(tables, data, as_of, LOCAL), local)


def test_without_its_look_ahead_a_slice_misses_rows_and_the_build_differs(dask_client, spring, monkeypatch):
    """The parity above depends on the context: cut the look-ahead and it fails."""
    tables, data = spring
    local = build(tables, data)
    monkeypatch.setattr(sliced, "context", lambda frame, data: (context(frame, data)[0], pd.Timedelta(0)))
    spread = sliced.build(tables, data, None, engine_at(dask_client, partitions=7), dask_client)
    with pytest.raises(AssertionError):
        _same(local, spread)


def test_an_observation_delay_from_a_joined_table_is_a_config_error_under_dask(spring):
    tables, data = spring
    data = OmegaConf.merge(data, {"aggregates": {"origin_arrivals_2h": {"observed_after": "w_wind_speed"}}})
    with pytest.raises(ConfigError, match=r"data\.aggregates\.origin_arrivals_2h\.observed_after"):
        context(tables["flights"], data)


def test_no_rows_build_as_the_local_engine_does(dask_client, spring):
    """No rows to slice: the same contract error as the local engine's, not Dask's."""
    tables, data = spring
    empty = {**tables, "flights": tables["flights"].head(0)}
    with pytest.raises(ContractError) as local:
        build(empty, data)
    with pytest.raises(ContractError) as spread:
        sliced.build(empty, data, None, engine_at(dask_client, partitions=3), dask_client)
    assert str(spread.value) == str(local.value)
