"""Fit feature state on the training window only; encode the train and valid windows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.data.build import EVENT_TIME, LABEL
from mlsys.errors import ConfigError
from mlsys.features import fit_pipeline
from mlsys.io import read_parquet, write_json, write_parquet
from mlsys.model import FEATURES_FILE
from mlsys.split import period_bounds, select
from mlsys.stages import provenance


def run(cfg: DictConfig, root: Path) -> None:
    """Built dataset -> feature state (train window only) + encoded train / valid."""
    dataset = read_parquet(root / cfg.paths.dataset / "labelled.parquet", "built dataset: run build")
    periods = {p.name: select(dataset, EVENT_TIME, cfg.split, p.name) for p in cfg.split.periods}
    train = periods[cfg.split.train]
    counts = {name: len(frame) for name, frame in periods.items()}
    for role in ("train", "valid", "test"):
        if not counts[cfg.split[role]]:
            raise ConfigError(
                f"split.periods: the {role} window {cfg.split[role]!r} holds no rows (rows per period: {counts})"
            )
    pipeline = fit_pipeline(cfg.features, train)
    out = root / cfg.paths.features
    write_json(out / FEATURES_FILE, pipeline.state())
    for role in ("train", "valid"):
        frame = periods[cfg.split[role]]
        matrix = pd.DataFrame(pipeline.transform_frame(frame), columns=pipeline.names)
        matrix[LABEL] = frame[LABEL].to_numpy("int8")
        write_parquet(out / f"{role}.parquet", matrix)
    bounds = period_bounds(cfg.split)
    write_json(
        out / "windows.json",
        {
            "periods": {
                name: {
                    "start": str(bounds[name][0]),
                    "end": str(bounds[name][1]),
                    "rows": len(f),
                    "positive_rate": float(f[LABEL].mean()) if len(f) else None,
                }
                for name, f in periods.items()
            },
            "roles": {r: cfg.split[r] for r in ("train", "valid", "test")},
            "rows_outside_periods": len(dataset) - sum(len(f) for f in periods.values()),
            **provenance("featurize", cfg),
        },
    )
    print(
        f"featurize: {len(pipeline.names)} features fitted on {len(train):,} train rows; "
        + ", ".join(f"{k}={len(v):,}" for k, v in periods.items())
    )
