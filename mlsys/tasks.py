"""What the model predicts, declared with the label (`data.label.task`): binary, regression or
multiclass. One `Task` per model holds every task-dependent rule, so no other module asks
"which task?": the label's encoding and its degenerate cases, the LightGBM objectives that
belong to it, the metric registry (each metric with its better direction), baselines, plots,
the range a prediction must lie in, and the answer the server gives.

A model records its task in its meta/card (`Task.spec`); `Task.from_spec` reads it back
(a card written before tasks existed is binary).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsys.errors import ConfigError, ContractError

# LightGBM's objectives (and their aliases) by task.
OBJECTIVES = {
    "binary": {"binary", "cross_entropy", "xentropy", "cross_entropy_lambda", "xentlambda"},
    "regression": {
        "regression",
        "regression_l2",
        "l2",
        "mean_squared_error",
        "mse",
        "l2_root",
        "root_mean_squared_error",
        "rmse",
        "regression_l1",
        "l1",
        "mean_absolute_error",
        "mae",
        "huber",
        "fair",
        "poisson",
        "quantile",
        "mape",
        "mean_absolute_percentage_error",
        "gamma",
        "tweedie",
    },
    "multiclass": {"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"},
}
DEFAULT_OBJECTIVE = {"binary": "binary", "regression": "regression", "multiclass": "multiclass"}
PARAM_ALIASES = {
    "objective": ("objective", "objective_type", "app", "application", "loss"),
    "metric": ("metric", "metrics", "metric_types"),
    "num_class": ("num_class", "num_classes"),
}
LABEL_TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray], str]] = {
    "none": (lambda y: y, lambda y: y, ""),
    "log1p": (np.log1p, np.expm1, "> -1"),
    "sqrt": (np.sqrt, np.square, ">= 0"),
}


def param(params: Mapping[str, Any], name: str) -> tuple[str | None, Any]:
    """(the key used, its value) for a LightGBM param under any of its aliases."""
    for key in PARAM_ALIASES[name]:
        if key in params:
            return key, params[key]
    return None, None


@dataclass(frozen=True)
class Metric:
    direction: int  # +1: higher is better, -1: lower is better
    fn: Callable[[np.ndarray, np.ndarray, int], float]  # (y, predictions, calibration bins)
    objectives: frozenset[str] = frozenset()  # only with these objectives (empty: always)


# --- binary ----------------------------------------------------------------------------
def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, 1e-15, 1 - 1e-15)


def _two(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int) -> pd.DataFrame:
    """Equal-width bins of a probability: mean prediction vs observed rate, with counts."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": idx, "p": p, "y": y})
    table = frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed_rate=("y", "mean"), rows=("y", "size"))
    return table.reset_index()


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    t = calibration_table(y, p, bins)
    return float((t["rows"] * (t["mean_predicted"] - t["observed_rate"]).abs()).sum() / len(y))


def _skm() -> Any:
    from sklearn import metrics

    return metrics


BINARY = {
    "auc": Metric(1, lambda y, p, b: float(_skm().roc_auc_score(y, p)) if _two(y) else float("nan")),
    "pr_auc": Metric(1, lambda y, p, b: float(_skm().average_precision_score(y, p)) if _two(y) else float("nan")),
    "logloss": Metric(-1, lambda y, p, b: float(_skm().log_loss(y, _clip(p), labels=[0, 1]))),
    "brier": Metric(-1, lambda y, p, b: float(_skm().brier_score_loss(y, p))),
    "ece": Metric(-1, lambda y, p, b: expected_calibration_error(y, p, b)),
}


# --- regression ------------------------------------------------------------------------
def _wape(y: np.ndarray, p: np.ndarray, _: int) -> float:
    total = float(np.abs(y).sum())
    return float(np.abs(y - p).sum() / total) if total else float("nan")


def _deviance(kind: str) -> Callable[[np.ndarray, np.ndarray, int], float]:
    def fn(y: np.ndarray, p: np.ndarray, _: int) -> float:
        p = np.maximum(p, 1e-9)
        if kind == "poisson":
            return float(_skm().mean_poisson_deviance(y, p))
        if kind == "gamma":
            return float(_skm().mean_gamma_deviance(np.maximum(y, 1e-9), p))
        return float(_skm().mean_tweedie_deviance(y, p, power=1.5))

    return fn


REGRESSION = {
    "rmse": Metric(-1, lambda y, p, b: float(np.sqrt(np.mean((y - p) ** 2)))),
    "mae": Metric(-1, lambda y, p, b: float(np.mean(np.abs(y - p)))),
    "r2": Metric(1, lambda y, p, b: float(_skm().r2_score(y, p)) if len(y) > 1 else float("nan")),
    "wape": Metric(-1, _wape),
    "poisson_deviance": Metric(-1, _deviance("poisson"), frozenset({"poisson"})),
    "gamma_deviance": Metric(-1, _deviance("gamma"), frozenset({"gamma"})),
    "tweedie_deviance": Metric(-1, _deviance("tweedie"), frozenset({"tweedie"})),
}


# --- multiclass ------------------------------------------------------------------------
def top_label_table(y: np.ndarray, p: np.ndarray, bins: int) -> pd.DataFrame:
    """Top-label calibration: confidence (highest probability) vs how often it was right."""
    return calibration_table((p.argmax(axis=1) == y).astype(float), p.max(axis=1), bins)


def _ovr_auc(y: np.ndarray, p: np.ndarray, k: int) -> float:
    """One-vs-rest AUC of class k, NaN when the class is absent (or alone) in `y`."""
    hit = y == k
    return float(_skm().roc_auc_score(hit, p[:, k])) if 0 < hit.sum() < len(y) else float("nan")


def _macro(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _macro_f1(y: np.ndarray, p: np.ndarray, _: int) -> float:
    present = np.unique(y)
    return float(_skm().f1_score(y, p.argmax(axis=1), labels=present, average="macro", zero_division=0))


MULTICLASS = {
    "logloss": Metric(
        -1, lambda y, p, b: float(_skm().log_loss(y, np.clip(p, 1e-15, 1), labels=list(range(p.shape[1]))))
    ),
    "accuracy": Metric(1, lambda y, p, b: float(np.mean(p.argmax(axis=1) == y))),
    "macro_f1": Metric(1, _macro_f1),
    "auc_ovr": Metric(1, lambda y, p, b: _macro([_ovr_auc(y, p, k) for k in range(p.shape[1])])),
    "ece": Metric(-1, lambda y, p, b: expected_calibration_error((p.argmax(axis=1) == y).astype(float), p.max(1), b)),
}

REGISTRY = {"binary": BINARY, "regression": REGRESSION, "multiclass": MULTICLASS}
PRIMARY = {"binary": "auc", "regression": "rmse", "multiclass": "logloss"}
SLICE_METRICS = {"binary": ("auc", "logloss"), "regression": ("rmse", "mae"), "multiclass": ("logloss", "accuracy")}
PER_CLASS_METRICS = ("auc", "f1")
BASELINES = {"binary": ("logreg", "base_rate"), "regression": ("linear", "mean"), "multiclass": ("logreg", "majority")}


@dataclass(frozen=True)
class Task:
    kind: str = "binary"
    classes: tuple[str, ...] = ()  # multiclass: the declared classes, in order (codes 0..k-1)
    transform: str = "none"  # regression: trained on transform(y), answers inverse(prediction)
    objective: str = "binary"
    metrics: dict[str, Metric] = field(default_factory=dict, compare=False, repr=False)
    _columns: tuple[str, ...] = field(default=(), init=False, compare=False, repr=False)  # see `columns`

    def __post_init__(self) -> None:
        available = {n: m for n, m in REGISTRY[self.kind].items() if not m.objectives or self.objective in m.objectives}
        object.__setattr__(self, "metrics", available)
        columns = [f"p{k}" for k in range(len(self.classes))] if self.kind == "multiclass" else []
        object.__setattr__(self, "_columns", tuple(columns or ["score" if self.kind == "binary" else "prediction"]))

    # --- declaration ------------------------------------------------------------------
    @classmethod
    def from_config(cls, label: Mapping[str, Any], params: Mapping[str, Any]) -> Task:
        """The task of `data.label` with the objective of `model.params` (default: the task's)."""
        kind = str(label.get("task") or "binary")
        _, objective = param(params, "objective")
        classes = tuple(str(c) for c in (label.get("classes") or ()))
        return cls(kind, classes, str(label.get("transform") or "none"), str(objective or DEFAULT_OBJECTIVE[kind]))

    @classmethod
    def from_spec(cls, meta: Mapping[str, Any]) -> Task:
        spec = meta.get("task") or {}
        return cls(
            spec.get("kind", "binary"),
            tuple(spec.get("classes", ())),
            spec.get("transform", "none"),
            spec.get("objective", "binary"),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "classes": list(self.classes),
            "transform": self.transform,
            "objective": self.objective,
        }

    @property
    def primary(self) -> str:
        return PRIMARY[self.kind]

    def direction(self, metric: str) -> int:
        return self.metrics[metric].direction

    def check_metric(self, key: str, name: str) -> None:
        """A config key naming a metric must name one of this task's."""
        if name not in self.metrics:
            raise ConfigError(
                f"{key}: {name!r} is not a metric of the {self.kind} task "
                f"(objective {self.objective}); its metrics: {sorted(self.metrics)}"
            )

    def lgb_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` with the task's objective, training metric and class count filled in."""
        from omegaconf import DictConfig, OmegaConf

        out = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else dict(params)
        if param(out, "objective")[0] is None:
            out["objective"] = self.objective
        if param(out, "metric")[0] is None:
            # The first one stops training early: the metric of the task's primary (PRIMARY).
            out["metric"] = {"binary": ["auc", "binary_logloss"], "multiclass": ["multi_logloss"]}.get(
                self.kind, [self.objective]
            )
        if self.kind == "multiclass" and param(out, "num_class")[0] is None:
            out["num_class"] = len(self.classes)
        return out

    def check(self, label: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        """`data.label` declares what its task needs and nothing another task reads; the
        objective belongs to the task; multiclass declares its classes and their count."""
        needs = {"op": "binary", "threshold": "binary", "classes": "multiclass"}
        for key, kind in needs.items():
            if label.get(key) not in (None, []) and self.kind != kind:
                raise ConfigError(f"data.label.{key}: only a {kind} label has one (data.label.task is {self.kind})")
        if label.get("transform", "none") != "none" and self.kind != "regression":
            raise ConfigError(f"data.label.transform: only a regression label has one (data.label.task is {self.kind})")
        if self.kind == "binary" and (label.get("op") is None) != (label.get("threshold") is None):
            raise ConfigError(
                "data.label.op and data.label.threshold: give both (the label is column <op> threshold) "
                "or neither (the column is 0/1 or boolean)"
            )
        key, objective = param(params, "objective")
        if objective is not None and str(objective) not in OBJECTIVES[self.kind]:
            belongs = next((k for k, v in OBJECTIVES.items() if str(objective) in v), None)
            raise ConfigError(
                f"model.params.{key}: {objective!r} is {'a ' + belongs if belongs else 'not a known'} objective, "
                f"but data.label.task is {self.kind}; use one of {sorted(OBJECTIVES[self.kind])}"
            )
        if self.kind == "multiclass":
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ConfigError(
                    f"data.label.classes: a multiclass task needs at least 2 distinct classes, got {list(self.classes)}"
                )
            key, n = param(params, "num_class")
            if n is not None and int(n) != len(self.classes):
                raise ConfigError(
                    f"model.params.{key}: {n} != {len(self.classes)} classes declared in data.label.classes"
                )

    # --- the label --------------------------------------------------------------------
    def encode(self, values: pd.Series, spec: Mapping[str, Any]) -> pd.Series:
        """The label column of the built dataset from the source column (<NA> where it is null):
        binary 0/1 (Int8), regression as is (Float64), multiclass the class's code (Int16).
        A value the task cannot take is a contract failure naming the column."""
        column = spec["column"]
        if self.kind == "regression":
            return _numeric(values, column).astype("Float64")
        if self.kind == "multiclass":
            text = values.astype("string")
            codes = {c: i for i, c in enumerate(self.classes)}
            unknown = text.dropna()[~text.dropna().isin(list(codes))]
            if len(unknown):
                raise ContractError(
                    f"data.label.column {column!r}: values not among data.label.classes {list(self.classes)}: "
                    f"{unknown.value_counts().head(5).to_dict()} ({len(unknown)} rows)"
                )
            return text.map(codes).astype("Int16")
        op = spec.get("op")
        if op is not None:
            if spec.get("threshold") is None:
                raise ConfigError(f"data.label.threshold: required with data.label.op {op!r}")
            num = _numeric(values, column)
            ops = {"gt": num.gt, "ge": num.ge, "lt": num.lt, "le": num.le, "eq": num.eq, "ne": num.ne}
            return ops[str(op)](spec["threshold"]).astype("Int8").mask(values.isna())
        if pd.api.types.is_bool_dtype(values):
            return values.astype("Int8")
        num = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & ~num.isin([0, 1])
        if bad.any():
            raise ContractError(
                f"data.label.column {column!r}: a binary label without data.label.op/threshold must be 0/1 or "
                f"boolean; found {values[bad].astype('string').value_counts().head(5).to_dict()} "
                f"({int(bad.sum())} rows). Declare op and threshold (e.g. op: gt, threshold: 0) to derive it"
            )
        return num.astype("Int8")

    def check_label(self, y: pd.Series, column: str) -> None:
        """A label the model cannot learn from (one class, a constant) fails the build."""
        values = y.dropna()
        if self.kind == "regression":
            if values.nunique() < 2:
                raise ContractError(
                    f"data.label.column {column!r}: the regression label is constant over {len(values)} labelled rows "
                    f"(value {values.iloc[0] if len(values) else None}); nothing to learn"
                )
            low = {"log1p": -1.0, "sqrt": 0.0}.get(self.transform)
            if low is not None and (values <= low if self.transform == "log1p" else values < low).any():
                raise ContractError(
                    f"data.label.transform {self.transform!r}: needs {column!r} {LABEL_TRANSFORMS[self.transform][2]}, "
                    f"but its minimum is {values.min()}"
                )
            return
        counts = self.label_summary(values)["counts"]
        if sum(1 for n in counts.values() if n) < 2:
            raise ContractError(
                f"data.label.column {column!r}: every labelled row is in one class (distribution {counts}); "
                f"a {self.kind} task needs at least two"
            )

    def label_summary(self, y: pd.Series) -> dict[str, Any]:
        values = y.dropna()
        if self.kind == "regression":
            v = values.astype("float64")
            return {"rows": len(v), "mean": _f(v.mean()), "std": _f(v.std()), "min": _f(v.min()), "max": _f(v.max())}
        names = self.class_names
        counts = values.astype("int64").value_counts()
        out = {"rows": len(values), "counts": {names[i]: int(counts.get(i, 0)) for i in range(len(names))}}
        if self.kind == "binary":
            out["positive_rate"] = float(values.mean()) if len(values) else None
        return out

    @property
    def class_names(self) -> list[str]:
        return list(self.classes) if self.kind == "multiclass" else ["0", "1"]

    def truth(self, y: pd.Series | np.ndarray) -> np.ndarray:
        """The label as metrics read it (original scale)."""
        return np.asarray(y, dtype="float64" if self.kind == "regression" else "int64")

    def target(self, y: pd.Series | np.ndarray) -> np.ndarray:
        """The label as LightGBM is trained on it (transformed for a regression)."""
        return LABEL_TRANSFORMS[self.transform][0](self.truth(y)) if self.kind == "regression" else self.truth(y)

    def output(self, raw: np.ndarray) -> np.ndarray:
        """Booster.predict's output as answered: a regression's inverse transform applied."""
        return LABEL_TRANSFORMS[self.transform][1](raw) if self.kind == "regression" else raw

    # --- judging ----------------------------------------------------------------------
    def scores(self, y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
        out: dict[str, Any] = {name: m.fn(y, p, bins) for name, m in self.metrics.items()}
        if self.kind == "multiclass":
            out["per_class"] = self.per_class(y, p)
        return out

    def per_class(self, y: np.ndarray, p: np.ndarray) -> dict[str, dict[str, Any]]:
        """One-vs-rest AUC and F1 per declared class; a class absent from `y` has rows 0 and no figures."""
        predicted = p.argmax(axis=1)
        out = {}
        for k, name in enumerate(self.classes):
            rows = int((y == k).sum())
            if rows == 0:
                out[name] = {"rows": 0, "auc": None, "f1": None}
                continue
            f1 = float(_skm().f1_score(y == k, predicted == k, zero_division=0))
            out[name] = {"rows": rows, "auc": _f(_ovr_auc(y, p, k)), "f1": f1}
        return out

    def slice_entry(self, y: np.ndarray, p: np.ndarray, scored: bool) -> dict[str, Any]:
        """A slice's figures: rows and the label's level always; its metrics when `scored`."""
        entry: dict[str, Any] = {"rows": len(y)}
        if self.kind == "binary":
            entry["positive_rate"] = float(y.mean())
            scored = scored and _two(y)
        elif self.kind == "regression":
            entry["label_mean"] = float(y.mean())
        if scored:
            entry.update({name: self.metrics[name].fn(y, p, 10) for name in SLICE_METRICS[self.kind]})
        return entry

    def baselines(
        self, train: pd.DataFrame, test: pd.DataFrame, features: list[str], label: str, max_iter: int
    ) -> dict[str, np.ndarray]:
        """Two simple models on the same rows: a linear one on a few raw columns (median-imputed,
        standardized) and a constant (the training rate, mean or majority class)."""
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LinearRegression, LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x, xt = (f[features].to_numpy("float64", na_value=np.nan) for f in (train, test))
        y = self.truth(train[label])
        linear, constant = BASELINES[self.kind]
        est = LinearRegression() if self.kind == "regression" else LogisticRegression(max_iter=max_iter)
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), est).fit(x, y)
        if self.kind == "regression":
            return {linear: model.predict(xt), constant: np.full(len(test), float(y.mean()))}
        if self.kind == "binary":
            return {linear: model.predict_proba(xt)[:, 1], constant: np.full(len(test), float(y.mean()))}
        full = np.zeros((len(test), len(self.classes)))
        full[:, model.classes_] = model.predict_proba(xt)  # classes absent from training get 0
        majority = np.zeros_like(full)
        majority[:, np.bincount(y, minlength=len(self.classes)).argmax()] = 1.0
        return {linear: full, constant: majority}

    def in_range(self, p: np.ndarray) -> tuple[bool, str]:
        """Whether predictions are of the task's kind (probabilities; a regression: finite)."""
        finite = p[np.isfinite(p).all(axis=1)] if p.ndim == 2 else p[np.isfinite(p)]
        if self.kind == "regression":
            return True, "predictions are real numbers"
        ok = bool(((finite >= 0) & (finite <= 1)).all())
        if self.kind == "multiclass":
            ok = ok and bool(np.allclose(finite.sum(axis=1), 1.0, atol=1e-6))
            return ok, "class probabilities within [0, 1], summing to 1" if ok else "not class probabilities"
        return ok, "probabilities within [0, 1]" if ok else "probabilities outside [0, 1]"

    # --- serving ----------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The numbers stored per entity (the lookup store's columns): one per class, else one."""
        return list(self._columns)

    def matrix(self, p: np.ndarray) -> np.ndarray:
        return p.reshape(len(p), -1)

    def answer(self, values: Any) -> dict[str, Any]:
        """What the server says for one record, from its numbers (`columns`, in order)."""
        if self.kind == "binary":
            return {"score": float(values[0])}
        if self.kind == "regression":
            return {"prediction": float(values[0])}
        probs = [float(v) for v in values]
        return {
            "probabilities": dict(zip(self.classes, probs, strict=True)),
            "prediction": self.classes[int(np.argmax(probs))],
        }

    def held_out(self) -> dict[str, Any]:
        """The answer to an entity held out (data.feedback_loops): no score at all."""
        return {"probabilities": None, "prediction": None} if self.kind == "multiclass" else {self._columns[0]: None}

    def numbers(self, answer: Mapping[str, Any]) -> list[float]:
        """The inverse of `answer`: an answer's numbers, in `columns` order (NaN when absent)."""
        nan = float("nan")
        if self.kind == "multiclass":
            probs = answer.get("probabilities") or {}
            return [float(probs.get(c, nan)) for c in self.classes]
        value = answer.get(self._columns[0])
        return [nan if value is None else float(value)]

    def headline(self, answer: Mapping[str, Any]) -> float:
        """The one number /metrics histograms: the score, the prediction, the top probability."""
        return max(self.numbers(answer)) if self.kind == "multiclass" else self.numbers(answer)[0]


def _numeric(values: pd.Series, column: str) -> pd.Series:
    num = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & num.isna()
    if bad.any():
        raise ContractError(
            f"data.label.column {column!r}: {int(bad.sum())} values are not numbers "
            f"(e.g. {values[bad].astype('string').head(3).tolist()})"
        )
    return num


def _f(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)
