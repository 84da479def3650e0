"""The validate stage on a real LocalCluster (2 worker processes), slice by slice: every raw
table of the flights data, with faults of each kind planted (duplicates whose first copy is in
another slice, values out of range, unparseable times, impossible dates, a missing column, too
few rows), gives the local engine's passed rows, quarantine and report."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.contracts import compile_schema, schema_cases, whole
from mlsys.data import sliced


def _faulty(loaded_tables) -> dict[str, pd.DataFrame]:
    flights = loaded_tables["flights"].copy()
    flights.loc[100, "dep_delay"] = 5000.0  # out of range
    flights.loc[200, "time_hour"] = "not a time"  # unparseable
    flights.loc[300, ["month", "day"]] = [2, 30]  # no such date
    flights = pd.concat([flights, flights.iloc[[5, 7]], flights.iloc[[5]]], ignore_index=True)  # repeated keys
    weather = loaded_tables["weather"]
    weather = pd.concat([weather, weather.iloc[[3]]], ignore_index=True)
    planes = loaded_tables["planes"]
    planes = pd.concat([planes, planes.iloc[[1]]], ignore_index=True)
    planes.loc[2, "tailnum"] = "bad tail"
    return {"flights": flights, "weather": weather, "planes": planes}


def _same(name, tables, config, dask, cut=()):
    local, local_times = sliced.validate(name, tables[name], list(cut), config)
    spread, spread_times = sliced.validate(name, tables[name], list(cut), config, dask)
    pd.testing.assert_frame_equal(local.passed, spread.passed, check_exact=True)
    pd.testing.assert_frame_equal(local.quarantined, spread.quarantined, check_exact=True)
    assert local.report == spread.report and local_times == spread_times
    return local


@pytest.mark.parametrize("slices", [2, 5])
def test_each_table_with_row_faults_validates_as_the_local_engine_does(dask_client, loaded_tables, full_config, slices):
    config = OmegaConf.merge(full_config, {"engine": {"dask": {"partitions": slices}}})
    tables = _faulty(loaded_tables)
    flights = _same("flights", tables, config, dask_client, cut=[len(tables["flights"]) - 1])
    reasons = flights.quarantined.set_index("_row")["_reasons"]
    n = len(tables["flights"])
    assert {100, 200, 300, n - 3, n - 2, n - 1} <= set(reasons.index)  # each planted fault, and the cut line
    assert "multiple_fields_uniqueness" in reasons[n - 3] and "<line>" in reasons[n - 1]
    weather = _same("weather", tables, config, dask_client)
    assert len(tables["weather"]) - 1 in set(weather.quarantined["_row"])
    planes = _same("planes", tables, config, dask_client)
    assert set(planes.quarantined["_row"]) == {2, len(tables["planes"]) - 1}


def test_frame_faults_are_reported_once_as_the_local_engine_does(dask_client, loaded_tables, full_config):
    config = OmegaConf.merge(full_config, {"engine": {"dask": {"partitions": 4}}})
    tables = {
        "weather": loaded_tables["weather"].drop(columns="pressure"),  # a declared column is missing
        "planes": loaded_tables["planes"].head(8),  # fewer rows than min_rows
    }
    for name in tables:
        result = _same(name, tables, config, dask_client)
        assert result.report["status"] == "failed" and len(result.report["frame_failures"]) == 1, result.report


def test_whole_table_checks_see_across_slices(dask_client, loaded_tables, full_config):
    """A row repeated in the last slice only collides with its first copy in the first slice."""
    config = OmegaConf.merge(full_config, {"engine": {"dask": {"partitions": 3}}})
    planes = loaded_tables["planes"]
    repeated = pd.concat([planes, planes.iloc[[0]]], ignore_index=True)
    result = _same("planes", {"planes": repeated}, config, dask_client)
    assert result.quarantined["_row"].tolist() == [len(planes)]
    assert np.array_equal(result.passed["tailnum"].to_numpy(), planes["tailnum"].to_numpy())


def test_whole_table_counts_are_summed_across_slices(dask_client, loaded_tables, full_config):
    """Missing values all in one slice, slices each under min_rows: judged on the whole table."""
    config = OmegaConf.merge(full_config, {"engine": {"dask": {"partitions": 4}}})
    weather = loaded_tables["weather"].copy()
    limit = full_config.contract.tables.weather.columns.pressure.max_missing
    known = weather["pressure"].fillna(1013.0)
    for share, status in ((limit * 0.6, "quarantined"), (limit * 1.2, "failed")):
        weather["pressure"] = known.where(np.arange(len(weather)) >= share * len(weather))  # all in the first slice
        report = _same("weather", {"weather": weather}, config, dask_client).report
        missing = [f for f in report["frame_failures"] if f["check"].startswith("max_missing")]
        assert (report["status"], len(missing)) == (status, int(status == "failed")), report["frame_failures"]
    planes = loaded_tables["planes"].head(full_config.contract.tables.planes.min_rows + 2)  # 3 rows a slice
    assert _same("planes", {"planes": planes}, config, dask_client).report["frame_failures"] == []
    empty = _same("planes", {"planes": planes.head(0)}, config, dask_client).report  # no rows: one empty slice
    assert empty["status"] == "failed" and empty["rows_in"] == 0


keys = st.one_of(st.sampled_from([0.0, -0.0, 1.5, float("nan"), np.float64("nan") * -1]), st.none())


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(keys, st.sampled_from(["a", "b", None]), st.integers(0, 2)), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=4),
)
def test_repeated_keys_found_from_slice_hashes_are_pandera_s(rows, cuts):
    """Float keys (-0.0 and 0.0, NaNs), text with nulls, ints; any cut into slices: the
    uniqueness failure cases equal Pandera's on the whole table."""
    frame = pd.DataFrame(rows, columns=["x", "s", "n"]).astype({"x": "float64", "s": "str"})
    table = OmegaConf.create(
        {
            "columns": {c: {"unique": c == "n", "max_missing": None} for c in frame},
            "unique": ["x", "s"],
            "min_rows": None,
            "max_rows": None,
        }
    )
    edges = sorted({0, len(frame), *(c for c in cuts if c < len(frame))})
    parts = [whole.counts(table, frame.iloc[a:b]) for a, b in itertools.pairwise(edges)]
    got = whole.cases("t", table, frame, parts)
    expected = schema_cases(compile_schema("t", table, "unique"), frame)

    def rows_of(fc: pd.DataFrame) -> list[str]:
        return sorted(fc[["column", "check", "failure_case", "index"]].astype(str).agg("|".join, axis=1))

    assert rows_of(got) == rows_of(expected)


def test_a_users_python_schema_sees_the_whole_table(dask_client, loaded_tables, full_config):
    """A `python_schema` may check across rows: under Dask it runs on the whole table, so a
    repeat whose first copy is in another slice is found as the local engine finds it."""
    hatch = {"_target_": "tests.contracts.schemas.one_row_per_tailnum"}
    config = OmegaConf.merge(
        full_config,
        {"engine": {"dask": {"partitions": 3}}, "contract": {"tables": {"planes": {"python_schema": hatch}}}},
    )
    planes = loaded_tables["planes"]
    repeated = pd.concat([planes, planes.iloc[[0]]], ignore_index=True)
    repeated.loc[len(planes), "year"] = 1999.0  # not a repeated row: only the user's check sees it
    result = _same("planes", {"planes": repeated}, config, dask_client)
    assert sorted(result.quarantined["_row"]) == [0, len(planes)]
    assert {f["check"] for f in result.report["row_failures"]} == {"field_uniqueness"}
