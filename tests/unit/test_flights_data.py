"""bench/flights_data.py: generated flights pass the default contracts as real ones do, in
whole consecutive days from 2013-01-01, with a unique key, the same for the same seed."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.flights_data import generate
from mlsys.config import load_sections, read_params
from mlsys.contracts import validate_table
from mlsys.data.sources import parse_times
from tests.conftest import REPO

KEY = ["year", "month", "day", "carrier", "flight", "origin"]


@pytest.fixture(scope="module")
def generated() -> dict[str, pd.DataFrame]:
    return generate(20_000, seed=3)


def test_generated_tables_pass_the_default_contracts_without_frame_failures(generated):
    cfg = load_sections(read_params(REPO), ("data", "contract"), "params.yaml")
    for name, frame in generated.items():
        parsed, unparsed, _ = parse_times(frame, cfg.data.sources[name])
        report = validate_table(name, cfg.contract.tables[name], parsed, unparsed).report
        assert report["frame_failures"] == [], (name, report["frame_failures"])  # dtypes, row share
        assert report["quarantine_fraction"] < 0.001, (name, report["row_failures"])


def test_whole_consecutive_days_from_2013_with_a_unique_key(generated):
    flights, weather = generated["flights"], generated["weather"]
    days = pd.to_datetime(flights[["year", "month", "day"]]).drop_duplicates().sort_values()
    assert days.iloc[0] == pd.Timestamp("2013-01-01")
    assert (days.diff().dropna() == pd.Timedelta(days=1)).all()
    assert len(flights) >= 20_000 and not flights.duplicated(KEY).any()
    assert not weather.duplicated(["origin", "time_hour"]).any()
    last_day = flights[pd.to_datetime(flights[["year", "month", "day"]]) == days.iloc[-1]]
    assert len(flights) - len(last_day) < 20_000  # it stops at the day that reaches the rows


def test_the_same_seed_gives_the_same_data_and_another_seed_other_days(generated):
    again = generate(20_000, seed=3)
    for name, frame in generated.items():
        pd.testing.assert_frame_equal(frame, again[name])
    other = generate(20_000, seed=4)["flights"]
    assert not other["dep_delay"].head(1000).equals(generated["flights"]["dep_delay"].head(1000))
