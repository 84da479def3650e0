"""Train the static model once, on the backtest's initial window, as the main pipeline's
static training does: early stopping on the window's validation days (`split.windows_ending`
at its end), the last `training.holdout` days held out; profile the window for monitoring."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.columns import EVENT_TIME
from mlsys.dynamic import PROFILE, data_profile
from mlsys.io import read_parquet, write_json
from mlsys.model import save_model_dir
from mlsys.retrain import fit
from mlsys.split import period_bounds, select, windows_ending
from mlsys.tasks import Task


def run(cfg: DictConfig, root: Path) -> None:
    """data/periods/<initial>.parquet -> models/backtest/<initial> (the static model)."""
    initial = cfg.backtest.initial
    frame = read_parquet(root / cfg.paths.periods / f"{initial.name}.parquet", "initial window: run partition")
    split = windows_ending(pd.Timestamp(initial.end), initial.start, cfg.training, cfg.backtest.tz)
    train, valid = (select(frame, EVENT_TIME, split, split[role]) for role in ("train", "valid"))
    task = Task.from_config(cfg.data.label, cfg.model.params)
    trained = fit(train, valid, cfg.features, cfg.model, cfg.training, task)
    data_end = period_bounds(split)[split.test][0]  # what it has seen the labels of ends there
    out = root / cfg.paths.backtest / initial.name
    save_model_dir(
        out,
        trained.booster,
        trained.best_iteration,
        trained.pipeline,
        {
            "data_end": str(data_end),
            "seen": [initial.name],
            "train_seconds": trained.seconds,
            "train_rows": trained.rows,
            "best_iteration": trained.best_iteration,
            "waivers_in_a_row": 0,
            "task": task.spec(),
            **provenance("backtest_static", cfg),
        },
        trained.calibration,
    )
    write_json(out / PROFILE, data_profile(trained.pipeline, train))
    print(
        f"backtest_static: {trained.best_iteration} rounds (early stopping) on {trained.rows:,} rows "
        f"up to {data_end.date()} in {trained.seconds:.1f}s"
    )
