"""Suspected leakage: what each model input can tell of the label, computed wherever a model
is trained (the train stage, every retrain) and judged at release (`release.leakage`).

Per input: its power alone (a one-feature model fitted on the train window, scored on the
valid window with the task's measure: AUC, R² or macro-F1), its share of the model's gain,
and whether it is a function of the label on the train window. For the model: its valid
figure and the top two inputs' share of the gain (two columns that sum to the label are
only moderately telling alone, and nearly everything together).

The one-feature model is a histogram fit, the model class of a LightGBM tree on one feature:
up to `BINS` quantile bins of a numeric input (one per code of a categorical one, one for
missing values), each answering the train rows' mean label there (class shares for
multiclass), shrunk towards the overall mean by `PRIOR` rows. It costs a pass over the
column, where a LightGBM fit per feature would cost a training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsys.tasks import Task

BINS = 64
EDGE_ROWS = 50_000  # at most this many values place a numeric input's bin edges
PRIOR = 1.0  # pseudo-rows of the overall mean in each bin: a bin of one row is not certainty
MEASURE = {"binary": "auc", "regression": "r2", "multiclass": "macro_f1"}


def power(task: Task, y: np.ndarray, p: np.ndarray) -> float:
    """The task's measure of how well `p` tells `y`: AUC, R², macro-F1 (NaN when undefined)."""
    from sklearn.metrics import f1_score, r2_score, roc_auc_score

    if task.kind == "binary":
        return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    if task.kind == "regression":
        return float(r2_score(y, p)) if np.var(y) > 0 else float("nan")
    return float(f1_score(y, p.argmax(axis=1), average="macro", labels=np.arange(p.shape[1]), zero_division=0))


def _bins(train: np.ndarray, valid: np.ndarray, categorical: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin indices of both windows (the last bin: missing; unseen codes share the missing bin)."""
    present = train[~np.isnan(train)]
    if categorical:
        edges = np.unique(present)

        def index(col: np.ndarray) -> np.ndarray:
            if not len(edges):  # no code seen in training (an input missing throughout): one bin
                return np.zeros(len(col), dtype=np.int64)
            idx = np.searchsorted(edges, col)
            known = ~np.isnan(col) & (idx < len(edges)) & (edges[np.minimum(idx, max(len(edges) - 1, 0))] == col)
            return np.where(known, idx, len(edges))

        return index(train), index(valid), len(edges) + 1
    step = -(-len(present) // EDGE_ROWS)  # edges from every step-th value: quantiles of a large column
    levels = np.linspace(0, 1, BINS + 1)[1:-1]
    edges = np.unique(np.quantile(present[::step], levels)) if len(present) else np.array([])

    def index(col: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(col), len(edges) + 1, np.searchsorted(edges, col, side="right"))

    return index(train), index(valid), len(edges) + 2


def alone(task: Task, train: np.ndarray, y: np.ndarray, valid: np.ndarray, yv: np.ndarray, categorical: bool) -> float:
    """The power of one input on the valid window, by its histogram model fitted on train."""
    bt, bv, n = _bins(train, valid, categorical)
    counts = np.bincount(bt, minlength=n).astype(float)
    if task.kind == "multiclass":
        k = len(task.classes)
        onehot = np.eye(k)[y.astype(int)]
        sums = np.stack([np.bincount(bt, weights=onehot[:, c], minlength=n) for c in range(k)], axis=1)
        table = (sums + PRIOR * onehot.mean(axis=0)) / (counts + PRIOR)[:, None]
    else:
        table = (np.bincount(bt, weights=y, minlength=n) + PRIOR * y.mean()) / (counts + PRIOR)
        if task.kind == "binary":
            return binned_auc(table, bv, yv)
    return power(task, yv, table[bv])


def binned_auc(values: np.ndarray, bins: np.ndarray, y: np.ndarray) -> float:
    """The AUC of answers `values[bins]` (one value per bin) for 0/1 labels `y`, from each
    value's counts of positives and negatives: what `roc_auc_score` gives (ties count half),
    in a pass over the rows instead of a sort (NaN with one class only)."""
    distinct, slot = np.unique(values, return_inverse=True)
    rows = slot[bins]
    pos = np.bincount(rows, weights=y, minlength=len(distinct))
    neg = np.bincount(rows, minlength=len(distinct)) - pos
    if not pos.sum() or not neg.sum():
        return float("nan")
    below = np.cumsum(neg) - neg  # negatives answered lower than each value
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def label_groups(y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows of label values that repeat, grouped by value (row order, group starts), made
    once for every input's `label_function`; None for a continuous label (values that repeat
    cover under half the rows, or fewer than two values repeat)."""
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    repeated = counts[inverse] > 1
    if (counts > 1).sum() < 2 or repeated.mean() < 0.5:
        return None
    rows = np.flatnonzero(repeated)
    order = rows[np.argsort(inverse[rows], kind="stable")]
    label = inverse[order]
    return order, np.flatnonzero(np.r_[True, label[1:] != label[:-1]])


def label_function(col: np.ndarray, groups: tuple[np.ndarray, np.ndarray] | None) -> bool:
    """Whether `col` is a function of the label on these rows: one value for each label value
    (missing counts as a value) over the `label_groups`; a constant is not (it tells nothing).
    A pass over the column: each group's smallest value equals its largest."""
    values = np.where(np.isnan(col), np.inf, col)
    if groups is None or not len(values) or values.min() == values.max():
        return False
    order, starts = groups
    grouped = values[order]
    return bool(np.array_equal(np.minimum.reduceat(grouped, starts), np.maximum.reduceat(grouped, starts)))


def figures(model: Any, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> dict[str, Any]:
    """Every input's power alone, gain share and label-function test; the model's own valid
    figure (its answers, as served) and its top two inputs' share of the gain. `model` is a
    `mlsys.model.Model`; `x`, `xv` its encoded train and valid windows."""
    task, names = model.task, model.pipeline.names
    y, yv = task.truth(y), task.truth(yv)
    gain = model.booster.feature_importance("gain")  # at the best iteration
    share = gain / gain.sum() if gain.sum() > 0 else np.zeros(len(names))
    cats = set(model.pipeline.categorical)
    groups = label_groups(y)
    inputs = [
        {
            "name": name,
            "alone": alone(task, x[:, j], y, xv[:, j], yv, j in cats),
            "gain_share": float(share[j]),
            "label_function": label_function(x[:, j], groups),
        }
        for j, name in enumerate(names)
    ]
    return {
        "measure": MEASURE[task.kind],
        "overall": power(task, yv, model.predict_matrix(xv)),
        "top_two": [names[j] for j in np.argsort(-share)[:2]],
        "top_two_gain_share": float(np.sort(share)[-2:].sum()),
        "features": inputs,
    }
