"""Derived columns and event times: one evaluator for whole columns (validate stage) and for
one request's values (server), proved equal; expressions that parse only as arithmetic;
event times from a constant year, a day of the year and an hour; generated periods."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys import config
from mlsys.config.schema import generate_periods
from mlsys.data.build import event_time_of, event_times, invalid_event_times, naive_time
from mlsys.data.derive import Deriver, check_derived
from mlsys.errors import ConfigError, ContractError
from tests.conftest import REPO

DERIVED = {
    "hours": {"expr": "hour + 24 * (doy - 1)", "dtype": "int64"},
    "warm": {"expr": "where(temp > 20, temp - 20, 0.0)"},
    "odd_block": {"expr": "floor(hours / 3) % 2 == 1"},  # reads an earlier derived column
    "cell": {"expr": "station + '-' + zone"},
    "since": {"_target_": "tests.unit.extensions.hours_since", "inputs": ["doy", "hour"]},
    "ratio": {"expr": "log1p(abs(temp)) / (humidity + 1) ** 0.5"},
}


def _derived(spec: dict):
    """`data.derived` as composition types it."""
    return OmegaConf.merge(OmegaConf.structured(config.schema.DataConfig), {"derived": spec}).derived


def _deriver(spec: dict = DERIVED) -> Deriver:
    return Deriver(_derived(spec), text={"station", "zone"})


def _same(a, b) -> bool:
    missing = lambda v: v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    return a == b and type(a) is type(b)


rows = st.fixed_dictionaries(
    {
        "doy": st.integers(1, 365),
        "hour": st.integers(0, 23),
        "temp": st.one_of(st.none(), st.floats(-40, 45, allow_nan=False)),
        "humidity": st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        "station": st.one_of(st.none(), st.sampled_from(["007", "012", "100"])),  # missing text: missing cell
        "zone": st.sampled_from(["n", "s"]),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=30))
# Found by hypothesis: `** 0.5` was sqrt on the column and pow on one request's scalar.
@example([{"doy": 1, "hour": 0, "temp": 1.0, "humidity": 48.15390166493484, "station": None, "zone": "n"}])
def test_a_derived_column_is_the_same_offline_and_online(records):
    frame = pd.DataFrame(records).astype({"temp": "float64", "humidity": "float64", "station": "str", "zone": "str"})
    deriver = _deriver()
    offline = deriver.frame(frame)
    for i, record in enumerate(records):
        online = deriver.record(record)  # a request's values: no DataFrame
        for name in deriver.names:
            value = offline[name].iloc[i]
            value = value.item() if hasattr(value, "item") else value
            assert _same(value, online[name]), (name, record, value, online[name])
    assert offline["hours"].dtype == "int64" and offline["odd_block"].dtype == bool
    first = records[0]
    assert _same(offline["cell"].iloc[0], first["station"] and f"{first['station']}-{first['zone']}")  # "007-n"


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("temp.__class__", "Attribute is not allowed"),
        ("temp[0]", "Subscript is not allowed"),
        ("__import__('os')", "calls one of"),
        ("lambda: 1", "Lambda is not allowed"),
        ("temp +", "is not an expression"),
    ],
)
def test_only_arithmetic_parses(expr, said):
    with pytest.raises(ConfigError, match=said) as err:
        _deriver({"bad": {"expr": expr}})
    assert "data.derived.bad" in str(err.value)


def test_derived_columns_read_declared_columns_with_did_you_mean():
    spec = _derived({"hours": {"expr": "hour + 24 * (dayofyear - 1)"}})
    with pytest.raises(ConfigError, match=r"data.derived.hours: reads 'dayofyear' \(did you mean 'day_of_year'\?\)"):
        check_derived(spec, {"hour", "day_of_year"})
    with pytest.raises(ConfigError, match=r"data\.derived\.b: reads 'a'"):  # declared after the column it reads
        check_derived(_derived({"b": {"expr": "a + 1"}, "a": {"expr": "hour"}}), {"hour"})
    with pytest.raises(ConfigError, match="exactly one of expr"):
        _deriver({"x": {"expr": "hour", "_target_": "tests.unit.extensions.hours_since"}})


def test_a_column_of_the_wrong_kind_is_a_named_contract_error():
    frame = pd.DataFrame({"doy": ["12", "13"], "hour": [1, 2]})  # text where a number belongs
    with pytest.raises(ContractError, match=r"data.derived.hours: 'hour \+ 24 \* \(doy - 1\)' fails on columns"):
        _deriver({"hours": DERIVED["hours"]}).frame(frame)


# --- event times --------------------------------------------------------------------------
PARTS = OmegaConf.create(
    {"parts": {"year": 2011, "day_of_year": "doy", "hour": "hr"}, "column": None, "tz": "America/Chicago"}
)


def test_event_time_from_a_constant_year_day_of_year_and_hour_offline_equals_online():
    # 13 March and 6 November 2011: the clocks change in Chicago.
    frame = pd.DataFrame({"doy": [1, 72, 72, 72, 310, 310, 365], "hr": [0, 1, 2, 3, 0, 1, 23]})
    times, counts = event_times(frame, PARTS)
    spec = {**OmegaConf.to_container(PARTS), "naive_tz": "America/Chicago"}
    online = [event_time_of(r, spec) for r in frame.to_dict("records")]
    assert list(times) == online
    assert str(times.iloc[0]) == "2011-01-01 06:00:00+00:00" and str(times.iloc[-1]) == "2012-01-01 05:00:00+00:00"
    assert counts == {"ambiguous": 1, "nonexistent": 1}  # 01:00 on 6 Nov twice, 02:00 on 13 Mar never
    assert str(times.iloc[2]) == "2011-03-13 08:00:00+00:00"  # the missing hour moves forward


def test_impossible_parts_are_found_by_both_paths():
    frame = pd.DataFrame({"doy": [366, 0, 12, 12], "hr": [1, 1, 24, 5]})
    assert invalid_event_times(frame, PARTS).tolist() == [True, True, True, False]
    for doy, hr in [(366, 1), (0, 1), (12, 24)]:
        with pytest.raises(ValueError):
            naive_time({"year": 2011, "day_of_year": doy, "hour": hr})
    assert naive_time({"year": 2012, "day_of_year": 366, "hour": 5}).isoformat() == "2012-12-31T05:00:00"


def test_a_timestamp_event_time_reads_naive_values_in_its_columns_zone():
    spec = {"column": "ts", "parts": {}, "tz": "Europe/Paris", "naive_tz": "America/New_York"}
    assert str(event_time_of({"ts": "2024-01-05T10:00:00"}, spec)) == "2024-01-05 15:00:00+00:00"
    assert str(event_time_of({"ts": "2024-01-05T10:00:00+01:00"}, spec)) == "2024-01-05 09:00:00+00:00"


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("~data.event_time.parts.day", "expected year and either month \\+ day or day_of_year"),
        ("data.event_time.parts.day=dday", "data.event_time.parts.day: 'dday' \\(did you mean 'day'\\?\\)"),
        ("data.event_time.column=time_hour", "give either column"),
        ("data.lookup_joins.0.key=tailnm", "data.lookup_joins\\[0\\].key: 'tailnm' \\(did you mean 'tailnum'\\?\\)"),
        (
            "+data.lookup_joins.0.right_key=tail",
            "right_key: 'tail' \\(did you mean 'tailnum'\\?\\) is not a column of 'planes'",
        ),
    ],
)
def test_event_time_config_errors_name_the_key(override, said):
    text = config.compose_yaml(REPO, [override])
    with pytest.raises(ConfigError, match=said):
        config.check(config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test"), lightgbm=False)


def test_a_constant_part_composes_as_a_number_not_a_column():
    text = config.compose_yaml(REPO, ["data.event_time.parts.year=2013"])
    cfg = config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test")
    config.check(cfg, lightgbm=False)
    assert cfg.data.event_time.parts.year == 2013


# --- generated periods --------------------------------------------------------------------
def test_periods_are_generated_from_a_start_an_end_and_a_cadence():
    months = generate_periods("2013-03-01", "2014-01-01", "month")
    assert [p.name for p in months][:2] == ["2013-03", "2013-04"] and len(months) == 10
    assert months[0].prev == "initial"
    assert all(b.prev == a.name and b.start == a.end for a, b in itertools.pairwise(months))
    assert months[-1].end == "2014-01-01"
    weeks = generate_periods("2013-03-04", "2013-04-01", "week", "warmup")
    assert [(p.name, p.end) for p in weeks][-1] == ("2013-03-25", "2013-04-01") and weeks[0].prev == "warmup"
    for args in [("2013-03-02", "2014-01-01", "month"), ("2013-03-04", "2013-04-02", "week"), ("a", "b", "week")]:
        with pytest.raises(ValueError):
            generate_periods(*args)


def test_the_monthly_backtest_is_generated_and_listed_in_params():
    periods = OmegaConf.load(REPO / "params.yaml").backtest.periods
    assert [p.name for p in periods] == [f"2013-{m:02d}" for m in range(3, 13)]
    with pytest.raises(ConfigError, match="monthly periods run from a 1st to a 1st"):
        config.compose_yaml(REPO, ["backtest.initial.end=2013-03-02"])


def test_numbers_in_numpy_are_the_python_numbers():
    """The reason both paths agree: numpy float64 scalars do IEEE arithmetic like arrays."""
    a = np.array([0.1, 7.0, -3.5])
    d = _deriver({"y": {"expr": "a ** 2 // 3 - a % 2"}})
    assert d.frame(pd.DataFrame({"a": a}))["y"].tolist() == [d.record({"a": float(v)})["y"] for v in a]


def test_an_event_time_from_a_derived_column_of_naive_local_times():
    """`event_time.column` may name a derived column: naive values are read in event_time.tz."""
    spec = OmegaConf.create({"parts": {}, "column": "start", "tz": "America/Chicago"})
    frame = pd.DataFrame({"start": pd.to_datetime(["2011-03-13 02:30", "2011-07-01 08:00"])})  # the first: no such hour
    times, counts = event_times(frame, spec)
    plain = {**OmegaConf.to_container(spec), "naive_tz": "America/Chicago"}
    assert list(times) == [event_time_of(r, plain) for r in frame.to_dict("records")]
    assert [str(t) for t in times] == ["2011-03-13 08:00:00+00:00", "2011-07-01 13:00:00+00:00"]
    assert counts["nonexistent"] == 1
