"""Static inference's core: which rows the serving window holds, and the checks batch
predictions pass before they may replace the lookup store's table (pure: the predict and
online stages do the reading and writing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.data.columns import EVENT_TIME
from mlsys.split import window_rows
from mlsys.tasks import Task


def serving_rows(labelled: pd.DataFrame, unlabelled: pd.DataFrame, window: DictConfig, tz: str) -> pd.DataFrame:
    """Every built row (labelled or not: cancelled flights were scheduled too) in the window."""
    frame = pd.concat([labelled, unlabelled], ignore_index=True).sort_values(EVENT_TIME, kind="stable")
    return window_rows(frame, EVENT_TIME, window.start, window.end, tz)


def widened_range(lo: Any, hi: Any, task: Task, margin: float) -> tuple[Any, Any]:
    """The validation answers' [min, max] widened by `margin`: a probability's by that much,
    a regression's by that share of the range (its scale is the label's). One rule for the
    batch checks and monitoring's stability check."""
    pad = margin * (hi - lo) if task.kind == "regression" else margin
    return lo - pad, hi + pad


def checks(scores: np.ndarray, valid: np.ndarray, task: Task, requested: int, spec: DictConfig) -> list[dict]:
    """No NaN; (almost) all within the validation range widened by the margin (for a
    regression, a share of that range: its scale is the label's), each of the task's numbers
    (a score, a prediction, or a class's probability) on its own; coverage. `scores` and
    `valid` have a column per number (`task.columns`)."""
    finite = np.isfinite(scores).all(axis=1)
    columns = task.columns
    lo, hi = widened_range(valid.min(axis=0), valid.max(axis=0), task, spec.range_margin)
    if finite.any():
        outside = float(((scores[finite] < lo) | (scores[finite] > hi)).any(axis=1).mean())
    else:
        outside = 1.0
    coverage = float(finite.sum() / requested) if requested else 0.0
    nan = int((~finite).sum())
    ranges = ", ".join(f"{c} [{a:.4f}, {b:.4f}]" for c, a, b in zip(columns, lo, hi, strict=True))
    return [
        {"check": "nan", "value": nan, "limit": spec.max_nan, "passed": nan <= spec.max_nan},
        {
            "check": f"share outside the validation range: {ranges}",
            "value": outside,
            "limit": spec.max_outside_range,
            "passed": outside <= spec.max_outside_range,
        },
        {"check": "coverage", "value": coverage, "limit": spec.min_coverage, "passed": coverage >= spec.min_coverage},
    ]
