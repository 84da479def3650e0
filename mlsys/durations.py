"""Durations written in config ('2h', '30min', '7d', '1w') as pandas Timedeltas; time zones."""

from __future__ import annotations

import re

import pandas as pd

UNITS = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "min": "min", "minute": "min", "minutes": "min",
    "h": "h", "hour": "h", "hours": "h",
    "d": "D", "day": "D", "days": "D",
    "w": "W", "week": "W", "weeks": "W",
}  # fmt: skip
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*")


def parse_duration(text: str) -> pd.Timedelta:
    """A non-negative duration with a unit; ValueError naming the accepted units otherwise."""
    match = _PATTERN.fullmatch(str(text))
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(
            f"{text!r} is not a non-negative duration with a unit (e.g. '2h', '30min', '7d'); "
            f"units: {sorted(set(UNITS))}"
        )
    return pd.Timedelta(float(match.group(1)), unit=UNITS[match.group(2).lower()])


def check_duration(text: str, key: str) -> pd.Timedelta:
    """`parse_duration`, or a ConfigError naming the config key."""
    from mlsys.errors import ConfigError

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def check_zone(name: str, key: str) -> None:
    """`name` is a time zone pandas can place times in (`America/New_York`, `UTC`, `+05:00`)."""
    from mlsys.errors import ConfigError

    try:
        pd.Timestamp(0, tz=name)
    except Exception as exc:  # pandas raises several kinds for an unknown zone
        raise ConfigError(f"{key}: {name!r} is not a time zone (an IANA name: 'Europe/Berlin', 'UTC')") from exc
