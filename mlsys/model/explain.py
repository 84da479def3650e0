"""One answer taken apart: the model's inputs, encoded by the fitted feature state, and each
feature's contribution to the raw score (LightGBM's `pred_contrib`, TreeSHAP), which with the
bias sums to the raw score; then the link (sigmoid, softmax, a label transform's inverse) and
the calibration that make the answer the server gives."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsys.errors import ConfigError
from mlsys.model import Model


def check_explainable(model: Model) -> None:
    """LightGBM computes no contributions for linear trees: a config error, named."""
    if str(model.booster.params.get("linear_tree", "")).lower() in ("true", "1"):
        raise ConfigError(
            f"model.params.linear_tree: true (model {model.version}): LightGBM computes no feature "
            "contributions for linear trees, so this model cannot be explained; retrain without it to explain"
        )


def plain(v: Any) -> Any:
    """JSON-ready, all the way down: NaN -> None, numpy scalars -> Python, times -> ISO text."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def breakdown(model: Model, merged: dict[str, Any]) -> dict[str, Any]:
    """Features and contributions of one record (`merged`: source column -> value, lookups
    applied), and the scores they make. Multiclass: contributions, bias and raw score per
    class."""
    check_explainable(model)
    pipe, task = model.pipeline, model.task
    x = pipe.transform_record(merged)
    contrib = model.booster.predict(x, pred_contrib=True)[0]
    raw = np.atleast_1d(model.booster.predict(x, raw_score=True)[0])
    linked = task.output(np.atleast_1d(model.booster.predict(x)[0]))  # before any calibration
    k = len(pipe.names)
    features = [
        {"name": name, "source": src, "input": plain(merged.get(src)), "encoded": plain(x[0, j])}
        for j, (name, src) in enumerate(zip(pipe.names, pipe.sources, strict=True))
    ]
    out: dict[str, Any] = {
        "features": features,
        "answer": task.answer(task.matrix(model.predict_matrix(x, num_threads=1))[0]),
        "calibrated": model.calibration is not None,
    }
    if task.kind == "multiclass":
        per = contrib.reshape(len(task.classes), k + 1)
        out["classes"] = {
            c: {
                "contributions": dict(zip(pipe.names, map(float, row[:k]), strict=True)),
                "bias": float(row[k]),
                "raw_score": float(raw[i]),
                "probability_uncalibrated": float(linked[i]),
            }
            for i, (c, row) in enumerate(zip(task.classes, per, strict=True))
        }
        return out
    out.update(
        contributions=dict(zip(pipe.names, map(float, contrib[:k]), strict=True)),
        bias=float(contrib[k]),
        raw_score=float(raw[0]),
    )
    # binary: the sigmoid of the raw score; regression: the label transform's inverse of it
    out["probability_uncalibrated" if task.kind == "binary" else "prediction"] = float(linked[0])
    return out
