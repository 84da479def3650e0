"""`mlsys monitor` over a large request log on a Dask cluster (`engine: dask`): the log's files
are read on the workers (the log must be on storage they share), the window is found from each
file's newest prediction time, and only the records monitoring reads come back - the window,
the window as long before it (drift and volume compare with it) and the refusals received
while the window's records were. The checks then run as they do locally, on the same records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsys.serving.log import LogFile, LogRead, combine, log_files, read_file

Bounds = tuple[pd.Timestamp | None, pd.Timestamp | None]


def _emptied(f: LogFile) -> LogFile:
    return replace(f, table=None)


def _newest(f: LogFile) -> pd.Timestamp | None:
    """The latest prediction time of an answered file."""
    if f.kind != "answered" or f.table is None or "prediction_time" not in f.table.column_names:
        return None
    newest = pc.max(f.table["prediction_time"]).as_py()
    return pd.Timestamp(newest) if newest is not None else None


def _between(f: LogFile, column: str, lo: Any, hi: Any, closed: bool) -> LogFile:
    """`f` with the rows whose `column` lies in [lo, hi) ([lo, hi] when `closed`)."""
    values = f.table[column]
    lo, hi = pa.scalar(lo, type=values.type), pa.scalar(hi, type=values.type)
    upper = pc.less_equal(values, hi) if closed else pc.less(values, hi)
    return replace(f, table=f.table.filter(pc.and_(pc.greater_equal(values, lo), upper)))


def _within(f: LogFile, lo: pd.Timestamp, until: pd.Timestamp) -> LogFile:
    """Answers and shadow answers predicted in [lo, until); refusals left for `_received`."""
    if f.table is None or f.kind == "refused" or "prediction_time" not in f.table.column_names:
        return replace(f, table=None) if f.kind == "refused" else f
    return _between(f, "prediction_time", lo, until, closed=False)


def _received(f: LogFile, first: pd.Timestamp, last: pd.Timestamp) -> LogFile | None:
    """A refusals file cut to those received in [first, last]."""
    return _between(f, "received_at", first, last, closed=True) if f.kind == "refused" and f.table is not None else None


def read_window(dask: Any, root: Path, bounds: Callable[[pd.Series], Bounds]) -> tuple[LogRead, *Bounds]:
    """The request log under `root` read on the cluster of `dask`, cut to what monitoring
    reads; `bounds(newest times)` gives the window [since, until)."""
    read = [dask.submit(read_file, path, pure=False) for path in log_files(root)]
    newest = [t for t in dask.gather([dask.submit(_newest, f, pure=False) for f in read]) if t is not None]
    since, until = bounds(pd.Series(newest, dtype="datetime64[us, UTC]"))
    if since is None:  # no answer logged: no window, nothing to bring back
        return combine(root, dask.gather([dask.submit(_emptied, f, pure=False) for f in read])), since, until
    kept = dask.gather([dask.submit(_within, f, since - (until - since), until, pure=False) for f in read])
    window = [
        _between(f, "prediction_time", since, until, closed=False).table
        for f in kept
        if f.kind == "answered" and f.table is not None and "prediction_time" in f.table.column_names
    ]
    received = [t["received_at"] for t in window if t is not None and t.num_rows]
    if received:
        first = min(pc.min(r).as_py() for r in received)
        last = max(pc.max(r).as_py() for r in received)
        refusals = dask.gather([dask.submit(_received, f, first, last, pure=False) for f in read])
        kept = [r if r is not None else f for f, r in zip(kept, refusals, strict=True)]
    return combine(root, kept), since, until
