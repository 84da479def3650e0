"""Test-window metrics: overall, per slice, against baselines; curves for plots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn import metrics as skm

from mlsys.errors import ConfigError, ContractError


def scores(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, float]:
    """AUC, PR-AUC, log loss, Brier score, expected calibration error."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    two_classes = len(np.unique(y)) == 2
    return {
        "auc": float(skm.roc_auc_score(y, p)) if two_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if two_classes else float("nan"),
        "logloss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, bins),
    }


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int) -> pd.DataFrame:
    """Equal-width bins: mean prediction vs observed rate, with counts."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": idx, "p": p, "y": y})
    table = frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed_rate=("y", "mean"), rows=("y", "size"))
    return table.reset_index()


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    t = calibration_table(y, p, bins)
    return float((t["rows"] * (t["mean_predicted"] - t["observed_rate"]).abs()).sum() / len(y))


def roc_points(y: np.ndarray, p: np.ndarray, n: int = 200) -> pd.DataFrame:
    fpr, tpr, _ = skm.roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(n, len(fpr))).astype(int))
    return pd.DataFrame({"fpr": fpr[keep], "tpr": tpr[keep]})


def slice_metrics(
    frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, columns: list[str], min_rows: int
) -> dict[str, dict[str, Any]]:
    """Per slice value: rows, positive rate, AUC and log loss; small slices are reported only."""
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        out[col] = {}
        keys = frame[col].astype("str").fillna("<null>").to_numpy()
        for value in np.unique(keys):
            m = keys == value
            entry: dict[str, Any] = {"rows": int(m.sum()), "positive_rate": float(y[m].mean())}
            if m.sum() >= min_rows and len(np.unique(y[m])) == 2:
                s = scores(y[m], p[m])
                entry.update(auc=s["auc"], logloss=s["logloss"])
            # else: too few rows or one class: counted, not scored
            out[col][str(value)] = entry
    return out


def logistic_baseline(
    train: pd.DataFrame, test: pd.DataFrame, features: list[str], label: str, max_iter: int
) -> np.ndarray:
    """Logistic regression on a few raw numeric columns (median-imputed, standardized)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=max_iter))
    model.fit(train[features].to_numpy("float64", na_value=np.nan), train[label].to_numpy())
    return model.predict_proba(test[features].to_numpy("float64", na_value=np.nan))[:, 1]


@dataclass
class Evaluation:
    """A model's predictions on a test window, judged: overall (against the baselines), per slice."""

    metrics: dict[str, Any]
    slices: dict[str, dict[str, Any]]
    predictions: np.ndarray
    baseline: np.ndarray  # the logistic baseline's predictions on the same rows


def evaluate(
    predictions: np.ndarray, train: pd.DataFrame, test: pd.DataFrame, ev: DictConfig, label: str
) -> Evaluation:
    """Score `predictions` of `test`: metrics, baselines fitted on `train`, slices. The
    evaluate stage and every backtest retrain call this one function."""
    for key, columns in (("evaluation.baseline.features", ev.baseline.features), ("evaluation.slices", ev.slices)):
        missing = sorted(set(columns) - set(test.columns))
        if missing:
            raise ConfigError(f"{key}: {missing} are not columns of the built dataset")
    y, p = test[label].to_numpy("int8"), np.asarray(predictions)
    if not np.isfinite(p).all():
        raise ContractError(f"evaluate: {int((~np.isfinite(p)).sum())} non-finite predictions on the test window")
    base_rate = float(train[label].mean())
    p_logreg = logistic_baseline(train, test, list(ev.baseline.features), label, ev.baseline.max_iter)
    overall = scores(y, p, ev.calibration_bins)
    logreg = scores(y, p_logreg, ev.calibration_bins)
    metrics = {
        **overall,
        "test_rows": len(y),
        "test_positive_rate": float(y.mean()),
        "baseline_logreg": logreg,
        "baseline_base_rate": scores(y, np.full(len(y), base_rate), ev.calibration_bins),
        "auc_lift_over_logreg": overall["auc"] - logreg["auc"],
    }
    slices = slice_metrics(test, y, p, list(ev.slices), ev.min_slice_rows)
    return Evaluation(metrics=metrics, slices=slices, predictions=p, baseline=p_logreg)
