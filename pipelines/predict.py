"""Static inference: score every scheduled flight in the serving window with the live
model, check the predictions, and only then replace the lookup store's table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.build import EVENT_TIME
from mlsys.errors import ConfigError, GateError, MissingInputError
from mlsys.io import write_json
from mlsys.model import load_model
from mlsys.release.registry import Registry
from mlsys.serving.store import entities, write_predictions
from mlsys.split import between
from pipelines.online import built_rows, serving_rows


def checks(scores: np.ndarray, valid: np.ndarray, requested: int, cfg: DictConfig) -> list[dict]:
    """No NaN; (almost) all within the validation range widened by the margin; coverage."""
    c = cfg.inference.checks
    finite = np.isfinite(scores)
    lo, hi = float(valid.min()) - c.range_margin, float(valid.max()) + c.range_margin
    outside = float(((scores[finite] < lo) | (scores[finite] > hi)).mean()) if finite.any() else 1.0
    coverage = float(finite.sum() / requested) if requested else 0.0
    nan = int((~finite).sum())
    return [
        {"check": "nan", "value": nan, "limit": c.max_nan, "passed": nan <= c.max_nan},
        {
            "check": f"share outside the validation range [{lo:.4f}, {hi:.4f}]",
            "value": outside,
            "limit": c.max_outside_range,
            "passed": outside <= c.max_outside_range,
        },
        {"check": "coverage", "value": coverage, "limit": c.min_coverage, "passed": coverage >= c.min_coverage},
    ]


def run(cfg: DictConfig, root: Path) -> None:
    """Live model + serving window -> paths.store (SQLite), replaced only if the checks pass."""
    registry = Registry(root / cfg.paths.registry, cfg.release.model_name)
    live = registry.live()
    if live is None:
        raise MissingInputError("predict: no model is released yet; run `dvc repro` (release stage) first")
    model = load_model(registry.path(live), version=live)  # verified first: a corrupt file is named
    labelled, unlabelled = built_rows(cfg, root)
    rows = serving_rows(cfg, labelled, unlabelled)
    if rows.empty:
        raise ConfigError(f"inference.window: {dict(cfg.inference.window)} holds no scheduled rows of the dataset")
    scores = model.predict_frame(rows)
    valid_window = model.meta["windows"][model.meta["roles"]["valid"]]
    valid_rows = between(labelled, EVENT_TIME, pd.Timestamp(valid_window["start"]), pd.Timestamp(valid_window["end"]))
    results = checks(scores, model.predict_frame(valid_rows), len(rows), cfg)
    created = datetime.now(UTC).isoformat(timespec="microseconds")  # tells two batches of one second apart
    report = {
        "model_version": live,
        "created_at": created,
        "rows": len(rows),
        "window": dict(cfg.inference.window),
        "checks": results,
        "passed": all(r["passed"] for r in results),
        **provenance("predict", cfg),
    }
    write_json(root / cfg.paths.reports / "predict.json", report)
    if not report["passed"]:
        failed = "; ".join(f"{r['check']}: {r['value']} vs {r['limit']}" for r in results if not r["passed"])
        raise GateError(f"predict: batch predictions failed their checks ({failed}); the store keeps its table")
    ok = np.isfinite(scores)
    ids = [e for e, keep in zip(entities(rows, list(cfg.data.key)), ok, strict=True) if keep]
    meta = {k: report[k] for k in ("model_version", "created_at", "rows", "window", "checks")}
    write_predictions(root / cfg.paths.store, ids, scores[ok], live, meta, keep=registry.versions())
    print(f"predict: {len(ids):,} predictions by {live} -> {cfg.paths.store} table of {live} (checks passed)")
