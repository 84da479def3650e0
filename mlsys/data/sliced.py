"""The validate and build stages on a Dask cluster (`engine: dask`), slice by slice; with
`engine: local`, the same functions do the whole table here.

**validate**: a raw table is cut into slices of rows; each slice is parsed (declared times,
derived columns) and checked row by row (`mlsys.contracts.row_cases`: types, bounds, sets,
patterns, custom row checks) on a worker, and only its failure cases come back, with the
slice's counts for the checks only the whole table can answer (uniqueness, missing share, row
count: `mlsys.contracts.whole`, reductions over the slices). Meanwhile the stage parses the
whole table itself (it writes it, and parsing is cheaper than shipping the parsed slices back)
and runs a user's `python_schema` on it (it may check across rows); the counts are reduced
here, the quarantine share judged, and the report assembled as the local engine's is: the same
passed rows, quarantine and report.

**build**: the primary table is cut into slices of equal rows by event time; each slice is
sent with the rows its point-in-time aggregates read around it (`mlsys.data.build.context`: a look-back and
look-ahead from the config and the data's observation delays) and the joined tables
(broadcast whole), joined and aggregated on a worker, and only its own rows come back. The
built table equals the local engine's: the same joins, the same windows over the same rows
(a window's sum is a difference of prefix sums over other prefixes, so a non-integer `sum` /
`mean` may differ from the local one in the last bit).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.cluster import cuts, partitions, stream
from mlsys.contracts import ValidationResult, join_cases, row_cases, user_cases, validate_table, whole
from mlsys.data.build import BuildResult, context, enrich, finish, invalid_event_times, prepare
from mlsys.data.columns import EVENT_TIME, NUMERIC_DTYPES
from mlsys.data.derive import Deriver
from mlsys.data.sources import TRUNCATED_LINE, failure_cases, parse_times

LocalTimes = dict[str, dict[str, int]]


def parse(name: str, raw: pd.DataFrame, cfg: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame, LocalTimes]:
    """A raw table, or a slice of it (its index kept), as its contract checks it: declared
    times and numbers read as text parsed, derived columns computed (primary); the failures
    found before Pandera (unparseable times and numbers, impossible event times); local times
    read by the one rule."""
    parsed, times, local_times = parse_times(raw, cfg.data.sources[name])
    parsed, numbers = parse_numbers(parsed, cfg.contract.tables[name])
    cases = [times, numbers]
    if name == cfg.data.primary:
        parsed = Deriver(cfg.data.derived).frame(parsed)  # before the contract: it may bound them
        bad = invalid_event_times(parsed, cfg.data.event_time)
        if bad.any():
            cols = [c for c in cfg.data.event_time.parts.values() if not isinstance(c, int)]
            values = parsed.loc[bad, cols].astype(str).agg(" ".join, axis=1)
            cases.append(failure_cases(f"({', '.join(cols)})", "forms_a_local_time", values))
    return parsed, join_cases(cases), local_times


def parse_numbers(frame: pd.DataFrame, table: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Columns the contract declares numeric that were read as text (a CSV with `ERR` or `--`
    in a few cells): the numbers parsed, and failure cases for the cells that are not numbers,
    so their rows are quarantined instead of the whole table failing its dtype."""
    failures = []
    for col, spec in table.columns.items():
        if col not in frame.columns or not str(spec.dtype or "").startswith(NUMERIC_DTYPES):
            continue
        raw = frame[col]
        if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
            continue
        text = raw.where(raw.astype(str).str.strip() != "", None)
        numbers = pd.to_numeric(text, errors="coerce", dtype_backend="numpy_nullable")  # integers stay exact
        bad = text.notna() & numbers.isna()
        if bad.any():
            failures.append(failure_cases(col, "parse_number", raw[bad]))
        if not (numbers.isna().any() and str(spec.dtype).startswith(("int", "uint"))):
            numbers = numbers.astype(spec.dtype)  # an int64 with gaps stays Int64 until their rows are quarantined
        frame = frame.assign(**{col: numbers})
    return frame, (pd.concat(failures, ignore_index=True) if failures else pd.DataFrame())


def validate(
    name: str, raw: pd.DataFrame, cut: list[int], cfg: DictConfig, dask: Any = None
) -> tuple[ValidationResult, LocalTimes]:
    """Table `name` as read (`raw`; `cut`: rows of a cut last line) against its contract:
    here, or slice by slice on the cluster of the Dask client `dask`."""
    table = cfg.contract.tables[name]
    cut_cases = failure_cases("<line>", TRUNCATED_LINE, pd.Series("no final newline or too few fields", cut))
    if dask is None:
        parsed, cases, local_times = parse(name, raw, cfg)
        return validate_table(name, table, parsed, join_cases([cases, cut_cases]), raw=raw), local_times
    raw = raw.reset_index(drop=True)
    rows = cuts(len(raw), partitions(len(raw), cfg.engine.dask, dask))
    with ThreadPoolExecutor(1) as pool:  # the slices go out and come back while the table is parsed here
        checking = pool.submit(stream, dask, _check_slice, (raw.iloc[a:b] for a, b in rows), name, cfg, total=len(rows))
        # Parsed here too: it is written from here, and parsing it (vectorized, row by row)
        # costs less than bringing the workers' parsed slices back (1M flights: 0.4 s vs 0.8 s).
        parsed, cases, local_times = parse(name, raw, cfg)
        users = user_cases(name, table, parsed)
        checked = checking.result()
    wide = whole.cases(name, table, parsed, [c for _, c in checked])
    found = join_cases([*(f for f, _ in checked), wide, users, cases, cut_cases])
    return validate_table(name, table, parsed, found, raw=raw, sliced=True), local_times


def _check_slice(raw: pd.DataFrame, name: str, cfg: DictConfig) -> tuple[pd.DataFrame, whole.Counts]:
    """One slice parsed and checked row by row (failure cases indexed by the table's row
    numbers) and reduced for the whole-table checks."""
    table = cfg.contract.tables[name]
    parsed = parse(name, raw, cfg)[0]
    return row_cases(name, table, parsed), whole.counts(table, parsed)


def build(
    tables: dict[str, pd.DataFrame], data: DictConfig, as_of: pd.Timestamp | None, cfg: DictConfig, dask: Any = None
) -> BuildResult:
    """`mlsys.data.build.build` here, or its joins and aggregates time slice by time slice on
    the cluster of the Dask client `dask` (`cfg`: the `engine` section)."""
    frame, local_times = prepare(tables, data)
    if dask is None or frame.empty:  # no rows: nothing to slice
        return finish(enrich(frame, tables, data), data, as_of, local_times)
    back, ahead = context(frame, data)
    joined = {j.source: tables[j.source] for j in [*data.asof_joins, *data.lookup_joins]}
    event = frame[EVENT_TIME].to_numpy("datetime64[ns]")
    known = ~np.isnat(event)
    frame = frame.assign(_pos=np.arange(len(frame)))
    n = partitions(len(frame), cfg.dask, dask)
    # Slices of equal rows by event time; an event-less row goes to the last (joined, never aggregated).
    edges = np.quantile(event[known].astype(np.int64), np.linspace(0, 1, n + 1)[1:-1]) if known.any() else []
    edges = np.asarray(edges).astype("datetime64[ns]")
    slot = np.where(known, np.searchsorted(edges, event, side="right"), len(edges))
    shipped = dask.scatter(joined, broadcast=True, hash=False)

    def slices() -> Iterator[pd.DataFrame]:  # made as the cluster takes them: never all at once
        for i in range(len(edges) + 1):
            lo = edges[i - 1] - back.to_timedelta64() if i else None
            hi = edges[i] + ahead.to_timedelta64() if i < len(edges) else None
            near = known & (event >= lo if lo is not None else True) & (event < hi if hi is not None else True)
            own = slot == i
            if own.any():
                yield frame[own | near].assign(_own=own[own | near])

    count = len(np.unique(slot))
    built = stream(dask, _enrich_slice, slices(), shipped, data, total=count, description="build")
    joined_rows = pd.concat(built)
    built.clear()  # the slices' own copies go before the sort makes another
    joined_rows = joined_rows.sort_values("_pos", kind="stable").drop(columns="_pos").reset_index(drop=True)
    return finish(joined_rows, data, as_of, local_times)


def _enrich_slice(part: pd.DataFrame, tables: dict[str, pd.DataFrame], data: DictConfig) -> pd.DataFrame:
    """One time slice joined and aggregated with its context rows; its own rows kept."""
    out = enrich(part.drop(columns="_own"), tables, data)
    return out[part["_own"].to_numpy()]
