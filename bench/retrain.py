"""Cost of one dynamic retrain (the backtest's rules: windows ending at September, early
stopping on valid): full (expanding window) vs warm start, each against plain LightGBM doing
the same work on the same matrices, same run.   python bench/retrain.py
"""

from __future__ import annotations

import time
from pathlib import Path

import lightgbm as lgb
import pandas as pd
from rich.console import Console
from rich.table import Table

from mlsys.config import load_sections, read_params
from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.model import Model, lgb_params
from mlsys.retrain import fit
from mlsys.split import select, windows_ending
from mlsys.tasks import Task

ROOT = Path(__file__).resolve().parents[1]


def _raw(params: dict, x, y, xv, yv, pipeline, rounds: int, stop: int, init=None) -> lgb.Booster:
    """Plain LightGBM: the same matrices, rounds and early stopping as mlsys's retrain."""

    def data(a, b, ref=None):
        return lgb.Dataset(a, b, feature_name=pipeline.names, categorical_feature=pipeline.categorical, reference=ref)

    train = data(x, y)
    return lgb.train(
        params,
        train,
        rounds,
        valid_sets=[train, data(xv, yv, train)],
        init_model=init,
        callbacks=[lgb.early_stopping(stop, first_metric_only=True, verbose=False)],
    )


def main() -> None:
    cfg = load_sections(
        read_params(ROOT), ("data", "features", "model", "training", "backtest", "paths"), "params.yaml"
    )
    names = [cfg.backtest.initial.name, *(p.name for p in cfg.backtest.periods)][:7]  # initial .. 2013-08
    parts = {n: pd.read_parquet(ROOT / cfg.paths.periods / f"{n}.parquet") for n in names}
    window = pd.concat(parts.values(), ignore_index=True)
    split = windows_ending(pd.Timestamp(cfg.backtest.periods[6].start), cfg.backtest.initial.start, cfg.training,
                           cfg.backtest.tz)  # fmt: skip
    train, valid = (select(window, EVENT_TIME, split, split[r]) for r in ("train", "valid"))
    newest = train[train[EVENT_TIME] >= pd.Timestamp(cfg.backtest.periods[5].start, tz=cfg.backtest.tz)]
    task = Task.from_config(cfg.data.label, cfg.model.params)
    params = lgb_params(cfg.model, cfg.training, task)
    stop, rows = cfg.model.early_stopping_rounds, []

    start = time.perf_counter()
    full = fit(train, valid, cfg.features, cfg.model, cfg.training, task)
    t_ml = time.perf_counter() - start
    pipe = full.pipeline
    x, xv = pipe.transform_frame(train), pipe.transform_frame(valid)  # the raw run gets the matrices
    y, yv = train[LABEL].to_numpy(), valid[LABEL].to_numpy()
    start = time.perf_counter()
    raw = _raw(params, x, y, xv, yv, pipe, cfg.model.num_boost_round, stop)
    t_raw = time.perf_counter() - start
    label = f"full retrain, {len(train):,} rows, {full.best_iteration} rounds (early stopping; mlsys incl. refit)"
    rows.append((label, t_ml, t_raw))
    assert raw.model_to_string(num_iteration=raw.best_iteration) == full.booster.model_to_string(
        num_iteration=full.best_iteration
    )

    init = Model(booster=full.booster, pipeline=pipe, version="bench", meta={})
    start = time.perf_counter()
    warm = fit(newest, valid, cfg.features, cfg.model, cfg.training, task, init=init)
    t_ml = time.perf_counter() - start
    start = time.perf_counter()
    _raw(params, pipe.transform_frame(newest), newest[LABEL].to_numpy(), xv, yv, pipe, cfg.training.warm_rounds, stop,
         init=full.booster)  # fmt: skip
    rows.append((f"warm start, newest month {len(newest):,} rows, {warm.how}", t_ml, time.perf_counter() - start))

    table = Table(title="one retrain: mlsys vs plain LightGBM (seconds)")
    for col in ("work", "mlsys", "raw", "ratio"):
        table.add_column(col)
    for name, ml, rw in rows:
        table.add_row(name, f"{ml:.2f}", f"{rw:.2f}", f"{ml / rw:.2f}x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
