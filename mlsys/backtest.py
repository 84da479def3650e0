"""Static vs dynamic training, replayed over time (pure core; the stages do the I/O).

The model scoring period k was trained on data before k starts: the static model on the
initial window only; the dynamic one on an expanding or sliding window of the periods
before k (from scratch), or by warm-starting the previous dynamic model on the newest period.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.data.build import EVENT_TIME, LABEL
from mlsys.features import FeaturePipeline, fit_pipeline
from mlsys.model import Model, train_rounds
from mlsys.model.evaluate import scores


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
