"""Train the static model once, on the backtest's initial window; profile that window
(the first retrain's data check compares the new period with it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.dynamic import PROFILE, data_profile, fit
from mlsys.io import read_parquet, write_json
from mlsys.model import save_model_dir


def run(cfg: DictConfig, root: Path) -> None:
    """data/periods/<initial>.parquet -> models/backtest/<initial> (the static model)."""
    initial = cfg.backtest.initial
    frame = read_parquet(root / cfg.paths.periods / f"{initial.name}.parquet", "initial window: run partition")
    trained = fit(frame, cfg.features, cfg.model, cfg.training)
    data_end = pd.Timestamp(initial.end, tz=cfg.backtest.tz)
    out = root / cfg.paths.backtest / initial.name
    save_model_dir(
        out,
        trained.booster,
        trained.booster.current_iteration(),
        trained.pipeline,
        {
            "data_end": str(data_end),
            "seen": [initial.name],
            "train_seconds": trained.seconds,
            "train_rows": trained.rows,
            **provenance("backtest_static", cfg),
        },
    )
    write_json(out / PROFILE, data_profile(trained.pipeline, frame))
    print(f"backtest_static: trained on {trained.rows:,} rows up to {initial.end} in {trained.seconds:.1f}s")
