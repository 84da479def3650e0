"""Test-window metrics: overall, per slice, against baselines; the data of the task's plots.
Which metrics, baselines and plots: the model's task (`mlsys.tasks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.errors import ConfigError, ContractError
from mlsys.tasks import BASELINES, Task, calibration_table, top_label_table


def slice_metrics(
    task: Task, frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, columns: list[str], min_rows: int
) -> dict[str, dict[str, Any]]:
    """Per slice value: rows, the label's level, and the task's slice metrics; small slices
    are counted, not scored."""
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        out[col] = {}
        keys = frame[col].astype("str").fillna("<null>").to_numpy()
        for value in np.unique(keys):
            m = keys == value
            out[col][str(value)] = task.slice_entry(y[m], p[m], scored=bool(m.sum() >= min_rows))
    return out


@dataclass
class Evaluation:
    """A model's predictions on a test window, judged: overall (against the baselines), per slice."""

    metrics: dict[str, Any]
    slices: dict[str, dict[str, Any]]
    predictions: np.ndarray
    baseline: np.ndarray  # the task's linear baseline's predictions on the same rows


def evaluate(
    task: Task, predictions: np.ndarray, train: pd.DataFrame, test: pd.DataFrame, ev: DictConfig, label: str
) -> Evaluation:
    """Score `predictions` of `test`: metrics, baselines fitted on `train`, slices. The
    evaluate stage and every backtest retrain call this one function."""
    for key, columns in (("evaluation.baseline.features", ev.baseline.features), ("evaluation.slices", ev.slices)):
        missing = sorted(set(columns) - set(test.columns))
        if missing:
            raise ConfigError(f"{key}: {missing} are not columns of the built dataset")
    y, p = task.truth(test[label]), np.asarray(predictions)
    if not np.isfinite(p).all():
        raise ContractError(f"evaluate: {int((~np.isfinite(p)).sum())} non-finite predictions on the test window")
    linear, constant = BASELINES[task.kind]
    base = task.baselines(train, test, list(ev.baseline.features), label, ev.baseline.max_iter)
    overall = task.scores(y, p, ev.calibration_bins)
    fitted = task.scores(y, base[linear], ev.calibration_bins)
    primary = task.primary
    metrics = {
        **overall,
        "test_rows": len(y),
        "test_label": task.label_summary(pd.Series(y)),
        f"baseline_{linear}": fitted,
        f"baseline_{constant}": task.scores(y, base[constant], ev.calibration_bins),
        f"{primary}_lift_over_{linear}": (overall[primary] - fitted[primary]) * task.direction(primary),
    }
    if task.kind == "binary":
        metrics["test_positive_rate"] = float(y.mean())
    slices = slice_metrics(task, test, y, p, list(ev.slices), ev.min_slice_rows)
    return Evaluation(metrics=metrics, slices=slices, predictions=p, baseline=base[linear])


def _roc(y: np.ndarray, p: np.ndarray, n: int = 200) -> pd.DataFrame:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(n, len(fpr))).astype(int))
    return pd.DataFrame({"fpr": fpr[keep], "tpr": tpr[keep]})


def _per_class_roc(task: Task, y: np.ndarray, p: np.ndarray, grid: int = 101) -> pd.DataFrame:
    """One-vs-rest ROC of every declared class on one false-positive grid (a column per
    class; NaN for a class absent from the window)."""
    from sklearn.metrics import roc_curve

    fpr_grid = np.linspace(0, 1, grid)
    out = {"fpr": fpr_grid}
    for k, name in enumerate(task.classes):
        hit = y == k
        if 0 < hit.sum() < len(y):
            fpr, tpr, _ = roc_curve(hit, p[:, k])
            out[name] = np.interp(fpr_grid, fpr, tpr)
        else:
            out[name] = np.full(grid, np.nan)
    return pd.DataFrame(out)


def _scatter(y: np.ndarray, p: np.ndarray, n: int = 2000) -> pd.DataFrame:
    keep = np.random.default_rng(0).choice(len(y), min(n, len(y)), replace=False)
    return pd.DataFrame({"actual": y[keep], "predicted": p[keep]})


def _deciles(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"y": y, "p": p})
    frame["decile"] = pd.qcut(frame["p"].rank(method="first"), 10, labels=False) + 1
    t = frame.groupby("decile").agg(mean_predicted=("p", "mean"), mean_actual=("y", "mean"), rows=("y", "size"))
    t["mean_residual"] = t["mean_actual"] - t["mean_predicted"]
    return t.reset_index()


def plot_data(task: Task, y: np.ndarray, p: np.ndarray, p_baseline: np.ndarray, bins: int) -> dict[str, pd.DataFrame]:
    """The frames of the task's plots (`evaluation.plots`): curve (also for the baseline),
    fit and extra, as dvc.yaml's `plots:` and the HTML report draw them."""
    if task.kind == "binary":
        from sklearn.metrics import precision_recall_curve

        precision, recall, _ = precision_recall_curve(y, p)
        keep = np.unique(np.linspace(0, len(recall) - 1, min(200, len(recall))).astype(int))
        return {
            "curve": _roc(y, p),
            "curve_baseline": _roc(y, p_baseline),
            "fit": calibration_table(y, p, bins),
            "extra": pd.DataFrame({"recall": recall[keep], "precision": precision[keep]}),
        }
    if task.kind == "regression":
        deciles = _deciles(y, p)
        return {
            "curve": _scatter(y, p),
            "curve_baseline": _scatter(y, p_baseline),
            "fit": deciles[["decile", "mean_residual", "rows"]],
            "extra": deciles[["decile", "mean_predicted", "mean_actual", "rows"]],
        }
    names = np.asarray(task.classes)
    keep = np.random.default_rng(0).choice(len(y), min(20000, len(y)), replace=False)
    return {
        "curve": _per_class_roc(task, y, p),
        "curve_baseline": _per_class_roc(task, y, p_baseline),
        "fit": pd.DataFrame({"actual": names[y[keep]], "predicted": names[p[keep].argmax(axis=1)]}),
        "extra": top_label_table(y, p, bins),
    }
