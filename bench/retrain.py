"""Cost of one dynamic retrain: full (expanding window) vs warm start, each against plain
LightGBM doing the same work on the same data, same run.   python bench/retrain.py
"""

from __future__ import annotations

import time
from pathlib import Path

import lightgbm as lgb
import pandas as pd
from rich.console import Console
from rich.table import Table

from mlsys.config import load_sections, read_params
from mlsys.data.build import LABEL
from mlsys.dynamic import fit
from mlsys.model import Model, lgb_params

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    cfg = load_sections(read_params(ROOT), ("features", "model", "training", "backtest", "paths"), "params.yaml")
    names = [cfg.backtest.initial.name, *(p.name for p in cfg.backtest.periods)][:7]  # initial .. 2013-08
    parts = {n: pd.read_parquet(ROOT / cfg.paths.periods / f"{n}.parquet") for n in names}
    window, newest = pd.concat(parts.values(), ignore_index=True), parts[names[-1]]
    params = lgb_params(cfg.model, cfg.training)
    rows = []

    start = time.perf_counter()
    full = fit(window, cfg.features, cfg.model, cfg.training)
    t_ml = time.perf_counter() - start
    x = full.pipeline.transform_frame(window)  # the same matrix for the raw run (encoding excluded there)
    start = time.perf_counter()
    raw = lgb.train(
        params,
        lgb.Dataset(
            x, window[LABEL].to_numpy(), feature_name=full.pipeline.names, categorical_feature=full.pipeline.categorical
        ),
        cfg.training.retrain_rounds,
    )
    rows.append(
        (
            f"full retrain, {len(window):,} rows, {cfg.training.retrain_rounds} rounds (mlsys incl. refit "
            "of feature state + encoding)",
            t_ml,
            time.perf_counter() - start,
        )
    )
    assert raw.model_to_string() == full.booster.model_to_string()

    init = Model(booster=full.booster, pipeline=full.pipeline, version="bench", meta={})
    start = time.perf_counter()
    warm = fit(newest, cfg.features, cfg.model, cfg.training, init=init)
    t_ml = time.perf_counter() - start
    xn = full.pipeline.transform_frame(newest)
    start = time.perf_counter()
    lgb.train(
        params,
        lgb.Dataset(
            xn,
            newest[LABEL].to_numpy(),
            feature_name=full.pipeline.names,
            categorical_feature=full.pipeline.categorical,
        ),
        cfg.training.warm_rounds,
        init_model=full.booster,
    )
    rows.append(
        (
            f"warm start, newest month {len(newest):,} rows, +{cfg.training.warm_rounds} rounds",
            t_ml,
            time.perf_counter() - start,
        )
    )
    assert warm.booster.num_trees() == full.booster.num_trees() + cfg.training.warm_rounds

    table = Table(title="one retrain: mlsys vs plain LightGBM (seconds)")
    for col in ("work", "mlsys", "raw", "ratio"):
        table.add_column(col)
    for name, ml, rw in rows:
        table.add_row(name, f"{ml:.2f}", f"{rw:.2f}", f"{ml / rw:.2f}x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
