"""Post-hoc calibration (`model.calibration`): a binary or multiclass model's probabilities
mapped so that they mean what they say, fitted on the validation window after training.

`isotonic` (scikit-learn's IsotonicRegression, kept as its thresholds: applying it is
`np.interp`, exactly what its `predict` does with `out_of_bounds="clip"`) or `platt` (a
logistic regression on the logit). Multiclass: one-vs-rest per class, then each row
renormalized to sum to 1 (as scikit-learn's CalibratedClassifierCV does). The fitted state
is a small JSON file of the bundle (`calibration.json`: checksummed, part of the version);
`Model.predict_frame` and the server's `predict_matrix` apply it, so every path answers alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsys.errors import ConfigError, ContractError
from mlsys.tasks import Task


def check(method: str, task: Task) -> None:
    if method != "none" and task.kind == "regression":
        raise ConfigError(f"model.calibration: {method!r} calibrates probabilities; a regression has none")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _fit_one(method: str, p: np.ndarray, hit: np.ndarray) -> dict[str, Any]:
    if len(np.unique(hit)) < 2:
        raise ContractError(
            f"model.calibration: {method} needs both outcomes of every class in the validation window; "
            f"one class has {int(hit.sum())} of {len(hit)} rows"
        )
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, hit)
        return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6).fit(_logit(p).reshape(-1, 1), hit)
    return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def _apply_one(state: dict[str, Any], p: np.ndarray) -> np.ndarray:
    if "x" in state:
        return np.interp(p, state["x"], state["y"])
    return 1.0 / (1.0 + np.exp(-(state["a"] * _logit(p) + state["b"])))


def fit(method: str, task: Task, y: np.ndarray, p: np.ndarray) -> dict[str, Any] | None:
    """The calibration state for predictions `p` of labels `y` (None: `method` is none)."""
    if method == "none":
        return None
    y = np.asarray(y).astype(int)
    if task.kind == "binary":
        columns = [_fit_one(method, p, y)]
    else:
        columns = [_fit_one(method, p[:, k], (y == k).astype(int)) for k in range(p.shape[1])]
    return {"method": method, "columns": columns}


def fit_booster(
    method: str, task: Task, booster: Any, x_valid: np.ndarray, y_valid: np.ndarray, best_iteration: int
) -> dict[str, Any] | None:
    """`fit` on a just-trained booster's validation predictions (the one place both the train
    stage and a backtest retrain calibrate); nothing is predicted when `method` is none."""
    if method == "none":
        return None
    return fit(method, task, y_valid, task.output(booster.predict(x_valid, num_iteration=best_iteration)))


def apply(state: dict[str, Any] | None, p: np.ndarray) -> np.ndarray:
    if state is None:
        return p
    if p.ndim == 1:
        return _apply_one(state["columns"][0], p)
    out = np.column_stack([_apply_one(c, p[:, k]) for k, c in enumerate(state["columns"])])
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1), 1.0 / out.shape[1])
