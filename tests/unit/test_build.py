"""Time: event times, as-of joins and point-in-time aggregates against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.config.schema import Aggregate
from mlsys.data.build import aggregate, asof_join, build, event_times
from mlsys.data.columns import EVENT_TIME, PREDICTION_TIME
from mlsys.data.derive import Deriver
from mlsys.durations import parse_duration


def test_local_event_time_matches_the_utc_time_hour_column(parsed_tables, full_config):
    """year/month/day/hour are New York local; time_hour is UTC: both must agree, DST included."""
    flights = parsed_tables["flights"]
    utc, local = event_times(flights, full_config.data.event_time)
    assert str(utc.dtype) == "datetime64[us, UTC]"
    at = lambda m, d, h: int(((flights.month == m) & (flights.day == d) & (flights.hour == h)).sum())  # noqa: E731
    assert local == {"ambiguous": at(11, 3, 1), "nonexistent": at(3, 10, 2)}  # 01:xx twice on 3 Nov, no 02:xx on 10 Mar
    assert (utc.dt.floor("h") == flights["time_hour"]).all()


NEW_YORK = OmegaConf.create(
    {"column": None, "tz": "America/New_York", "parts": {u: u for u in ("year", "month", "day", "hour", "minute")}}
)


def test_one_local_time_rule_on_both_2013_transitions():
    """Spring forward (10 March, 02:30 does not exist) and fall back (3 November, 01:30 occurs
    twice): the first occurrence, shifted forward, counted; the scalar twin agrees."""
    from mlsys.data.build import event_time_of
    from mlsys.data.sources import parse_times

    rows = pd.DataFrame(
        {"year": 2013, "month": [3, 3, 11, 11, 11], "day": [10, 10, 3, 3, 3], "hour": [1, 2, 0, 1, 2],
         "minute": [59, 30, 30, 30, 30]}
    )  # fmt: skip
    utc, counts = event_times(rows, NEW_YORK)
    assert counts == {"ambiguous": 1, "nonexistent": 1}
    assert [t.strftime("%H:%M") for t in utc.dt.tz_convert("America/New_York")] == [
        "01:59", "03:00", "00:30", "01:30", "02:30"
    ]  # fmt: skip
    assert utc.iloc[3] == pd.Timestamp("2013-11-03 05:30", tz="UTC")  # 01:30 EDT, the first of the two
    scalar = [event_time_of(r, OmegaConf.to_container(NEW_YORK)) for r in rows.to_dict("records")]
    assert list(utc) == scalar
    # A source's local time column: parsed by the same rule, counted, never quarantined.
    text = pd.DataFrame({"at": ["2013-03-10 02:30:00", "2013-11-03 01:30:00", "2013-07-01 12:00:00"]})
    source = OmegaConf.create({"time_columns": {"at": {"tz": "America/New_York", "format": "%Y-%m-%d %H:%M:%S"}}})
    parsed, failures, local = parse_times(text, source)
    assert len(failures) == 0 and parsed["at"].notna().all()
    assert local == {"at": {"ambiguous": 1, "nonexistent": 1}}


def test_windows_are_local_calendar_days_across_both_transitions():
    """A 7-day holdout ending just after spring forward starts on the right day; a weekly
    cadence after fall back does not skip a week."""
    from mlsys.split import data_end, windows_ending

    training = OmegaConf.create({"holdout": "7d", "window": "expanding", "cadence": "week", "sliding_periods": 3})
    split = windows_ending(pd.Timestamp("2013-03-15"), "2013-01-01", training, "America/New_York")
    assert [(p.start, p.end) for p in split.periods] == [
        ("2013-01-01", "2013-03-01"), ("2013-03-01", "2013-03-08"), ("2013-03-08", "2013-03-15")
    ]  # fmt: skip
    sunday = pd.Series([pd.Timestamp("2013-11-10 22:00", tz="America/New_York").tz_convert("UTC")])
    assert data_end(sunday, training, "America/New_York") == pd.Timestamp("2013-11-11")  # the Monday after
    saturday = pd.Series([pd.Timestamp("2013-11-09 22:00", tz="America/New_York").tz_convert("UTC")])
    assert data_end(saturday, training, "America/New_York") == pd.Timestamp("2013-11-04")  # week of Nov 4 incomplete


def test_weather_is_joined_as_of_the_prediction_time(parsed_tables, full_config):
    """Hour h's report is taken at h:51, so it is available at time_hour + lag (1h)."""
    data = full_config.data
    join = data.asof_joins[0]
    assert parse_duration(join.lag) >= pd.Timedelta("51min")
    flights = parsed_tables["flights"].head(5000).copy()
    flights[EVENT_TIME] = event_times(flights, data.event_time)[0]
    flights[PREDICTION_TIME] = flights[EVENT_TIME] - parse_duration(data.prediction_lead)
    weather = parsed_tables["weather"].assign(obs=parsed_tables["weather"]["time_hour"])
    join = OmegaConf.merge(join, {"columns": ["temp", "obs"]})
    out = asof_join(flights, weather, join)
    seen = out["wx_obs"].dropna()
    available = seen + parse_duration(join.lag)
    assert len(seen) > 4900
    assert (available <= out.loc[seen.index, PREDICTION_TIME]).all()  # nothing known later
    # brute force: the latest report at the origin available by the prediction time
    for i in seen.index[:200]:
        ok = (weather["origin"] == out.at[i, "origin"]) & (
            weather["obs"] + parse_duration(join.lag) <= out.at[i, PREDICTION_TIME]
        )
        assert weather.loc[ok, "obs"].max() == out.at[i, "wx_obs"]


def _brute(frame: pd.DataFrame, agg) -> np.ndarray:
    """Row by row, straight from the definition (seconds since epoch)."""
    sec = lambda col: frame[col].to_numpy("datetime64[s]").astype("int64").astype(float)  # noqa: E731
    event, query = sec(EVENT_TIME), sec(PREDICTION_TIME)
    window = parse_duration(agg.window).total_seconds()
    vals = frame[agg.value].to_numpy(float) if agg.value else np.ones(len(frame))
    lag = parse_duration(agg.observed_lag).total_seconds()
    obs = event + lag + frame[agg.observed_after].to_numpy(float) * 60 if agg.known == "past" else event
    out = []
    for i in range(len(frame)):
        m = np.ones(len(frame), dtype=bool)
        if frame[agg.by].iloc[i].isna().any():  # a null key has no group
            out.append(np.nan)
            continue
        for b in agg.by:
            m &= frame[b].to_numpy() == frame[b].iloc[i]
        if agg.known == "past":
            m &= (obs > query[i] - window) & (obs <= query[i])
        else:
            m &= (obs >= event[i] - window) & (obs <= event[i] + window)
        m &= ~np.isnan(vals) & ~np.isnan(obs)
        if agg.stat == "count":
            out.append(float(m.sum()))
        elif agg.stat == "sum":
            out.append(vals[m].sum())
        elif agg.stat == "mean":
            out.append(vals[m].mean() if m.any() else np.nan)
        else:
            out.append(vals[m][np.argmax(obs[m])] if m.any() else np.nan)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    stat=st.sampled_from(["mean", "sum", "count", "last"]),
    known=st.sampled_from(["past", "schedule"]),
    window_h=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    lag_min=st.sampled_from([0, 30, 24 * 60]),
)
def test_aggregate_matches_brute_force(n, stat, known, window_h, seed, lag_min):
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2013-03-01", tz="UTC")
    # minute-resolution times, many ties, a few missing delays
    event = start + pd.to_timedelta(rng.integers(0, 12 * 60, n) * 10, unit="min")
    delay = rng.integers(-10, 120, n).astype(float)
    delay[rng.random(n) < 0.2] = np.nan
    group = rng.integers(0, 3, n).astype(float)
    group[rng.random(n) < 0.1] = np.nan  # rows without a key
    frame = pd.DataFrame({"g": group, EVENT_TIME: event, "delay": delay})
    frame[PREDICTION_TIME] = frame[EVENT_TIME] - pd.Timedelta("2h")
    agg = OmegaConf.structured(
        Aggregate(
            by=["g"],
            value="delay",
            stat=stat,
            window=f"{window_h}h",
            known=known,
            observed_after="delay",
            observed_lag=f"{lag_min}min",
        )
    )
    got, want = aggregate(frame, agg), _brute(frame, agg)
    if stat == "last":  # ties in observation time make 'last' ambiguous: use distinct times
        shift = frame["delay"].fillna(0) if known == "past" else 0 * frame["delay"].fillna(0)
        obs = frame[EVENT_TIME] + pd.to_timedelta(shift, unit="min")
        frame = frame[~obs.duplicated(keep=False)].reset_index(drop=True)
        got, want = aggregate(frame, agg), _brute(frame, agg)
    np.testing.assert_allclose(got, want, equal_nan=True)


def test_build_reconciles_and_labels(parsed_tables, built):
    result = built
    r = result.report
    assert r["rows_in"] == len(parsed_tables["flights"])
    assert r["rows_labelled"] + r["rows_excluded_no_label"] == r["rows_in"]
    assert r["rows_excluded_no_label"] == int(parsed_tables["flights"]["arr_delay"].isna().sum())
    labelled = result.labelled
    assert (labelled["label"] == (labelled["arr_delay"] > 15).astype(int)).all()
    assert 0.2 < r["label"]["positive_rate"] < 0.3


def test_label_maturity_keeps_young_rows_out_of_training():
    """A label is final `matures_after` its event: younger rows at snapshot time are pending
    (counted, served, never trained on), apart from the rows that will never have one."""
    from mlsys.config.schema import DataConfig
    from mlsys.data.build import build

    data = OmegaConf.merge(
        OmegaConf.structured(DataConfig),
        {
            "name": "events",
            "primary": "events",
            "key": ["id"],
            "sources": {"events": {"kind": "csv", "path": "x.csv", "available": "at_prediction"}},
            "event_time": {"column": "ts"},
            "label": {"column": "y", "threshold": 0, "matures_after": "1d"},
        },
    )
    ts = pd.date_range("2013-01-01", periods=10, freq="12h", tz="UTC")
    events = pd.DataFrame({"id": range(10), "ts": ts, "y": [1, 0, 1, None, 0, 1, 0, None, 1, 0]})
    result = build({"events": events}, data, as_of=ts[-1])  # rows 8 and 9 are younger than a day
    report = result.report
    assert (report["rows_labelled"], report["rows_excluded_no_label"], report["rows_pending_label"]) == (6, 2, 2)
    assert sorted(result.labelled["id"]) == [0, 1, 2, 4, 5, 6]
    assert sorted(result.unlabelled["id"]) == [3, 7, 8, 9] and result.unlabelled["label"].isna().all()
    later = build({"events": events}, data, as_of=ts[-1] + pd.Timedelta(days=2)).report
    assert (later["rows_labelled"], later["rows_pending_label"]) == (8, 0)  # matured since


def test_a_lookup_join_keyed_on_a_derived_column(parsed_tables, full_config):
    """A key the primary table derives joins the source's own key column, named by
    `right_key`: the same columns as a join on the raw key."""
    spec = {"tail": {"expr": "tailnum + ''", "dtype": "str"}}
    data = OmegaConf.merge(full_config.data, {"derived": spec, "asof_joins": [], "aggregates": {}})
    planes = parsed_tables["planes"].rename(columns={"tailnum": "plane_id"})
    data.lookup_joins[0].merge_with({"key": "tail", "right_key": "plane_id"})
    flights = Deriver(data.derived).frame(parsed_tables["flights"].head(20000))
    joined = build({**parsed_tables, "flights": flights, "planes": planes}, data).labelled
    plain = build(
        {**parsed_tables, "flights": flights},
        OmegaConf.merge(data, {"lookup_joins": [full_config.data.lookup_joins[0]]}),
    ).labelled
    assert joined["plane_seats"].notna().mean() > 0.8
    pd.testing.assert_series_equal(joined["plane_seats"], plain["plane_seats"])


def test_a_join_that_matches_no_row_stops_the_build_naming_it(parsed_tables, full_config):
    """Planes' tail numbers written another way ('n14228' for 'N14228'): the plane columns
    would be missing on every row, silently; the build stops (exit 6) naming the join."""
    from mlsys.errors import ContractError

    data = OmegaConf.merge(full_config.data, {"asof_joins": [], "aggregates": {}})
    planes = parsed_tables["planes"].assign(tailnum=parsed_tables["planes"]["tailnum"].str.lower())
    flights = parsed_tables["flights"].head(5000)
    named = r"data\.lookup_joins\[0\] \('planes' on \['tailnum'\]\): not one of 5,000 rows got a value"
    with pytest.raises(ContractError, match=named):
        build({**parsed_tables, "flights": flights, "planes": planes}, data)
    assert build({**parsed_tables, "flights": flights}, data).labelled["plane_seats"].notna().any()
