"""Dynamic training (pure core; the stages do the I/O): retrain windows, the check new
data must pass before a retrain reads it, the retrain, and the gates it must pass.

In the backtest the model scoring period k was trained on data before k starts: the static
model on the initial window only; the dynamic one on an expanding or sliding window of the
periods before k (from scratch), or by warm-starting the previous dynamic model on the newest
data. A retrain that fails the data check or its gates leaves the previous model live.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys import drift
from mlsys.contracts import validate_table
from mlsys.data.build import EVENT_TIME, LABEL
from mlsys.features import FeaturePipeline, fit_pipeline
from mlsys.model import Model, train_rounds
from mlsys.model.evaluate import scores
from mlsys.release import gates as g

PROFILE = "profile.json"  # a model's newest adopted data, profiled: the next data check's reference


@dataclass
class Trained:
    pipeline: FeaturePipeline
    booster: Any
    seconds: float
    rows: int
    how: str


def window(seen: list[str], training: DictConfig) -> list[str]:
    """Of the periods seen so far (oldest first), those a from-scratch retrain reads."""
    return list(seen) if training.window == "expanding" else list(seen)[-training.sliding_periods :]


def fit(
    frame: pd.DataFrame, features: DictConfig, model: DictConfig, training: DictConfig, init: Model | None = None
) -> Trained:
    """From scratch (fits the feature state on `frame`) or warm from `init` (keeps its state)."""
    start = time.perf_counter()
    pipeline = fit_pipeline(features, frame) if init is None else init.pipeline
    x, y = pipeline.transform_frame(frame), frame[LABEL].to_numpy("int8")
    rounds = training.retrain_rounds if init is None else training.warm_rounds
    booster = train_rounds(x, y, pipeline, model, training, rounds, init_model=None if init is None else init.booster)
    how = "from scratch" if init is None else f"warm start (+{rounds} rounds)"
    return Trained(pipeline, booster, time.perf_counter() - start, len(frame), how)


def score(pipeline: FeaturePipeline, booster: Any, frame: pd.DataFrame, data_end: pd.Timestamp) -> dict[str, Any]:
    """Quality on a period, and how old the model's data is when it predicts there."""
    p = booster.predict(pipeline.transform_frame(frame))
    age = (frame[EVENT_TIME] - data_end).dt.total_seconds() / 86400
    return {
        **scores(frame[LABEL].to_numpy("int8"), p),
        "rows": len(frame),
        "model_age_days_mean": float(np.mean(age)),
        "model_age_days_max": float(np.max(age)),
    }


def data_profile(pipeline: FeaturePipeline, frame: pd.DataFrame) -> drift.Profile:
    """The distribution of `frame`'s features, as the next data check's reference."""
    return drift.profile(pipeline.transform_frame(frame), pipeline.names, pipeline.categorical)


def check_new_data(
    frame: pd.DataFrame,
    pipeline: FeaturePipeline,
    reference: drift.Profile,
    contract: DictConfig | None,
    check: DictConfig,
) -> dict[str, Any]:
    """May a retrain adopt `frame`? Its contract, its row count, and its features'
    distribution against the previous period's profile. Returns the record, with `reasons`."""
    reasons = []
    if contract is not None:
        report = validate_table("new data", contract, frame).report
        if report["status"] != "passed":
            failures = [f"{f['column']}: {f['check']}" for f in report["frame_failures"] + report["row_failures"]]
            reasons.append(f"contract.dataset: {report['rows_quarantined']} rows fail ({'; '.join(failures)})")
    if len(frame) < check.min_rows:
        reasons.append(f"rows: {len(frame)} < training.data_check.min_rows={check.min_rows}")
    x = pipeline.transform_frame(frame)
    psi = drift.psi(reference, x, pipeline.names)
    missing = drift.missing_change(reference, x, pipeline.names)
    expected = [n for n in pipeline.names if any(fnmatch.fnmatch(n, pat) for pat in check.expected_drift)]
    for name in pipeline.names:
        if name not in expected and psi[name] > check.max_psi:
            reasons.append(f"{name}: PSI {psi[name]:.3f} > training.data_check.max_psi={check.max_psi}")
        if abs(missing[name]) > check.max_missing_change:
            reasons.append(
                f"{name}: missing share changed by {missing[name]:+.3f} "
                f"(> training.data_check.max_missing_change={check.max_missing_change})"
            )
    return {
        "adopted": not reasons,
        "reasons": reasons,
        "rows": len(frame),
        "psi": psi,
        "missing_change": missing,
        "expected_drift": expected,
    }


def gate_retrain(candidate: Trained, live: Model, holdout: pd.DataFrame, release: DictConfig) -> dict[str, Any]:
    """The release gates a retrain can be held to: absolute bounds (unless the live model
    misses them too on these rows), no sudden worsening vs the live model (both scored on the
    same held-out rows), numerical stability."""
    y = holdout[LABEL].to_numpy("int8")
    p = candidate.booster.predict(candidate.pipeline.transform_frame(holdout))
    metrics, live_metrics = scores(y, p), scores(y, live.predict_frame(holdout))
    gates = [
        *g.rolling_absolute_gates(metrics, live_metrics, release),
        *g.change_gates(metrics, live_metrics, live.version, release),
        *g.stability_gates(p, release),
    ]
    return {**g.blessing(gates, "retrain", live.version), "holdout_rows": len(holdout), "live_metrics": live_metrics}
