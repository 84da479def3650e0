"""One backtest period: the dynamic retrain before it (`mlsys.dynamic.retrain`: the main
pipeline's rules), then the period scored with the static model and with whichever dynamic
model is live. DVC runs one of these per period (`foreach`); the periods chain through their
models, so a change upstream reaches every later period, and adding a period runs only it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.columns import EVENT_TIME
from mlsys.dynamic import PROFILE, data_profile
from mlsys.io import read_parquet, write_json
from mlsys.model import load_model, save_model_dir
from mlsys.reports import SCORES
from mlsys.retrain import Retrain, retrain, score
from mlsys.tasks import SLICE_METRICS


def run(cfg: DictConfig, root: Path, period: str, start: str, end: str, prev: str) -> None:
    """Period -> models/backtest/<period>: the live dynamic model after the retrain + scores.json."""
    bt, models, parts = cfg.backtest, root / cfg.paths.backtest, root / cfg.paths.periods
    static = load_model(models / bt.initial.name)
    live = static if prev == bt.initial.name else load_model(models / prev)
    seen = [*live.meta["seen"], prev] if prev != bt.initial.name else [bt.initial.name]
    out = models / period
    shutil.rmtree(out, ignore_errors=True)
    if prev == bt.initial.name:  # nothing new since the static model was trained
        outcome: Retrain | None = None
        record: dict[str, Any] = {"adopted": False, "reasons": ["no new data since the static model was trained"]}
    else:
        history = pd.concat([read_parquet(parts / f"{n}.parquet", "backtest period data") for n in seen])
        outcome = retrain(history, start, bt.initial.start, cfg, live, int(live.meta.get("waivers_in_a_row", 0)))
        record = {
            "adopted": outcome.adopted,
            "reasons": outcome.reasons,
            "data_check": outcome.data_check,
            "gates": outcome.gates,
            "windows": outcome.windows,
            "skipped_gates": outcome.skipped,
        }
    trained = outcome.trained if outcome else None
    if trained is not None:
        test_start = pd.Timestamp(outcome.windows["test"]["start"])
        how, seconds, rows, data_end = trained.how, trained.seconds, trained.rows, str(test_start)
        waivers = outcome.waivers_in_a_row
    else:  # the previous model stays live, with its data profile
        how, seconds, rows, data_end = "kept the previous model", 0.0, 0, live.meta["data_end"]
        waivers = int(live.meta.get("waivers_in_a_row", 0))
    meta = {
        "data_end": data_end,
        "seen": seen,
        "train_seconds": seconds,
        "train_rows": rows,
        "waivers_in_a_row": waivers,
        "task": live.task.spec(),
        **provenance("backtest", cfg),
    }
    if trained is not None:
        save_model_dir(out, trained.booster, trained.best_iteration, trained.pipeline, meta, trained.calibration)
        write_json(out / PROFILE, data_profile(trained.pipeline, history[history[EVENT_TIME] < test_start]))
    else:
        save_model_dir(out, live.booster, live.booster.current_iteration(), live.pipeline, meta, live.calibration)
        shutil.copyfile(models / prev / PROFILE, out / PROFILE)
    dynamic = load_model(out)
    frame = read_parquet(parts / f"{period}.parquet", "backtest period data: run partition")
    first = SLICE_METRICS[live.task.kind][0]
    result = {
        "period": period,
        "task": live.task.kind,
        "start": start,
        "end": end,
        "dynamic_training": how,
        "retrain": record,
        "seen": seen,
        "train_seconds": seconds,
        "train_rows": rows,
        "trees": dynamic.booster.num_trees(),
        "static": score(static, frame, pd.Timestamp(static.meta["data_end"])),
        "dynamic": score(dynamic, frame, pd.Timestamp(data_end)),
    }
    write_json(out / SCORES, result)
    verdict = how if record["adopted"] else f"KEPT the previous model: {'; '.join(record['reasons'])}"
    print(
        f"backtest {period}: {first} static {result['static'][first]:.4f} vs dynamic {result['dynamic'][first]:.4f} "
        f"({verdict}; {rows:,} rows, {seconds:.1f}s)"
    )
