"""Time-based split: the declared periods (`split.periods`) as half-open local-date windows."""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

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


def select(frame: pd.DataFrame, time_column: str, split: DictConfig, name: str) -> pd.DataFrame:
    """Rows of `frame` whose time falls in period `name`."""
    start, end = period_bounds(split)[name]
    return _between(frame, time_column, start, end)


def window_rows(frame: pd.DataFrame, time_column: str, start: str, end: str, tz: str) -> pd.DataFrame:
    """Rows in [start, end), local dates in `tz`."""
    return _between(frame, time_column, pd.Timestamp(start, tz=tz), pd.Timestamp(end, tz=tz))


def _between(frame: pd.DataFrame, time_column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    t = frame[time_column]
    return frame[(t >= start) & (t < end)].reset_index(drop=True)
