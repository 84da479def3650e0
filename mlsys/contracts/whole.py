"""The whole-table checks of a contract (uniqueness, missing share, row count) as reductions
over slices of rows, for a table checked slice by slice (`engine: dask`).

Each slice reduces to `Counts` on its worker: its rows, the nulls of each `max_missing`
column, and a 64-bit hash of each row's key per uniqueness rule (pandas' own row hash, as
Dask's shuffles use it). Here the counts are summed and the hashes of all slices, in row
order, tell which rows' keys repeat; Pandera's uniqueness checks then run on those rows alone
(every copy of a repeated key, in order, with its row number: the same failure cases as on
the whole table), and the missing shares and row count are judged by the functions the
registered checks call, under the checks' own names. The failure cases equal those of the
whole table checked at once (tested against the local engine's reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.contracts import (
    compile_schema,
    join_cases,
    missing_check,
    missing_within,
    rows_check,
    rows_within,
    schema_cases,
)


@dataclass
class Counts:
    """A slice's part of the whole-table checks."""

    rows: int
    nulls: dict[str, int]  # per `max_missing` column present
    keys: list[np.ndarray]  # per uniqueness rule (`rules`): a uint64 hash of each row's key


def rules(table: DictConfig) -> list[list[str]]:
    """The uniqueness rules: each `unique: true` column, then the table's `unique` key."""
    out = [[str(c)] for c, spec in table.columns.items() if spec.unique]
    return out + ([list(table.unique)] if table.unique else [])


def counts(table: DictConfig, frame: pd.DataFrame) -> Counts:
    """One slice (parsed, as its contract checks it) reduced for the whole-table checks."""
    keys = []
    for rule in rules(table):
        present = [c for c in rule if c in frame]  # as Pandera: a missing column is the row checks' finding
        keys.append(_hash(frame[present]) if present else np.zeros(len(frame), np.uint64))
    bounded = [c for c, spec in table.columns.items() if spec.max_missing is not None and c in frame]
    return Counts(len(frame), {c: int(frame[c].isna().sum()) for c in bounded}, keys)


def _hash(frame: pd.DataFrame) -> np.ndarray:
    """pandas' row hash: it holds equal what pandas' duplicate check does (-0.0 and 0.0, every
    NaN; tested), so rows with equal keys always share a hash."""
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def cases(name: str, table: DictConfig, frame: pd.DataFrame, parts: list[Counts]) -> pd.DataFrame:
    """The whole-table failure cases of `frame` (the whole table, its rows numbered from 0)
    from its slices' `Counts`, in slice order."""
    rows = sum(p.rows for p in parts)
    found = []
    repeated = np.zeros(rows, dtype=bool)
    for i in range(len(rules(table))):
        repeated |= pd.Series(np.concatenate([p.keys[i] for p in parts])).duplicated(keep=False).to_numpy()
    if repeated.any():
        found.append(schema_cases(compile_schema(name, table, "unique"), frame[repeated]))
    failed = []  # (schema context, column, the check's own name) of each whole-table count out of bounds
    for col, spec in table.columns.items():
        if spec.max_missing is not None and all(col in p.nulls for p in parts):
            if not missing_within(sum(p.nulls[col] for p in parts), rows, spec.max_missing):
                failed.append(("Column", str(col), missing_check(spec.max_missing).error))
    count = rows_check(table)
    if count is not None and not rows_within(rows, table.min_rows, table.max_rows):
        failed.append(("DataFrameSchema", name, count.error))
    counted = pd.DataFrame(failed, columns=["schema_context", "column", "check"])
    found.append(counted.assign(failure_case=False, index=None))
    return join_cases(found)
