"""Time: event times, as-of joins and point-in-time aggregates against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlsys.config.schema import Aggregate
from mlsys.data.build import EVENT_TIME, PREDICTION_TIME, aggregate, asof_join, event_times
from mlsys.durations import parse_duration


def test_local_event_time_matches_the_utc_time_hour_column(parsed_tables, full_config):
    """year/month/day/hour are New York local; time_hour is UTC: both must agree, DST included."""
    flights = parsed_tables["flights"]
    utc = event_times(flights, full_config.data.event_time)
    assert str(utc.dtype) == "datetime64[us, UTC]"
    assert (utc.dt.floor("h") == flights["time_hour"]).all()


def test_weather_is_joined_as_of_the_prediction_time(parsed_tables, full_config):
    """Hour h's report is taken at h:51, so it is available at time_hour + lag (1h)."""
    data = full_config.data
    join = data.asof_joins[0]
    assert parse_duration(join.lag) >= pd.Timedelta("51min")
    flights = parsed_tables["flights"].head(5000).copy()
    flights[EVENT_TIME] = event_times(flights, data.event_time)
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
    assert 0.2 < r["positive_rate"] < 0.3
