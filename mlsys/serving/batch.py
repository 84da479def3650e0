"""Static inference's core: which rows the serving window holds, and the checks batch
predictions pass before they may replace the lookup store's table (pure: the predict and
online stages do the reading and writing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.data.columns import EVENT_TIME
from mlsys.split import window_rows


def serving_rows(labelled: pd.DataFrame, unlabelled: pd.DataFrame, window: DictConfig, tz: str) -> pd.DataFrame:
    """Every built row (labelled or not: cancelled flights were scheduled too) in the window."""
    frame = pd.concat([labelled, unlabelled], ignore_index=True).sort_values(EVENT_TIME, kind="stable")
    return window_rows(frame, EVENT_TIME, window.start, window.end, tz)


def checks(scores: np.ndarray, valid: np.ndarray, requested: int, spec: DictConfig) -> list[dict]:
    """No NaN; (almost) all within the validation range widened by the margin; coverage."""
    finite = np.isfinite(scores)
    lo, hi = float(valid.min()) - spec.range_margin, float(valid.max()) + spec.range_margin
    outside = float(((scores[finite] < lo) | (scores[finite] > hi)).mean()) if finite.any() else 1.0
    coverage = float(finite.sum() / requested) if requested else 0.0
    nan = int((~finite).sum())
    return [
        {"check": "nan", "value": nan, "limit": spec.max_nan, "passed": nan <= spec.max_nan},
        {
            "check": f"share outside the validation range [{lo:.4f}, {hi:.4f}]",
            "value": outside,
            "limit": spec.max_outside_range,
            "passed": outside <= spec.max_outside_range,
        },
        {"check": "coverage", "value": coverage, "limit": spec.min_coverage, "passed": coverage >= spec.min_coverage},
    ]
