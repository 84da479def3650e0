"""One backtest period: the dynamic retrain before it (checked, gated), then the period
scored with the static model and with whichever dynamic model is live. DVC runs one of
these per period (`foreach`); the periods chain through their models, so a change upstream
reaches every later period, and adding a period runs only the new one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.build import EVENT_TIME
from mlsys.durations import parse_duration
from mlsys.dynamic import PROFILE, Trained, check_new_data, data_profile, fit, gate_retrain, score, window
from mlsys.io import read_json, read_parquet, write_json
from mlsys.model import META_FILE, Model, load_model, save_model_dir

SCORES = "scores.json"


def _retrain(
    cfg: DictConfig, parts: Path, seen: list[str], live: Model, live_meta: dict, start: pd.Timestamp
) -> tuple[dict[str, Any], Trained | None]:
    """Check the newest period, retrain, gate -> (record, the retrained model if adopted)."""
    newest = read_parquet(parts / f"{seen[-1]}.parquet", "backtest period data: run partition")
    reference = read_json(live_meta["dir"] / PROFILE, "the live model's data profile")
    check = check_new_data(newest, live.pipeline, reference, cfg.contract.dataset, cfg.training.data_check)
    record: dict[str, Any] = {"adopted": False, "reasons": check["reasons"], "data_check": check}
    if not check["adopted"]:
        return record, None
    warm = cfg.training.warm_start
    names = seen if warm else window(seen, cfg.training)
    older = [read_parquet(parts / f"{n}.parquet", "backtest period data") for n in names[:-1]]
    frame = pd.concat([*older, newest], ignore_index=True)  # names ends with the newest period
    cut = start - parse_duration(cfg.training.holdout)  # the newest rows gate the retrain
    since = pd.Timestamp(live_meta["data_end"]) if warm else frame[EVENT_TIME].min()
    train, holdout = frame[(frame[EVENT_TIME] >= since) & (frame[EVENT_TIME] < cut)], frame[frame[EVENT_TIME] >= cut]
    trained = fit(train, cfg.features, cfg.model, cfg.training, init=live if warm else None)
    gates = gate_retrain(trained, live, holdout, cfg.release)
    record.update(adopted=gates["blessed"], reasons=gates["failed"], gates=gates, data_end=str(cut))
    if not gates["blessed"]:
        return record, None
    record["profile"] = data_profile(trained.pipeline, newest)
    return record, trained


def run(cfg: DictConfig, root: Path, period: str, start: str, end: str, prev: str) -> None:
    """Period -> models/backtest/<period>: the live dynamic model after the retrain + scores.json."""
    bt, models, parts = cfg.backtest, root / cfg.paths.backtest, root / cfg.paths.periods

    static = load_model(models / bt.initial.name)
    live = static if prev == bt.initial.name else load_model(models / prev)
    live_meta = live.meta | {"dir": models / prev}  # a model folder's meta.json, as load_model read it
    seen = [*live_meta["seen"], prev] if prev != bt.initial.name else [bt.initial.name]
    out = models / period
    shutil.rmtree(out, ignore_errors=True)
    trained: Trained | None = None
    if prev == bt.initial.name:  # nothing new since the static model was trained
        retrain: dict[str, Any] = {"adopted": False, "reasons": ["no new data since the static model was trained"]}
    else:
        retrain, trained = _retrain(cfg, parts, seen, live, live_meta, pd.Timestamp(start, tz=bt.tz))
    if trained is not None:
        save_model_dir(out, trained.booster, trained.booster.current_iteration(), trained.pipeline, {})
        write_json(out / PROFILE, retrain.pop("profile"))
        how, seconds, rows, data_end = trained.how, trained.seconds, trained.rows, retrain["data_end"]
    else:  # the previous model stays live, with its data profile
        shutil.copytree(models / prev, out)
        how, seconds, rows, data_end = "kept the previous model", 0.0, 0, live_meta["data_end"]
    write_json(
        out / META_FILE,
        {
            "data_end": data_end,
            "seen": seen,
            "train_seconds": seconds,
            "train_rows": rows,
            **provenance("backtest", cfg),
        },
    )
    dynamic = load_model(out)
    frame = read_parquet(parts / f"{period}.parquet", "backtest period data: run partition")
    result = {
        "period": period,
        "start": start,
        "end": end,
        "dynamic_training": how,
        "retrain": retrain,
        "seen": seen,
        "train_seconds": seconds,
        "train_rows": rows,
        "trees": dynamic.booster.num_trees(),
        "static": score(static.pipeline, static.booster, frame, pd.Timestamp(static.meta["data_end"])),
        "dynamic": score(dynamic.pipeline, dynamic.booster, frame, pd.Timestamp(data_end)),
    }
    write_json(out / SCORES, result)
    verdict = how if retrain["adopted"] else f"KEPT the previous model: {'; '.join(retrain['reasons'])}"
    print(
        f"backtest {period}: AUC static {result['static']['auc']:.4f} vs dynamic {result['dynamic']['auc']:.4f} "
        f"({verdict}; {rows:,} rows, {seconds:.1f}s)"
    )
