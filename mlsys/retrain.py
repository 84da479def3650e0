"""A retrain, held to the main pipeline's rules: one rule set for every retrain.

The main pipeline's dynamic mode runs it stage by stage (featurize: `split.windows_ending` +
`dynamic.check_newest` + fit; train: `model.train`, early stopping on valid; evaluate:
`model.evaluate.evaluate`; release: `release.judge.judge`); a backtest period runs the same
functions in one call (`retrain`), skipping only the gates a replay cannot run
(`backtest.skip_gates`). A retrain that fails the data check or its gates leaves the previous
model live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.dynamic import check_newest
from mlsys.features import FeaturePipeline, fit_pipeline
from mlsys.model import Model, leakage, train
from mlsys.model import calibration as calib
from mlsys.model.evaluate import evaluate
from mlsys.release import gates as g
from mlsys.release.judge import judge, live_scores
from mlsys.split import period_bounds, select, windows_ending
from mlsys.tasks import Task


@dataclass
class Trained:
    pipeline: FeaturePipeline
    booster: Any
    best_iteration: int
    seconds: float
    rows: int
    how: str
    calibration: dict[str, Any] | None = None
    leakage: dict[str, Any] | None = None  # mlsys.model.leakage's figures, judged by the release gates

    def model(self, task: Task) -> Model:
        """The retrained model as its saved folder loads (its answers calibrated, if it is)."""
        return Model(self.booster, self.pipeline, "retrain", {}, task, self.calibration)


def fit(
    train_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    features: DictConfig,
    model: DictConfig,
    training: DictConfig,
    task: Task,
    init: Model | None = None,
) -> Trained:
    """Train as the train stage does: early stopping on `valid_rows`. From scratch (fits the
    feature state on `train_rows`) or warm from `init` (keeps its state, adds at most
    `training.warm_rounds` trees)."""
    start = time.perf_counter()
    pipeline = fit_pipeline(features, train_rows) if init is None else init.pipeline
    cap = model if init is None else OmegaConf.merge(model, {"num_boost_round": training.warm_rounds})
    x, y = pipeline.transform_frame(train_rows), train_rows[LABEL].to_numpy("float64")
    xv, yv = pipeline.transform_frame(valid_rows), valid_rows[LABEL].to_numpy("float64")
    result = train(
        x,
        y,
        xv,
        yv,
        pipeline,
        cap,
        training,
        task,
        init_model=None if init is None else init.booster,
    )
    added = result.best_iteration - (init.booster.current_iteration() if init else 0)
    how = "from scratch" if init is None else f"warm start (+{added} rounds)"
    calibration = calib.fit_booster(model.calibration, task, result.booster, xv, yv, result.best_iteration)
    seconds = time.perf_counter() - start
    trained = Trained(pipeline, result.booster, result.best_iteration, seconds, len(train_rows), how, calibration)
    trained.leakage = leakage.figures(trained.model(task), x, y, xv, yv)
    return trained


def score(model: Model, frame: pd.DataFrame, data_end: pd.Timestamp) -> dict[str, Any]:
    """Quality on a period (the model's task's metrics), and how old the model's data is when
    it predicts there."""
    age = (frame[EVENT_TIME] - data_end).dt.total_seconds() / 86400
    return {
        **model.task.scores(model.task.truth(frame[LABEL]), model.predict_frame(frame)),
        "rows": len(frame),
        "model_age_days_mean": float(np.mean(age)),
        "model_age_days_max": float(np.max(age)),
    }


@dataclass
class Retrain:
    adopted: bool
    reasons: list[str]
    windows: dict[str, Any]
    data_check: dict[str, Any]
    gates: dict[str, Any] | None = None
    trained: Trained | None = None
    waivers_in_a_row: int = 0
    skipped: list[str] = field(default_factory=list)


def retrain(frame: pd.DataFrame, end: str, first: str, cfg: DictConfig, live: Model, waivers_before: int) -> Retrain:
    """Retrain on `frame` (every row before local date `end` the window may read, from
    `first`) as the main pipeline would at `end`: rolling windows, the data check, early
    stopping on valid, the release gates against `live` on the newest `holdout` days."""
    split = windows_ending(pd.Timestamp(end), first, cfg.training, cfg.backtest.tz)
    bounds = period_bounds(split)
    windows = {p.name: {"start": str(bounds[p.name][0]), "end": str(bounds[p.name][1])} for p in split.periods}
    parts = {role: select(frame, EVENT_TIME, split, split[role]) for role in ("train", "valid", "test")}
    check = check_newest(frame, end, live.pipeline, cfg.training, cfg.contract.dataset, cfg.backtest.tz)
    if not check["adopted"]:
        return Retrain(False, check["reasons"], windows, check)
    warm, task = cfg.training.warm_start, Task.from_config(cfg.data.label, cfg.model.params)
    trainable = parts["train"]
    if warm:  # only what the live model has not seen
        trainable = trainable[trainable[EVENT_TIME] >= pd.Timestamp(live.meta["data_end"])]
    trained = fit(trainable, parts["valid"], cfg.features, cfg.model, cfg.training, task, init=live if warm else None)
    test, skip = parts["test"], list(cfg.backtest.skip_gates)
    candidate = trained.model(task).predict_frame(test)
    result = evaluate(task, candidate, parts["train"], test, cfg.evaluation, LABEL)
    gates = judge(
        task,
        result,
        trained.pipeline.names,
        trained.pipeline.names,
        live_scores(task, lambda: live, live.version, test, cfg.evaluation.calibration_bins),
        live.version,
        cfg.release,
        rolling=True,
        waivers_before=waivers_before,
        skip=skip,
        leakage=trained.leakage,
    )
    record = {**g.blessing(gates, "retrain", live.version), "test_rows": len(test)}
    blessed = record["blessed"]
    return Retrain(
        adopted=blessed,
        reasons=record["failed"],
        windows=windows,
        data_check=check,
        gates=record,
        trained=trained if blessed else None,
        waivers_in_a_row=g.waivers_in_a_row(gates, waivers_before),
        skipped=skip,
    )
