"""One backtest period: retrain the dynamic model on the data before it, then score the
period with it and with the static model. DVC runs one of these per period (`foreach`);
the periods chain through their models' `seen` lists, so a change upstream reaches every
later period, and adding a period runs only the new one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.backtest import fit, score, window
from mlsys.io import read_json, read_parquet, write_json
from mlsys.model import META_FILE, load_model, save_model_dir
from mlsys.stages import provenance

SCORES = "scores.json"


def run(cfg: DictConfig, root: Path, period: str, start: str, end: str, prev: str) -> None:
    """Period -> models/backtest/<period>: the dynamic model that scored it + scores.json."""
    bt, models, parts = cfg.backtest, root / cfg.paths.backtest, root / cfg.paths.periods

    def part(name: str) -> pd.DataFrame:
        return read_parquet(parts / f"{name}.parquet", "backtest period data: run partition")

    def meta(name: str) -> dict:
        return read_json(models / name / META_FILE, f"backtest model {name}: run its stage")

    static = load_model(models / bt.initial.name)
    seen = [*meta(prev)["seen"], prev] if prev != bt.initial.name else [bt.initial.name]
    out, data_end = models / period, pd.Timestamp(start, tz=bt.tz)
    if prev == bt.initial.name:  # nothing new since the static model was trained
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(models / bt.initial.name, out)
        how, seconds, rows = "the static model (no new data yet)", 0.0, 0
    else:
        if cfg.training.warm_start:
            trained = fit(part(prev), cfg.features, cfg.model, cfg.training, init=load_model(models / prev))
        else:
            frame = pd.concat([part(n) for n in window(seen, cfg.training)], ignore_index=True)
            trained = fit(frame, cfg.features, cfg.model, cfg.training)
        save_model_dir(out, trained.booster, trained.booster.current_iteration(), trained.pipeline, {})
        how, seconds, rows = trained.how, trained.seconds, trained.rows
    dynamic = load_model(out)
    write_json(
        out / META_FILE,
        {
            "data_end": str(data_end),
            "seen": seen,
            "train_seconds": seconds,
            "train_rows": rows,
            **provenance("backtest", cfg),
        },
    )
    frame = part(period)
    result = {
        "period": period,
        "start": start,
        "end": end,
        "dynamic_training": how,
        "seen": seen,
        "train_seconds": seconds,
        "train_rows": rows,
        "trees": dynamic.booster.num_trees(),
        "static": score(static.pipeline, static.booster, frame, pd.Timestamp(meta(bt.initial.name)["data_end"])),
        "dynamic": score(dynamic.pipeline, dynamic.booster, frame, data_end),
    }
    write_json(out / SCORES, result)
    print(
        f"backtest {period}: AUC static {result['static']['auc']:.4f} vs dynamic {result['dynamic']['auc']:.4f} "
        f"({how}, {rows:,} rows, {seconds:.1f}s)"
    )
