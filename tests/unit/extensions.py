"""A user's own transform and check, referenced from YAML by dotted path (not part of mlsys)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def log_miles(values: np.ndarray) -> np.ndarray:
    """A transform: log of a distance (element-wise, NaN stays NaN)."""
    return np.log1p(values)


def not_a_multiple_of(series: pd.Series, step: int) -> pd.Series:
    """A check: True where the value is not a multiple of `step` (round numbers look made up)."""
    return series.isna() | (series % step != 0)


def hours_since(day_of_year: np.ndarray | float, hour: np.ndarray | float) -> np.ndarray | float:
    """A derived column: hours since the year began, from whole columns or one request's values."""
    return (day_of_year - 1) * 24 + hour
