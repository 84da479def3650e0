"""Train LightGBM on the encoded train window with early stopping on valid."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlsys.config import provenance
from mlsys.data.columns import LABEL
from mlsys.features import FeaturePipeline
from mlsys.io import read_json, read_parquet, write_csv
from mlsys.model import FEATURES_FILE, Model, TrainResult, leakage, save_model_dir, train
from mlsys.model import calibration as calib
from mlsys.tasks import Task


class _ProgressCallback:
    """A progress bar over boosting rounds, with the latest validation loss."""

    def __init__(self, progress: Progress, task: int) -> None:
        self.progress, self.task = progress, task

    def __call__(self, env: object) -> None:
        results = env.evaluation_result_list  # type: ignore[attr-defined]
        valid = next((r for r in results if r[0] == "valid"), None)
        label = f"{valid[1]}={valid[2]:.4f}" if valid else ""
        self.progress.update(self.task, advance=1, metric=label)


def _on_dask(
    cfg: DictConfig, data: tuple[np.ndarray, ...], pipeline: FeaturePipeline, task: Task
) -> tuple[TrainResult, str]:
    """lightgbm.dask on the engine's cluster (mlsys.engine), the valid curve logged after."""
    from mlsys import engine

    with Progress(SpinnerColumn(), TextColumn("train on dask"), TimeElapsedColumn(), transient=True) as progress:
        progress.add_task("train")
        with engine.client(cfg.engine.dask) as dask:
            workers = len(dask.scheduler_info()["workers"])
            result = engine.train_dask(dask, *data, pipeline, cfg.model, cfg.training, task, cfg.engine.dask)
    return result, f"the best of {cfg.model.num_boost_round} on valid, lightgbm.dask on {workers} workers"


def _log_curves(live: Any, history: dict[str, list[float]]) -> None:
    """Every metric by round into dvclive, once training is over: a callback's `next_step`
    rewrote dvclive's summary each round (1 s of a 10 s training)."""
    for step in range(max(map(len, history.values()), default=0)):
        live.step = step
        for key, values in history.items():
            if step < len(values):
                live.log_metric(key, values[step])


def run(cfg: DictConfig, root: Path) -> None:
    """Encoded train / valid -> models/model (model.txt, feature state, meta) + dvclive curves."""
    from dvclive import Live

    feats = root / cfg.paths.features
    pipeline = FeaturePipeline.from_state(read_json(feats / FEATURES_FILE, "feature state: run featurize"))
    tr = read_parquet(root / cfg.paths.train_matrix, "encoded train window: run featurize")
    va = read_parquet(root / cfg.paths.valid_matrix, "encoded valid window: run featurize")
    x, y = tr[pipeline.names].to_numpy("float64"), tr[LABEL].to_numpy()
    xv, yv = va[pipeline.names].to_numpy("float64"), va[LABEL].to_numpy()
    task = Task.from_config(cfg.data.label, cfg.model.params)

    live = Live(str(root / cfg.paths.train_log), dvcyaml=False, save_dvc_exp=False, report=None)
    start = time.perf_counter()
    if cfg.engine.kind == "dask":
        result, how = _on_dask(cfg, (x, y, xv, yv), pipeline, task)
    else:
        with Progress(
            TextColumn("train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[metric]}"),
            TimeElapsedColumn(),
            transient=True,
        ) as progress:
            bar = progress.add_task("train", total=cfg.model.num_boost_round, metric="")
            result = train(
                x,
                y,
                xv,
                yv,
                pipeline,
                cfg.model,
                cfg.training,
                task,
                callbacks=[_ProgressCallback(progress, bar)],
            )
        how = "early stopping"
    seconds = time.perf_counter() - start
    _log_curves(live, result.history)
    live.end()
    first = next(k.split("/", 1)[1] for k in result.history if k.startswith("valid/"))
    valid = result.history[f"valid/{first}"]
    train_line = result.history.get(f"train/{first}", [float("nan")] * len(valid))  # training.curve_rows: 0
    curve = pd.DataFrame({"round": range(1, len(valid) + 1), "train": train_line, "valid": valid})
    write_csv(curve, root / cfg.paths.training_curve)
    calibration = calib.fit_booster(cfg.model.calibration, task, result.booster, xv, yv, result.best_iteration)
    suspects = leakage.figures(Model(result.booster, pipeline, "candidate", {}, task, calibration), x, y, xv, yv)
    save_model_dir(
        root / cfg.paths.model,
        result.booster,
        result.best_iteration,
        pipeline,
        {
            "best_iteration": result.best_iteration,
            "train_seconds": round(seconds, 2),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "train_rows": len(tr),
            "valid_rows": len(va),
            "best_valid": {
                k.split("/", 1)[1]: v[result.best_iteration - 1]
                for k, v in result.history.items()
                if k.startswith("valid/")
            },
            "task": task.spec(),
            "early_stopping_metric": first,
            "leakage": suspects,  # judged at release (release.leakage)
            **provenance("train", cfg),
        },
        calibration,
    )
    print(
        f"train: {result.best_iteration} rounds ({how}) on {len(tr):,} rows x {x.shape[1]} features in {seconds:.1f}s"
    )
