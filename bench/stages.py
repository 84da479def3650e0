"""Per-stage overhead of mlsys against the raw libraries doing the same work, same run.

    python bench/stages.py [--repeat 3]

Each row times the mlsys code path and a hand-written pandas / LightGBM equivalent on the
full default data (best of --repeat, the two run alternately) and prints the ratio (mlsys / raw; 1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from mlsys.config import load_sections, read_params
from mlsys.contracts import validate_table
from mlsys.data.build import build
from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.data.snapshot import source_path
from mlsys.data.sources import parse_times, read_source
from mlsys.features import fit_pipeline
from mlsys.model import lgb_params, train
from mlsys.model.compiled import compile_model
from mlsys.split import select
from mlsys.tasks import Task

ROOT = Path(__file__).resolve().parents[1]


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def pair(ml: Callable[[], object], raw: Callable[[], object], repeat: int) -> tuple[float, float, object, object]:
    """Best-of times of the two, run alternately so background load hits both alike."""
    t_ml, t_raw, out_ml, out_raw = [], [], None, None
    for _ in range(repeat):
        t, out_ml = best(ml, 1)
        t_ml.append(t)
        t, out_raw = best(raw, 1)
        t_raw.append(t)
    return min(t_ml), min(t_raw), out_ml, out_raw


def raw_ingest_join(cfg, root: Path = ROOT) -> pd.DataFrame:
    """Plain pandas: read the three tables (CSV or Parquet), parse times, weather as of 2 h
    before, planes."""
    paths = {n: source_path(n, s, root) for n, s in cfg.data.sources.items()}
    read = {n: pd.read_parquet if paths[n].suffix == ".parquet" else pd.read_csv for n in paths}
    flights, weather, planes = (read[n](paths[n]) for n in ("flights", "weather", "planes"))
    flights["time_hour"] = pd.to_datetime(flights["time_hour"], utc=True)
    weather["time_hour"] = pd.to_datetime(weather["time_hour"], utc=True)
    local = pd.to_datetime(flights[["year", "month", "day", "hour", "minute"]])
    event = local.dt.tz_localize("America/New_York", ambiguous=np.ones(len(local), bool), nonexistent="shift_forward")
    flights["event_time"] = event.dt.tz_convert("UTC")
    flights["prediction_time"] = flights["event_time"] - pd.Timedelta("2h")
    wx = [c for c in cfg.data.asof_joins[0].columns]
    left = flights.sort_values("prediction_time")
    right = weather[["origin", "time_hour", *wx]].sort_values("time_hour").rename(columns={c: f"wx_{c}" for c in wx})
    joined = pd.merge_asof(
        left, right, left_on="prediction_time", right_on="time_hour", by="origin", tolerance=pd.Timedelta("3h")
    ).sort_index()
    cols = list(cfg.data.lookup_joins[0].columns)
    plane = planes[["tailnum", *cols]].rename(columns={c: f"plane_{c}" for c in cols})
    return joined.merge(plane, on="tailnum", how="left")


def mlsys_ingest_join(cfg, data_no_aggs) -> pd.DataFrame:
    tables = {}
    for name, src in cfg.data.sources.items():
        tables[name] = parse_times(read_source(name, src, ROOT)[0], src)[0]
    return build(tables, data_no_aggs).labelled


def raw_contract(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flights contract as hand-written pandas checks, with the contract's output: the
    rows that pass and the rows that fail."""
    bad = np.zeros(len(frame), dtype=bool)
    ranges = {
        "year": (2000, 2100),
        "month": (1, 12),
        "day": (1, 31),
        "hour": (0, 23),
        "minute": (0, 59),
        "sched_dep_time": (0, 2359),
        "sched_arr_time": (0, 2359),
        "dep_time": (0, 2400),
        "arr_time": (0, 2400),
        "dep_delay": (-120, 2000),
        "arr_delay": (-180, 2000),
        "air_time": (0, 1000),
        "flight": (1, 9999),
        "distance": (1, 6000),
    }
    for col, (lo, hi) in ranges.items():
        s = frame[col]
        bad |= (s.notna() & ~s.between(lo, hi)).to_numpy()
    for col in (
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "sched_dep_time",
        "sched_arr_time",
        "carrier",
        "flight",
        "origin",
        "dest",
        "distance",
        "time_hour",
    ):
        bad |= frame[col].isna().to_numpy()
    bad |= (frame["carrier"].notna() & ~frame["carrier"].str.fullmatch(r"[A-Z0-9]{2}").fillna(False)).to_numpy()
    bad |= (frame["tailnum"].notna() & ~frame["tailnum"].str.fullmatch(r"N[A-Z0-9]+").fillna(False)).to_numpy()
    bad |= (frame["dest"].notna() & ~frame["dest"].str.fullmatch(r"[A-Z]{3}").fillna(False)).to_numpy()
    bad |= ~frame["origin"].isin(["EWR", "JFK", "LGA"]).to_numpy()
    bad |= frame.duplicated(["year", "month", "day", "carrier", "flight", "origin"]).to_numpy()
    assert len(frame) >= 1000 and frame["dep_delay"].isna().mean() <= 0.1 and frame["arr_delay"].isna().mean() <= 0.1
    assert str(frame["time_hour"].dtype) == "datetime64[us, UTC]" and str(frame["carrier"].dtype) == "str"
    return frame[~bad].reset_index(drop=True), frame[bad]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    raw_cfg = read_params(ROOT)
    cfg = load_sections(raw_cfg, ("data", "contract", "features", "split", "model", "training"), "params.yaml")
    data_no_aggs = cfg.data.copy()
    data_no_aggs.aggregates = {}
    rows = []

    t_ml, t_raw, joined_ml, joined_raw = pair(
        lambda: mlsys_ingest_join(cfg, data_no_aggs), lambda: raw_ingest_join(cfg), args.repeat
    )
    assert len(joined_ml) == joined_raw["arr_delay"].notna().sum()
    rows.append(("ingest + as-of join (3 CSVs, no aggregates)", t_ml, t_raw))

    tables = {n: parse_times(read_source(n, s, ROOT)[0], s)[0] for n, s in cfg.data.sources.items()}
    t_full, built = best(lambda: build(tables, cfg.data), args.repeat)
    t_joins, _ = best(lambda: build(tables, data_no_aggs), args.repeat)
    rows.append(
        (
            f"{len(cfg.data.aggregates)} point-in-time aggregates: cost on top of the joins (no raw equivalent)",
            t_full - t_joins,
            None,
        )
    )

    flights = tables["flights"]
    table = cfg.contract.tables.flights
    t_ml, t_raw, res, (passed, failed) = pair(
        lambda: validate_table("flights", table, flights), lambda: raw_contract(flights), args.repeat
    )
    assert len(failed) == res.report["rows_quarantined"]
    pd.testing.assert_frame_equal(res.passed, passed)  # the same rows pass
    rows.append((f"contract: flights ({len(flights):,} rows, {len(table.columns)} columns)", t_ml, t_raw))

    data = built.labelled
    train_df = select(data, EVENT_TIME, cfg.split, "train")
    valid_df = select(data, EVENT_TIME, cfg.split, "valid")
    test_df = select(data, EVENT_TIME, cfg.split, "test")
    pipeline = fit_pipeline(cfg.features, train_df)
    x, y = pipeline.transform_frame(train_df), train_df[LABEL].to_numpy()
    xv, yv = pipeline.transform_frame(valid_df), valid_df[LABEL].to_numpy()
    model_cfg = OmegaConf.merge(cfg.model, {"num_boost_round": 200, "early_stopping_rounds": 10_000})
    task = Task.from_config(cfg.data.label, cfg.model.params)
    params = lgb_params(model_cfg, cfg.training, task)

    def raw_train():
        kw = {"feature_name": pipeline.names, "categorical_feature": pipeline.categorical}
        dtrain = lgb.Dataset(x, y, params=params, **kw)
        dvalid = lgb.Dataset(xv, yv, reference=dtrain, **kw)
        return lgb.train(params, dtrain, 200, valid_sets=[dvalid], valid_names=["valid"])

    t_ml, t_raw, result, booster = pair(
        lambda: train(x, y, xv, yv, pipeline, model_cfg, cfg.training, task), raw_train, args.repeat
    )
    assert result.booster.model_to_string() == booster.model_to_string()  # the same work, the same model
    rows.append((f"train: 200 rounds, {x.shape[0]:,} x {x.shape[1]}", t_ml, t_raw))

    xt = pipeline.transform_frame(test_df)
    t_ml, t_raw, _, _ = pair(
        lambda: booster.predict(pipeline.transform_frame(test_df)), lambda: booster.predict(xt), args.repeat
    )
    rows.append((f"batch score: encode + predict vs Booster.predict ({len(test_df):,} rows)", t_ml, t_raw))
    with tempfile.TemporaryDirectory() as cache:  # inference.backend: lleaves, compiled from scratch
        start = time.perf_counter()
        compiled = compile_model(booster.model_to_string(), "bench", Path(cache))
        rows.append(("lleaves: compile the model (once per version and host)", time.perf_counter() - start, None))
        t_ml, t_raw, fast, slow = pair(lambda: compiled(xt), lambda: booster.predict(xt), args.repeat)
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
        rows.append((f"batch score: lleaves vs Booster.predict, encoded ({len(test_df):,} rows)", t_ml, t_raw))

    records = test_df.head(2000).to_dict("records")
    one_rows = [xt[i : i + 1] for i in range(2000)]
    t_ml, t_raw, _, _ = pair(
        lambda: [booster.predict(pipeline.transform_record(r), num_threads=1) for r in records],
        lambda: [booster.predict(r, num_threads=1) for r in one_rows],
        args.repeat,
    )
    rows.append(("one record: encode + predict vs Booster.predict on 1-row numpy (per row)", t_ml / 2000, t_raw / 2000))

    out = Table(title="mlsys vs raw libraries (best of runs, seconds)")
    for col in ("work", "mlsys", "raw", "ratio"):
        out.add_column(col, justify="left" if col == "work" else "right")
    for name, ml, raw in rows:
        fmt = (lambda t: f"{t * 1e6:.0f} us") if ml < 0.01 else (lambda t: f"{t:.3f}")
        out.add_row(name, fmt(ml), "-" if raw is None else fmt(raw), "-" if raw is None else f"{ml / raw:.2f}x")
    Console().print(out)


if __name__ == "__main__":
    main()
