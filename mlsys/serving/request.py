"""The serving form of the contract: what a caller sends, as a pydantic model generated from
the primary source's contract (per-request Pandera would cost milliseconds; Pandera checks
the logged requests in batches instead).

A request carries what the upstream system knows before the event: the primary table's
columns that are not known only after the outcome. Columns that come from other tables
(as-of joins, lookups, aggregates) are looked up in the online feature table; a request may
also carry them, and then its values are used.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import pandas as pd
from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict, Field, create_model

from mlsys.data.build import EVENT_LOCAL, EVENT_TIME, LABEL, PREDICTION_TIME

TYPES: dict[str, type] = {"int64": int, "Int64": int, "float64": float, "str": str, "bool": bool}


def request_columns(cfg: DictConfig) -> list[str]:
    """The primary table's contract columns a caller knows before the outcome."""
    data = cfg.data
    table = cfg.contract.tables[data.primary]
    late = set(data.sources[data.primary].after_outcome) | {data.label.column}
    return [c for c in table.columns if c not in late]


def lookup_columns(dataset_columns: list[str], cfg: DictConfig) -> list[str]:
    """Built-dataset columns that come from other tables: the online feature table's."""
    skip = set(cfg.contract.tables[cfg.data.primary].columns) | {EVENT_TIME, EVENT_LOCAL, PREDICTION_TIME, LABEL}
    return [c for c in dataset_columns if c not in skip]


def _field(spec: DictConfig) -> tuple[Any, Any]:
    """(annotation, field) of one contract column: type, bounds, pattern, allowed values;
    required unless the contract lets it be null."""
    dtype = str(spec.dtype or "")
    kind: Any = dt.datetime if dtype.startswith("datetime64") else TYPES.get(dtype, str)
    if spec.isin is not None:
        kind = Literal[tuple(spec.isin)]  # type: ignore[valid-type]
    bounds = {"ge": spec.min, "le": spec.max, "pattern": spec.regex if kind is str else None}
    info = Field(default=None if spec.nullable else ..., **{k: v for k, v in bounds.items() if v is not None})
    return (kind | None if spec.nullable else kind), info


def request_model(cfg: DictConfig, lookups: dict[str, str]) -> type[BaseModel]:
    """The request model: contract columns (required unless nullable) + optional lookups
    (name -> 'numeric' | 'categorical'). Unknown fields, NaN and infinities are refused."""
    table = cfg.contract.tables[cfg.data.primary]
    fields: dict[str, Any] = {c: _field(table.columns[c]) for c in request_columns(cfg)}
    for name, kind in lookups.items():
        fields[name] = (float | None, None) if kind == "numeric" else (str | None, None)
    config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=200)
    return create_model("Request", __config__=config, **fields)


def request_body(row: pd.Series, columns: list[str]) -> dict[str, Any]:
    """A JSON body a caller could POST: one built row's `columns` (missing values left out)."""
    out = {}
    for name in columns:
        v = row.get(name)
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            continue
        out[name] = v.isoformat() if isinstance(v, pd.Timestamp) else (v.item() if hasattr(v, "item") else v)
    return out
