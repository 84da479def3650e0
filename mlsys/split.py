"""Time-based split: half-open local-date windows for the train, valid and test roles.

Static training uses the declared `split.periods`. Dynamic training rolls them with the
data (`resolve`): they end at the last complete cadence period, so they move (and the model
is retrained) once per period, and the same data always gives the same windows.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.durations import check_zone
from mlsys.errors import ConfigError


def period_bounds(split: DictConfig) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """name -> (start, end) as UTC instants; checks order and names."""
    bounds = {}
    for i, p in enumerate(split.periods):
        key = f"split.periods[{i}]"
        try:
            start, end = pd.Timestamp(p.start, tz=split.tz), pd.Timestamp(p.end, tz=split.tz)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from exc
        if not start < end:
            raise ConfigError(f"{key}: start {p.start} must be before end {p.end}")
        if p.name in bounds:
            raise ConfigError(f"{key}.name: {p.name!r} is declared twice")
        bounds[p.name] = (start.tz_convert("UTC"), end.tz_convert("UTC"))
    for role in ("train", "valid", "test"):
        if split[role] not in bounds:
            raise ConfigError(f"split.{role}: {split[role]!r} is not a declared period; periods: {list(bounds)}")
    return bounds


CADENCE = {"month": "MS", "week": "W-MON"}  # period starts


def resolved(windows: Path) -> DictConfig:
    """The split featurize used (`paths.windows`); later stages read it, not resolve it again."""
    from mlsys.io import read_json

    return OmegaConf.create(read_json(windows, "the windows featurize used: run featurize")["split"])


def holdout_days(training: DictConfig) -> int:
    """`training.holdout` in whole local calendar days (windows are dates, DST or not)."""
    from mlsys.durations import check_duration

    hold = check_duration(training.holdout, "training.holdout")
    if hold <= pd.Timedelta(0) or hold % pd.Timedelta(days=1):
        raise ConfigError(f"training.holdout: {training.holdout!r}: windows are local calendar days, use whole days")
    return hold.days


def data_end(times: pd.Series, training: DictConfig, tz: str) -> pd.Timestamp:
    """Exclusive end of the last complete cadence period in `times` (a day with data counts
    as complete), as a local date (naive: calendar arithmetic, unaffected by DST)."""
    last_day = times.max().tz_convert(tz).tz_localize(None).normalize() + pd.DateOffset(days=1)
    offset = pd.tseries.frequencies.to_offset(CADENCE[training.cadence])
    return last_day if offset.is_on_offset(last_day) else offset.rollback(last_day)


def windows_ending(end: pd.Timestamp, first: str, training: DictConfig, tz: str) -> DictConfig:
    """The rolling split that ends at local date `end`: test = the last `holdout` days,
    valid = the `holdout` days before, train = everything from `first` (expanding) or the
    last `sliding_periods` cadence periods (sliding). The one rule of the main pipeline's
    dynamic retrain and of every backtest retrain."""
    end = pd.Timestamp(end).tz_localize(None).normalize() if pd.Timestamp(end).tzinfo else pd.Timestamp(end)
    days = holdout_days(training)
    test, valid = end - pd.DateOffset(days=days), end - pd.DateOffset(days=2 * days)
    if training.window == "expanding":
        start = pd.Timestamp(first)
    else:
        offset = pd.tseries.frequencies.to_offset(CADENCE[training.cadence])
        start = offset.rollback(valid) - (training.sliding_periods - 1) * offset
    day = "%Y-%m-%d"
    periods = [
        {"name": "train", "start": start.strftime(day), "end": valid.strftime(day)},
        {"name": "valid", "start": valid.strftime(day), "end": test.strftime(day)},
        {"name": "test", "start": test.strftime(day), "end": end.strftime(day)},
    ]
    return OmegaConf.create({"tz": tz, "periods": periods, "train": "train", "valid": "valid", "test": "test"})


def resolve(split: DictConfig, training: DictConfig, times: pd.Series) -> DictConfig:
    """The split a stage uses: as declared (static), or rolled to the data (dynamic)."""
    if training.mode == "static":
        return split
    return windows_ending(data_end(times, training, split.tz), split.periods[0].start, training, split.tz)


def select(frame: pd.DataFrame, time_column: str, split: DictConfig, name: str) -> pd.DataFrame:
    """Rows of `frame` whose time falls in period `name`."""
    start, end = period_bounds(split)[name]
    return between(frame, time_column, start, end)


def window_rows(frame: pd.DataFrame, time_column: str, start: str, end: str, tz: str) -> pd.DataFrame:
    """Rows in [start, end), local dates in `tz`."""
    return between(frame, time_column, pd.Timestamp(start, tz=tz), pd.Timestamp(end, tz=tz))


def between(frame: pd.DataFrame, time_column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Rows whose time is in [start, end) (instants)."""
    t = frame[time_column]
    return frame[(t >= start) & (t < end)].reset_index(drop=True)


def check_split(split: DictConfig) -> None:
    """A known zone, `period_bounds`' order and names, and no two periods overlapping (a row in
    two windows would be trained and judged on)."""
    check_zone(split.tz, "split.tz")
    spans = sorted((start, end, name) for name, (start, end) in period_bounds(split).items())
    for (_, end, name), (start, _, after) in itertools.pairwise(spans):
        if start < end:
            raise ConfigError(f"split.periods: {name!r} and {after!r} overlap (a row would be in both windows)")


def check_backtest(backtest: DictConfig) -> None:
    """Periods chain: each names the one before it, in order, without gaps."""
    check_zone(backtest.tz, "backtest.tz")
    prev = backtest.initial
    for i, period in enumerate(backtest.periods):
        key = f"backtest.periods[{i}]"
        if period.prev != prev.name:
            raise ConfigError(f"{key}.prev: {period.prev!r}, expected {prev.name!r} (the period before it)")
        if period.start != prev.end:
            raise ConfigError(f"{key}.start: {period.start} must equal the previous period's end {prev.end}")
        prev = period
