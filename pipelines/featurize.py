"""Fit feature state on the training window only; encode the train and valid windows.

Under `training.mode: dynamic` the windows roll with the data (`mlsys.split.resolve`), and
the newest cadence period must first pass the data check against the one before it: new
data that fails it is not adopted (exit 6), so nothing is retrained and the live model stays.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys import drift
from mlsys.cluster import engine_client, partitions
from mlsys.config import provenance
from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.dynamic import PROFILE, check_newest
from mlsys.errors import ConfigError, ContractError
from mlsys.features import FeaturePipeline, fit_pipeline, sliced
from mlsys.io import read_parquet, write_json, write_parquet
from mlsys.model import FEATURES_FILE
from mlsys.split import period_bounds, resolve, select


def _check_newest(cfg: DictConfig, root: Path, dataset: pd.DataFrame, pipeline: FeaturePipeline, end: str) -> None:
    """Dynamic: the newest cadence period vs the one before it; fail -> ContractError."""
    check = check_newest(dataset, end, pipeline, cfg.training, cfg.contract.dataset, cfg.split.tz)
    write_json(root / cfg.paths.data_check, check)
    start, stop = check["period"]["start"][:10], check["period"]["end"][:10]
    if not check["adopted"]:
        raise ContractError(
            f"new data {start}..{stop} not adopted, so nothing is retrained and the live model "
            f"stays: {'; '.join(check['reasons'])} (report: {cfg.paths.data_check})"
        )
    print(f"featurize: new data {start}..{stop} passed the data check ({check['rows']:,} rows)")


def _fit_encode(
    cfg: DictConfig, train: pd.DataFrame, valid: pd.DataFrame
) -> tuple[FeaturePipeline, drift.Profile, dict[str, np.ndarray]]:
    """Feature state fitted on `train`, the profile of its encoded rows, the encoded windows:
    here, or slice by slice on the Dask cluster (exact reductions: `mlsys.features.sliced`)."""
    with engine_client(cfg.engine) as dask:
        if dask is None:
            pipeline = fit_pipeline(cfg.features, train)
            matrices = {"train": pipeline.transform_frame(train), "valid": pipeline.transform_frame(valid)}
        else:
            n = partitions(len(train), cfg.engine.dask, dask)
            pipeline, x = sliced.featurize(dask, cfg.features, train, n)
            matrices = {"train": x, "valid": sliced.encode(dask, pipeline, valid, n)}
    return pipeline, drift.profile(matrices["train"], pipeline.names, pipeline.categorical), matrices


def run(cfg: DictConfig, root: Path) -> None:
    """Built dataset -> feature state (train window only) + encoded train / valid + profile."""
    dataset = read_parquet(root / cfg.paths.labelled, "built dataset: run build")
    split = resolve(cfg.split, cfg.training, dataset[EVENT_TIME])
    periods = {p.name: select(dataset, EVENT_TIME, split, p.name) for p in split.periods}
    train = periods[split.train]
    counts = {name: len(frame) for name, frame in periods.items()}
    for role in ("train", "valid", "test"):
        if not counts[split[role]]:
            raise ConfigError(
                f"split.periods: the {role} window {split[role]!r} holds no rows (rows per period: {counts})"
            )
    pipeline, profile, encoded = _fit_encode(cfg, train, periods[split.valid])
    if cfg.training.mode == "dynamic":
        _check_newest(cfg, root, dataset, pipeline, split.periods[-1].end)
    else:
        write_json(root / cfg.paths.data_check, {"adopted": True, "reasons": [], "mode": "static"})
    out = root / cfg.paths.features
    write_json(out / FEATURES_FILE, pipeline.state())
    write_json(out / PROFILE, profile)  # the reference monitoring compares with
    for role in ("train", "valid"):
        matrix = pd.DataFrame(encoded[role], columns=pipeline.names)
        matrix[LABEL] = periods[split[role]][LABEL].to_numpy("float64")  # every task's label as a number
        write_parquet(root / cfg.paths[f"{role}_matrix"], matrix)
    bounds = period_bounds(split)
    write_json(
        root / cfg.paths.windows,
        {
            "mode": cfg.training.mode,
            "split": OmegaConf.to_container(split, resolve=True),
            "periods": {
                name: {
                    "start": str(bounds[name][0]),
                    "end": str(bounds[name][1]),
                    "rows": len(f),
                }
                for name, f in periods.items()
            },
            "roles": {r: split[r] for r in ("train", "valid", "test")},
            "rows_outside_periods": len(dataset) - sum(len(f) for f in periods.values()),
            "newest_training_event": str(pd.concat([train, periods[split.valid]])[EVENT_TIME].max()),
            **provenance("featurize", cfg),
        },
    )
    # The time goes outside data/features: a timestamp in train's input would rerun training
    # on identical features.
    now = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(root / cfg.paths.featurized, {"featurized_at": now})
    print(
        f"featurize: {len(pipeline.names)} features fitted on {len(train):,} train rows ({cfg.training.mode}); "
        + ", ".join(f"{k}={len(v):,} [{bounds[k][0].date()}..{bounds[k][1].date()})" for k, v in periods.items())
    )
