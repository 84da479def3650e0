"""Derived columns (`data.derived`): new columns of the primary table, declared in YAML.

Each is an expression over the table's columns (`expr: "hour + 24 * (day_of_year - 1)"`) or
a Python function (`_target_: pkg.fn` with its `inputs`). One evaluator computes both: the
same compiled code runs on whole numpy columns in the validate stage (so contracts, keys,
joins, the event time and features all see the result) and on one request's values in the
server (numpy scalars: no one-row DataFrame on the request path). Numbers enter both as
float64 (missing: NaN), anything else as Python objects (missing: None), so the two paths do
the same arithmetic; tests/unit/test_derive.py proves they agree value for value.

An expression may use numbers, strings, the columns (and derived columns declared before
it), `+ - * / // % **`, comparisons, `& | ~` on conditions, and the numpy functions in
`FUNCTIONS` (`where(cond, a, b)` is the if-else). Nothing else parses: no attributes, no
subscripts, no builtins. A row missing a text input derives a missing value (a missing
number is NaN, which arithmetic carries).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.config.checks import unknown_names
from mlsys.errors import ConfigError, ContractError

FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(np, name)
    for name in ("abs", "ceil", "clip", "exp", "floor", "isnan", "log", "log1p", "maximum", "minimum", "round", "sqrt")
} | {"where": np.where}
_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    *(getattr(ast, op) for op in ("Add", "Sub", "Mult", "Div", "FloorDiv", "Mod", "Pow", "USub", "UAdd")),
    *(getattr(ast, op) for op in ("BitAnd", "BitOr", "Invert", "Eq", "NotEq", "Lt", "LtE", "Gt", "GtE")),
)
DTYPES = ("int64", "float64", "str", "bool")


def reads(spec: Any) -> list[str]:
    """The columns a derived column's spec reads (its inputs, or its expression's names; an
    expression that does not parse reads nothing here: `Derived.from_config` reports it)."""
    if spec.inputs or not spec.expr:
        return list(spec.inputs)
    try:
        return _compile(spec.expr, "")[1]
    except ConfigError:
        return []


def _compile(expr: str, key: str) -> tuple[Any, list[str]]:
    """Code object of an allowed expression, and the column names it reads."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{key}.expr: {expr!r} is not an expression: {exc.msg}") from exc
    names = []
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            raise ConfigError(f"{key}.expr: {type(node).__name__} is not allowed in {expr!r}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise ConfigError(f"{key}.expr: calls one of {sorted(FUNCTIONS)} only, in {expr!r}")
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            names.append(node.id)
    return compile(tree, key, "eval"), list(dict.fromkeys(names))


@dataclass(frozen=True)
class Derived:
    """One derived column, compiled: `fn(*inputs)` on columns or on scalars alike."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    dtype: str | None
    source: str  # the expression or the function's path, for messages
    # An expression: a row missing a text input derives a missing value (numbers carry NaN
    # through arithmetic; None would raise). A function is handed the None itself.
    propagates: bool = False

    @classmethod
    def from_config(cls, name: str, spec: DictConfig) -> Derived:
        key = f"data.derived.{name}"
        if (spec.expr is None) == (spec._target_ is None):
            raise ConfigError(f"{key}: give exactly one of expr (an expression) or _target_ (a function)")
        if spec.dtype is not None and spec.dtype not in DTYPES:
            raise ConfigError(f"{key}.dtype: {spec.dtype!r} is not one of {list(DTYPES)}")
        if spec.expr is not None:
            if spec.inputs:
                raise ConfigError(f"{key}.inputs: only a _target_ function takes inputs; an expr names its columns")
            code, names = _compile(spec.expr, key)
            env = {"__builtins__": {}, **FUNCTIONS}

            def fn(*values: Any) -> Any:
                return eval(code, env, dict(zip(names, values, strict=True)))

            return cls(name, fn, tuple(names), spec.dtype, spec.expr, propagates=True)
        from hydra.utils import get_method

        try:
            target = get_method(spec._target_)
        except Exception as exc:  # Hydra wraps import and attribute errors alike
            raise ConfigError(f"{key}._target_: {spec._target_!r} cannot be imported as a function: {exc}") from exc
        if not spec.inputs:
            raise ConfigError(f"{key}.inputs: list the columns {spec._target_} is called with")
        return cls(name, target, tuple(spec.inputs), spec.dtype, spec._target_)

    def column(self, frame: pd.DataFrame) -> pd.Series:
        """The whole column (validate stage); an input of the wrong kind is a ContractError."""
        try:
            values = [_column_values(frame[c]) for c in self.inputs]
            gaps = np.zeros(len(frame), dtype=bool)
            if self.propagates:
                for v in values:
                    if v.dtype == object:
                        gaps |= pd.isna(v)
            if gaps.any():  # only the complete rows are computed; the others are missing
                out = np.full(len(frame), None, dtype=object)
                out[~gaps] = self._evaluate([v[~gaps] for v in values], int((~gaps).sum()))
            else:
                out = self._evaluate(values, len(frame))
            return _typed_column(pd.Series(out, index=frame.index), self.dtype)
        except (TypeError, ValueError, ArithmeticError) as exc:
            found = {c: str(frame[c].dtype) for c in self.inputs}
            raise ContractError(f"data.derived.{self.name}: {self.source!r} fails on columns {found}: {exc}") from exc

    def _evaluate(self, values: list[np.ndarray], n: int) -> Any:
        out = self.fn(*values)
        return np.broadcast_to(np.asarray(out), (n,)) if np.ndim(out) == 0 else out

    def value(self, record: Mapping[str, Any], text: frozenset[str] = frozenset()) -> Any:
        """One request's value (server): a plain Python scalar, None for missing (a missing
        input is NaN, as in its float64 column, unless it is a `text` column)."""
        values = [_scalar_value(record.get(c), c in text) for c in self.inputs]
        if self.propagates and any(v is None for v in values):
            return None
        # Evaluated as a column of one row: the column path's very numpy loops (on scalars
        # numpy takes others: `x ** 0.5` is sqrt on an array, pow on a scalar; a last bit apart).
        rows = (np.array([v], dtype=np.float64 if isinstance(v, np.float64) else object) for v in values)
        out = self.fn(*rows)
        out = out[0] if np.ndim(out) else out
        return _typed_scalar(out.item() if isinstance(out, np.ndarray | np.generic) else out, self.dtype)


def _column_values(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(np.float64, na_value=np.nan)
    return s.astype(object).where(s.notna(), None).to_numpy(object)


def _scalar_value(v: Any, text: bool) -> Any:
    if v is None or v is pd.NA:
        return None if text else np.float64("nan")
    if isinstance(v, bool | str):
        return v
    if isinstance(v, int | float | np.number):
        return np.float64(v)
    return None if v is pd.NaT else v


def _typed_column(s: pd.Series, dtype: str | None) -> pd.Series:
    if dtype is None:
        return s.infer_objects()
    if dtype == "int64":
        return s.astype("float64").astype("Int64" if s.isna().any() else "int64")
    return s.astype({"float64": "float64", "str": "str", "bool": "bool"}[dtype])


def _typed_scalar(v: Any, dtype: str | None) -> Any:
    if v is None or (isinstance(v, float) and v != v):
        return None
    return v if dtype is None else {"int64": int, "float64": float, "str": str, "bool": bool}[dtype](v)


class Deriver:
    """Every derived column of a dataset, in declaration order (a later one may read an
    earlier one). `text`: the columns declared as text (a missing one is None, not NaN, on
    the request path, as in its column)."""

    def __init__(self, derived: DictConfig | Mapping[str, Any], text: set[str] | None = None) -> None:
        self.columns = [Derived.from_config(name, spec) for name, spec in derived.items()]
        self.names = [d.name for d in self.columns]
        self.text = frozenset(text or ()) | {d.name for d in self.columns if d.dtype == "str"}

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with the derived columns added (the validate stage)."""
        if not self.columns:
            return frame
        out = frame.copy()
        for d in self.columns:
            missing = [c for c in d.inputs if c not in out.columns]
            if missing:
                raise ContractError(f"data.derived.{d.name}: reads {missing}, not columns of the table")
            out[d.name] = d.column(out)
        return out

    def record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A request with the derived columns added (the server: ~7 µs a column, `python
        bench/derive.py`)."""
        out = dict(record)
        for d in self.columns:
            out[d.name] = d.value(out, self.text)
        return out


def check_derived(derived: DictConfig, available: set[str]) -> None:
    """Each derived column compiles and reads only columns declared before it."""
    known = set(available)
    for d in Deriver(derived).columns:
        unknown = [c for c in d.inputs if c not in known]
        if unknown:
            raise ConfigError(
                f"data.derived.{d.name}: reads {unknown_names(unknown, known)}: not a column of the primary "
                "table's contract or a derived column declared before it"
            )
        known.add(d.name)
