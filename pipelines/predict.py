"""Static inference: score every scheduled flight in the serving window with the live
model, check the predictions, and only then replace the lookup store's table."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.columns import EVENT_TIME
from mlsys.engine import answers
from mlsys.errors import ConfigError, GateError, MissingInputError
from mlsys.io import read_parquet, write_json
from mlsys.model import load_model
from mlsys.release.registry import Registry, locate
from mlsys.serving.batch import checks, serving_rows
from mlsys.serving.store import entities, write_predictions
from mlsys.split import between


def run(cfg: DictConfig, root: Path) -> None:
    """Live model + serving window -> paths.store (SQLite), replaced only if the checks pass."""
    registry = Registry(locate(root, cfg.paths.registry)[0], cfg.release.model_name)
    live = registry.live()
    if live is None:
        raise MissingInputError("predict: no model is released yet; run `dvc repro` (release stage) first")
    model = load_model(registry.path(live), version=live)  # verified first: a corrupt file is named
    start = time.perf_counter()
    model.use_backend(cfg.inference.backend, root / cfg.paths.compiled, cfg.inference.compile_inline)
    backend = {"name": str(cfg.inference.backend), "ready_seconds": round(time.perf_counter() - start, 3)}
    if model.compiled is not None:
        backend["compiled"] = model.compiled.path.name
    labelled = read_parquet(root / cfg.paths.labelled, "built dataset: run build")
    unlabelled = read_parquet(root / cfg.paths.unlabelled, "built dataset: run build")
    rows = serving_rows(labelled, unlabelled, cfg.inference.window, cfg.split.tz)
    if rows.empty:
        raise ConfigError(f"inference.window: {dict(cfg.inference.window)} holds no scheduled rows of the dataset")
    task = model.task
    scores = answers(model, rows, cfg.engine)  # here, or partition by partition on the Dask cluster
    valid_window = model.meta["windows"][model.meta["roles"]["valid"]]
    valid_rows = between(labelled, EVENT_TIME, pd.Timestamp(valid_window["start"]), pd.Timestamp(valid_window["end"]))
    valid = task.matrix(model.predict_frame(valid_rows))
    results = checks(scores, valid, task, len(rows), cfg.inference.checks)
    created = datetime.now(UTC).isoformat(timespec="microseconds")  # tells two batches of one second apart
    report = {
        "model_version": live,
        "created_at": created,
        "rows": len(rows),
        "window": dict(cfg.inference.window),
        "backend": backend,  # under engine dask, the workers too (lleaves: compiled or loaded there)
        "checks": results,
        "passed": all(r["passed"] for r in results),
        **provenance("predict", cfg),
    }
    write_json(root / cfg.paths.predict_report, report)
    if not report["passed"]:
        failed = "; ".join(f"{r['check']}: {r['value']} vs {r['limit']}" for r in results if not r["passed"])
        raise GateError(f"predict: batch predictions failed their checks ({failed}); the store keeps its table")
    ok = np.isfinite(scores).all(axis=1)
    ids = [e for e, keep in zip(entities(rows, list(cfg.data.key)), ok, strict=True) if keep]
    meta = {k: report[k] for k in ("model_version", "created_at", "rows", "window", "checks")}
    write_predictions(root / cfg.paths.store, ids, scores[ok], task.columns, live, meta, keep=registry.versions())
    print(f"predict: {len(ids):,} predictions by {live} -> {cfg.paths.store} table of {live} (checks passed)")
