"""bench/flights_data.py: generated flights pass the default contracts as real ones do, in
whole consecutive days from 2013-01-01, with a unique key, the same for the same seed."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.flights_data import REUSE_DAYS, generate
from mlsys.config import load_sections, read_params
from mlsys.contracts import validate_table
from mlsys.data.sources import parse_times
from tests.conftest import REPO

KEY = ["year", "month", "day", "carrier", "flight", "origin"]


@pytest.fixture(scope="module")
def generated() -> dict[str, pd.DataFrame]:
    return generate(50_000, seed=3)


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
    assert len(flights) >= 50_000 and not flights.duplicated(KEY).any()
    assert not weather.duplicated(["origin", "time_hour"]).any()
    last_day = flights[pd.to_datetime(flights[["year", "month", "day"]]) == days.iloc[-1]]
    assert len(flights) - len(last_day) < 50_000  # it stops at the day that reaches the rows


def test_the_same_seed_gives_the_same_data_and_another_seed_other_days(generated):
    again = generate(50_000, seed=3)
    for name, frame in generated.items():
        pd.testing.assert_frame_equal(frame, again[name])
    other = generate(50_000, seed=4)["flights"]
    assert not other["dep_delay"].head(1000).equals(generated["flights"]["dep_delay"].head(1000))


def test_no_real_day_is_copied_twice_within_the_reuse_window(generated):
    """A day's copy is known by its flights' delays; two copies within REUSE_DAYS would let a
    7-day aggregate read the very flight it predicts."""
    flights = generated["flights"]
    date = pd.to_datetime(flights[["year", "month", "day"]])
    signature = flights.assign(date=date).groupby("date")["dep_delay"].apply(lambda d: tuple(d.fillna(-9999)))
    seen: dict[tuple, pd.Timestamp] = {}
    for day, sig in signature.items():
        if sig in seen:
            assert (day - seen[sig]).days >= REUSE_DAYS, (seen[sig], day)
        seen[sig] = day
    assert len(signature) > REUSE_DAYS
