"""Build the modelling table: event and prediction times, label, joins as of the
prediction time, point-in-time aggregates. Pure functions over frames."""

from __future__ import annotations

import calendar
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.data.columns import EVENT_LOCAL, EVENT_TIME, LABEL, PREDICTION_TIME, TIME_UNITS
from mlsys.data.sources import localize
from mlsys.durations import parse_duration
from mlsys.errors import ConfigError, ContractError
from mlsys.tasks import Task


def _part_columns(frame: pd.DataFrame, parts: Mapping[str, Any]) -> dict[str, pd.Series]:
    """Each unit's values as numbers: a column, or a constant (`year: 2011`) for every row."""
    return {
        unit: pd.Series(v, index=frame.index) if isinstance(v, int) else pd.to_numeric(frame[v], errors="coerce")
        for unit, v in parts.items()
    }


def _naive_times(parts: dict[str, pd.Series]) -> pd.Series:
    """Local wall-clock times from a date (year + month + day, or year + day_of_year) and
    time parts (hour, minute, second), whole columns at a time."""
    if "day_of_year" in parts:
        jan1 = pd.to_datetime(pd.DataFrame({"year": parts["year"], "month": 1, "day": 1}))
        date = jan1 + pd.to_timedelta(parts["day_of_year"] - 1, unit="D")
    else:
        date = pd.to_datetime(pd.DataFrame({u: parts[u] for u in ("year", "month", "day")}))
    seconds = sum((parts[u] * k for u, k in TIME_UNITS.items() if u in parts), pd.Series(0, index=date.index))
    return date + pd.to_timedelta(seconds, unit="s")


def naive_time(values: Mapping[str, int]) -> datetime:
    """`_naive_times` for one record; ValueError when the parts form no date and time (30
    February, day 366 of 2011, hour 24): the request model's 422, validate's quarantine."""
    if "day_of_year" in values:
        year, day = values["year"], values["day_of_year"]
        if not 1 <= day <= 365 + calendar.isleap(year):
            raise ValueError(f"day_of_year {day} is not a day of {year}")
        date = datetime(year, 1, 1) + timedelta(days=day - 1)
    else:
        date = datetime(values["year"], values["month"], values["day"])
    return date.replace(**{u: values.get(u, 0) for u in TIME_UNITS})


def event_time_spec(data: DictConfig) -> dict[str, Any]:
    """`data.event_time` as the plain mapping the request path reads (OmegaConf access is
    slow), with the zone naive values of its column are read in: the time column's declared
    zone (as the validate stage parses it), else `event_time.tz`."""
    spec = OmegaConf.to_container(data.event_time, resolve=True)
    declared = data.sources[data.primary].time_columns.get(spec["column"]) if spec["column"] else None
    return {**spec, "naive_tz": declared.tz if declared is not None else spec["tz"]}


def event_times(frame: pd.DataFrame, spec: DictConfig) -> tuple[pd.Series, dict[str, int]]:
    """UTC event timestamps from a timestamp column or from local date/time parts (the one
    local-time rule, `sources.localize`: ambiguous -> first occurrence, nonexistent ->
    forward; counted)."""
    if spec.column:
        times = frame[spec.column]
        times = times if pd.api.types.is_datetime64_any_dtype(times) else pd.to_datetime(times)
        if times.dt.tz is not None:  # a declared time column: parsed to UTC by validate
            return times.dt.tz_convert("UTC").astype("datetime64[us, UTC]"), {"ambiguous": 0, "nonexistent": 0}
        local, counts = localize(times, spec.tz)  # a derived column of naive local times
    else:
        local, counts = localize(_naive_times(_part_columns(frame, spec.parts)), spec.tz)
    return local.dt.tz_convert("UTC").astype("datetime64[us, UTC]"), counts


def invalid_event_times(frame: pd.DataFrame, spec: DictConfig) -> np.ndarray:
    """Rows whose local parts are all there but form no date or time (30 February, hour 25):
    the validate stage quarantines them, as the request model refuses them (422)."""
    columns = [c for c in spec.parts.values() if not isinstance(c, int)]
    if spec.column or any(col not in frame.columns for col in columns):
        return np.zeros(len(frame), dtype=bool)  # a missing column is the contract's to report
    parts = pd.DataFrame(_part_columns(frame, spec.parts), index=frame.index)
    present = parts.notna().all(axis=1)
    ok = pd.Series(True, index=frame.index)
    whole = (parts.fillna(0) % 1 == 0).all(axis=1)
    if "day_of_year" in parts:
        year = parts["year"]
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))  # calendar.isleap, whole columns
        ok &= parts["day_of_year"].between(1, 365 + leap.astype(int))
    elif len(parts):
        ok &= pd.to_datetime(parts[["year", "month", "day"]], errors="coerce").notna()
    for unit, top in (("hour", 23), ("minute", 59), ("second", 59)):
        if unit in parts:
            ok &= parts[unit].between(0, top)
    return (present & ~(ok & whole)).to_numpy()


def event_time_of(record: Mapping[str, Any], spec: Mapping[str, Any], local: bool = False) -> pd.Timestamp:
    """`event_times` for one record (serving, ~3 µs): the same instant, UTC or in `spec.tz`
    (`spec` from `event_time_spec`)."""
    if spec["column"]:
        instant = pd.Timestamp(record[spec["column"]])
        if instant.tzinfo is None:
            instant = instant.tz_localize(spec["naive_tz"], ambiguous=True, nonexistent="shift_forward")
        return instant.tz_convert(spec["tz"]) if local else instant.tz_convert("UTC")
    parts = tuple((u, v if isinstance(v, int) else int(record[v])) for u, v in spec["parts"].items())
    return _parts_time(parts, spec["tz"])[0 if local else 1]


@functools.lru_cache(maxsize=1 << 16)
def _parts_time(parts: tuple[tuple[str, int], ...], tz_name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(local, UTC) instants of local date/time parts, remembered: requests share scheduled
    times, and building Timestamps costs more than the rest of a record's features."""
    naive = naive_time(dict(parts))
    tz = ZoneInfo(tz_name)
    aware = naive.replace(tzinfo=tz)  # fold=0: a repeated hour reads as the first (DST) one, as above
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:  # in a spring-forward gap
        shifted = pd.Timestamp(naive).tz_localize(tz_name, nonexistent="shift_forward")
        return shifted, shifted.tz_convert("UTC")
    return pd.Timestamp(aware), pd.Timestamp(aware.astimezone(UTC))


def asof_join(left: pd.DataFrame, right: pd.DataFrame, join: DictConfig) -> pd.DataFrame:
    """Add `join.columns` of the latest `right` row (same `by`) available by prediction time."""
    avail = "_available_at"
    r = right[[*join.by, join.time, *join.columns]].copy()
    r[avail] = r[join.time] + parse_duration(join.lag)
    r = r.dropna(subset=[avail]).sort_values(avail, kind="stable")
    r = r.drop(columns=[join.time]).rename(columns={c: join.prefix + c for c in join.columns})
    order = left[PREDICTION_TIME].argsort(kind="stable")
    merged = (
        pd.merge_asof(
            left.iloc[order][[PREDICTION_TIME, *join.by]].reset_index(),
            r,
            left_on=PREDICTION_TIME,
            right_on=avail,
            by=list(join.by),
            tolerance=parse_duration(join.tolerance),
            direction="backward",
        )
        .set_index("index")
        .reindex(left.index)
    )
    out = left.copy()
    for c in join.columns:
        out[join.prefix + c] = merged[join.prefix + c]
    return out


def lookup_join(left: pd.DataFrame, right: pd.DataFrame, join: DictConfig) -> pd.DataFrame:
    """Add `join.columns` of the `right` row with the same key (at most one: many-to-one);
    the key is `join.right_key` in `right` when set."""
    own = join.right_key or join.key
    r = right[[own, *join.columns]].rename(columns={own: join.key} | {c: join.prefix + c for c in join.columns})
    return left.merge(r, on=join.key, how="left", validate="many_to_one")


def _group_codes(frame: pd.DataFrame, by: list[str]) -> np.ndarray:
    """Group number per row; -1 where a key is null (such rows form no group)."""
    if not by:
        return np.zeros(len(frame), dtype=np.int64)
    codes = frame.groupby(list(by), sort=True, dropna=True).ngroup()
    return codes.fillna(-1).to_numpy(np.int64)


def aggregate(frame: pd.DataFrame, agg: DictConfig) -> np.ndarray:
    """One point-in-time aggregate per row, from cumulative sums and binary search.

    past: over rows of the same group observed in (prediction_time - window, prediction_time].
    schedule: over rows of the same group with event time in [event - window, event + window].
    """
    groups = _group_codes(frame, list(agg.by))
    window = parse_duration(agg.window).total_seconds()
    event = frame[EVENT_TIME].to_numpy("datetime64[s]").astype(np.int64).astype(np.float64)
    value = frame[agg.value].to_numpy(np.float64, na_value=np.nan) if agg.value else np.ones(len(frame))
    if agg.known == "past":
        observed = event + parse_duration(agg.observed_lag).total_seconds()
        if agg.observed_after:
            observed = observed + frame[agg.observed_after].to_numpy(np.float64, na_value=np.nan) * 60.0
        query_hi = frame[PREDICTION_TIME].to_numpy("datetime64[s]").astype(np.int64).astype(np.float64)
        query_lo = query_hi - window
        lo_side, hi_side = "right", "right"  # (lo, hi]
    else:
        observed = event
        query_lo, query_hi = event - window, event + window
        lo_side, hi_side = "left", "right"  # [lo, hi]
    ok = ~np.isnan(observed) & ~np.isnan(value) & (groups >= 0)
    # A group's rows occupy one band of an int64 key: group * 2**40 + seconds since `base`.
    base = np.floor(min(np.min(observed[ok], initial=np.inf), np.min(query_lo, initial=np.inf)))
    base = 0.0 if not np.isfinite(base) else base

    def band(g: np.ndarray, t: np.ndarray) -> np.ndarray:
        return (g << 40) + (t - base).astype(np.int64)

    key = band(groups[ok], observed[ok])
    order = np.argsort(key, kind="stable")
    key, vals = key[order], value[ok][order]
    csum = np.concatenate([[0.0], np.cumsum(vals)])
    # Needles in sorted order search faster; lo and hi keys share one order (same group band).
    q_hi = band(groups, query_hi)
    order_q = np.argsort(q_hi, kind="stable")
    lo, hi = np.empty(len(frame), dtype=np.int64), np.empty(len(frame), dtype=np.int64)
    lo[order_q] = np.searchsorted(key, band(groups, query_lo)[order_q], side=lo_side)
    hi[order_q] = np.searchsorted(key, q_hi[order_q], side=hi_side)
    count = (hi - lo).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg.stat == "count":
            out = count
        elif agg.stat == "sum":
            out = csum[hi] - csum[lo]
        elif agg.stat == "mean":
            out = np.where(count > 0, (csum[hi] - csum[lo]) / count, np.nan)
        else:  # last
            out = np.where(count > 0, vals[np.maximum(hi - 1, 0)] if len(vals) else np.nan, np.nan)
    return np.where(groups >= 0, out, np.nan)  # a null key (e.g. no tail number) has no group


@dataclass
class BuildResult:
    labelled: pd.DataFrame
    unlabelled: pd.DataFrame
    report: dict[str, object]


def pending(frame: pd.DataFrame, spec: DictConfig, as_of: pd.Timestamp | None) -> np.ndarray:
    """Rows whose label is not final yet at `as_of` (the snapshot): event + `matures_after`
    is later. Every task: a pending row is kept out of training and holdouts, and served."""
    if not spec.matures_after or as_of is None:
        return np.zeros(len(frame), dtype=bool)
    return (frame[EVENT_TIME] + parse_duration(spec.matures_after) > as_of).to_numpy()


def prepare(tables: dict[str, pd.DataFrame], data: DictConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """The primary table with its UTC event time, local event time and prediction time; the
    count of local times read by the one rule (ambiguous, nonexistent)."""
    frame = tables[data.primary].copy()
    frame[EVENT_TIME], local_times = event_times(frame, data.event_time)
    frame[EVENT_LOCAL] = frame[EVENT_TIME].dt.tz_convert(data.event_time.tz)
    frame[PREDICTION_TIME] = frame[EVENT_TIME] - parse_duration(data.prediction_lead)
    return frame, local_times


def enrich(frame: pd.DataFrame, tables: Mapping[str, pd.DataFrame], data: DictConfig) -> pd.DataFrame:
    """`prepare`'s frame with the joined columns (as of the prediction time, by key) and the
    point-in-time aggregates; `tables` need hold only the joined sources."""
    for join in data.asof_joins:
        frame = asof_join(frame, tables[join.source], join)
    for join in data.lookup_joins:
        frame = lookup_join(frame, tables[join.source], join)
    for name, agg in data.aggregates.items():
        frame[name] = aggregate(frame, agg)
    return frame


def context(frame: pd.DataFrame, data: DictConfig) -> tuple[pd.Timedelta, pd.Timedelta]:
    """How far before and after a span of event times the rows an aggregate of that span
    reads can lie (look-back, look-ahead): from the config (prediction lead, windows, lags)
    and the longest and shortest observation delay the data holds (`observed_after`), so a
    time slice plus this much on either side builds exactly as the whole table does."""
    back = ahead = pd.Timedelta(0)
    lead = parse_duration(data.prediction_lead)
    for name, agg in data.aggregates.items():
        window = parse_duration(agg.window)
        if agg.known != "past":  # schedule: event times within +-window
            back, ahead = max(back, window), max(ahead, window)
            continue
        after = pd.Series([0.0])
        if agg.observed_after:
            if agg.observed_after not in frame.columns:
                raise ConfigError(
                    f"data.aggregates.{name}.observed_after: {agg.observed_after!r} is not a column of "
                    f"{data.primary!r}, so engine dask cannot bound the rows it reads (use engine: local)"
                )
            after = frame[agg.observed_after].astype("float64").dropna() * 60.0
        late, early = (float(after.max()), float(after.min())) if len(after) else (0.0, 0.0)
        # A row with prediction time P reads rows observed in (P - window, P], observed =
        # event + lag + after: events in (P - window - lag - late, P - lag - early], P = event - lead.
        lag = parse_duration(agg.observed_lag)
        back = max(back, lead + window + lag + pd.Timedelta(seconds=max(late, 0.0)))
        ahead = max(ahead, -(lead + lag + pd.Timedelta(seconds=min(early, 0.0))))
    return back, ahead


def build(tables: dict[str, pd.DataFrame], data: DictConfig, as_of: pd.Timestamp | None = None) -> BuildResult:
    """Join validated tables into one row per primary entity, as of the prediction time;
    label the rows whose label is final by `as_of` (the snapshot time)."""
    frame, local_times = prepare(tables, data)
    return finish(enrich(frame, tables, data), data, as_of, local_times)


def _check_joins_matched(frame: pd.DataFrame, data: DictConfig) -> None:
    """A join that gave no row a value is a fault, not a feature: the keys are written
    differently in the two tables ('00054' and '54'), the times never meet, or the matched
    rows hold nothing in the joined columns."""
    for kind, joins in (("asof_joins", data.asof_joins), ("lookup_joins", data.lookup_joins)):
        for i, join in enumerate(joins):
            columns = [join.prefix + c for c in join.columns]
            if len(frame) and columns and not frame[columns].notna().to_numpy().any():
                on = join.by if kind == "asof_joins" else [join.key]
                raise ContractError(
                    f"data.{kind}[{i}] ({join.source!r} on {on}): not one of {len(frame):,} rows got a value from "
                    "it; compare the key values in both tables (text and numbers, leading zeros, case)"
                    + (
                        f" and the times ({join.time} + lag {join.lag}, tolerance {join.tolerance})"
                        if kind == "asof_joins"
                        else ""
                    )
                )


def finish(
    frame: pd.DataFrame, data: DictConfig, as_of: pd.Timestamp | None, local_times: dict[str, int]
) -> BuildResult:
    """Label `enrich`'s frame (rows not final by `as_of` pending), split labelled / unlabelled, report."""
    task = Task.from_config(data.label, {})
    frame[LABEL] = task.encode(frame[data.label.column], data.label)
    young = pending(frame, data.label, as_of)
    frame[LABEL] = frame[LABEL].mask(young)  # not final yet: no label, whatever it says now
    missing = frame[LABEL].isna().to_numpy()
    never = missing & ~young
    if never.any() and data.label.missing == "fail":
        raise ContractError(
            f"data.label: {int(never.sum())} rows have no {data.label.column!r} "
            "and data.label.missing is 'fail' (use 'exclude' to set them aside)"
        )
    _check_joins_matched(frame, data)
    labelled = frame[~missing].reset_index(drop=True)
    unlabelled = frame[missing].reset_index(drop=True)
    task.check_label(labelled[LABEL], data.label.column)  # one class, a constant: nothing to learn
    report = {
        "rows_in": len(frame),
        "rows_labelled": len(labelled),
        "rows_excluded_no_label": int(never.sum()),
        "rows_pending_label": int(young.sum()),
        "label": {"task": task.kind, **task.label_summary(labelled[LABEL])},
        "local_times": local_times,  # event times read by the one rule: ambiguous -> first, nonexistent -> forward
        "join_coverage": {
            **{
                f"asof:{j.source}": float(frame[j.prefix + j.columns[0]].notna().mean())
                for j in data.asof_joins
                if j.columns
            },
            **{
                f"lookup:{j.source}": float(frame[j.prefix + j.columns[0]].notna().mean())
                for j in data.lookup_joins
                if j.columns
            },
        },
    }
    return BuildResult(labelled=labelled, unlabelled=unlabelled, report=report)
