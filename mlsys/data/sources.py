"""Upstream sources declared in `data.sources`: read them, parse their times (the snapshot's
bookkeeping, which must stay light, is `mlsys.data.snapshot`)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.data.snapshot import source_path
from mlsys.errors import ConfigError, ContractError
from mlsys.io import require

TRUNCATED_LINE = "truncated_line"


def read_source(
    name: str, src: DictConfig, root: Path, text: list[str] | None = None
) -> tuple[pd.DataFrame, list[int]]:
    """Read a source as it is upstream (no parsing: the snapshot keeps raw values; a CSV's
    `text` columns, those its contract declares `str`, are read as text), and the
    rows of a CSV's last line if it looks cut (no final newline, or fewer fields than the
    header): pandas would fill such a line with NaN; it is kept, to be quarantined.

    A file that cannot be read as its format (empty, binary garbage, a broken archive) is a
    ContractError naming the source and the file."""
    import pyarrow as pa

    if src.kind == "sql":
        return read_sql(name, src, root), []
    path = require(source_path(name, src, root), f"data.sources.{name}.path")
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes or src.kind == "parquet":
        fmt = "Parquet"
    elif reads_as_csv(src):
        fmt = "CSV"
    else:
        raise ConfigError(f"data.sources.{name}.path: cannot tell the format of {path} (expected .csv or .parquet)")
    try:
        if fmt == "Parquet":
            return pd.read_parquet(path), []
        frame = pd.read_csv(path, dtype=dict.fromkeys(text or [], "str"))
    except pd.errors.EmptyDataError as exc:
        raise ContractError(f"data.sources.{name}: {path} is empty (no header, no rows)") from exc
    except (ValueError, UnicodeDecodeError, OSError, EOFError, zipfile.BadZipFile, pa.ArrowException) as exc:
        raise ContractError(f"data.sources.{name}: {path} is not a readable {fmt} file: {exc}") from exc
    cut = len(frame) > 0 and suffixes.endswith(".csv") and _cut_last_line(path)
    return frame, [len(frame) - 1] if cut else []


def reads_as_csv(src: DictConfig) -> bool:
    """The source is read as CSV (a `.csv` file, zipped or not, or `kind: csv`)."""
    suffixes = "".join(Path(src.path or "").suffixes).lower()
    return (
        src.kind != "sql"
        and ".parquet" not in suffixes
        and src.kind != "parquet"
        and (".csv" in suffixes or src.kind == "csv")
    )


_SQL_READS: dict[tuple[str, str, str], pd.DataFrame] = {}  # one query per snapshot: fingerprinted, then taken


def _engine_url(src: DictConfig, root: Path) -> Any:
    """The source's URL, a relative SQLite file resolved against the project root."""
    from sqlalchemy.engine import make_url

    url = make_url(src.url)
    if url.drivername.startswith("sqlite") and url.database and not Path(url.database).is_absolute():
        url = url.set(database=str(root / url.database))
    return url


def read_sql(name: str, src: DictConfig, root: Path) -> pd.DataFrame:
    """The rows of `src.query` (SQLAlchemy; read once per snapshot, see `sql_fingerprint`).
    An unreachable database or a failing query is a ContractError naming the source and the
    URL (its password hidden)."""
    import sqlalchemy as sa

    key = (name, src.url, src.query)
    if key in _SQL_READS:
        return _SQL_READS.pop(key)
    url = _engine_url(src, root)
    try:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as con:
                return pd.read_sql_query(sa.text(src.query), con)
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError, ImportError) as exc:
        shown = url.render_as_string(hide_password=True)
        raise ContractError(f"data.sources.{name}: the query on {shown} failed: {exc}") from exc


def sql_fingerprint(name: str, src: DictConfig, root: Path) -> dict[str, Any]:
    """A SQL source's version: the sha256 of its rows (values, columns and types), with the
    row count and where they came from; the frame is kept for the snapshot to take."""
    import hashlib

    frame = read_sql(name, src, root)
    _SQL_READS[(name, src.url, src.query)] = frame
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    origin = f"{_engine_url(src, root).render_as_string(hide_password=True)} :: {src.query}"
    return {"sha256": digest.hexdigest(), "bytes": len(frame), "rows": len(frame), "origin": origin}


def _cut_last_line(path: Path) -> bool:
    """A plain CSV whose last line has no newline, or fewer fields than its header."""
    with open(path, "rb") as fh:
        header = fh.readline()
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - (1 << 16)))
        tail = fh.read()
    if not tail.endswith((b"\n", b"\r")):
        return True
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]

    def fields(line: bytes) -> int:
        return len(next(csv.reader([line.decode("utf-8", "replace").rstrip("\r\n")]), []))

    return fields(last) < fields(header)


def failure_cases(column: str, check: str, values: pd.Series) -> pd.DataFrame:
    """Row failures found outside Pandera (unparseable times, truncated lines, impossible
    dates), in the shape of Pandera's failure cases, so they are quarantined alike."""
    return pd.DataFrame(
        {
            "schema_context": "Column",
            "column": column,
            "check": check,
            "failure_case": values.astype(str).to_numpy(),
            "index": values.index.to_numpy(),
        }
    )


def localize(naive: pd.Series, tz: str) -> tuple[pd.Series, dict[str, int]]:
    """Local wall-clock times -> instants, by one rule everywhere: a time that occurs twice
    (clocks fall back) is its first occurrence, a time that does not exist (clocks spring
    forward) moves forward by the gap; both are counted, never dropped or quarantined."""
    first = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
    second = naive.dt.tz_localize(tz, ambiguous=np.zeros(len(naive), dtype=bool), nonexistent="shift_forward")
    gap = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="NaT")
    present = naive.notna()
    counts = {"ambiguous": int(((first != second) & present).sum()), "nonexistent": int((gap.isna() & present).sum())}
    return first, counts


# A time of day followed by a UTC offset ("10:00:00Z", "10:00-05:00", "10:00 +0530", "100000Z").
_OFFSET = r"\d{2}:?\d{2}(?::?\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


def _each_its_offset(raw: pd.Series, fmt: str | None, tz: str) -> tuple[pd.Series, dict[str, int]]:
    """Texts whose offsets differ, or some of which have none: each instant by its own offset,
    a text without one a local time in `tz` (as it reads alone, and as the server reads it;
    pandas would read it as UTC)."""
    parsed = pd.to_datetime(raw, format=fmt, errors="coerce", utc=True)
    naive = ~raw.str.contains(_OFFSET, na=True)
    counts = {"ambiguous": 0, "nonexistent": 0}
    if naive.any():
        try:
            alone = pd.to_datetime(raw[naive], format=fmt, errors="coerce")
        except ValueError:  # some carried an offset after all, in a form not above: as pandas read them
            return parsed, counts
        if not isinstance(alone.dtype, pd.DatetimeTZDtype) and alone.dtype != object:
            alone, counts = localize(alone, tz)
            parsed[naive] = alone.dt.tz_convert("UTC")
    return parsed, counts


def parse_times(frame: pd.DataFrame, src: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, int]]]:
    """Parse declared time columns to UTC; return the frame, failure cases for values that
    were present but unparseable (so they are quarantined, not nulled), and per column how
    many local times were ambiguous or nonexistent (`localize`'s rule)."""
    failures, local = [], {}
    frame = frame.copy()
    for col, spec in src.time_columns.items():
        if col not in frame.columns:
            continue  # the contract reports the missing column
        raw = frame[col]
        if isinstance(raw.dtype, pd.DatetimeTZDtype):
            parsed = raw.dt.tz_convert("UTC")
        else:
            fmt = None if spec.format == "infer" else spec.format
            try:
                parsed = pd.to_datetime(raw, format=fmt, errors="coerce", utc=spec.tz == "UTC")
            except ValueError:  # pandas 3: offsets that differ (a local zone's, across DST)
                parsed = None
            if parsed is None or (not isinstance(parsed.dtype, pd.DatetimeTZDtype) and parsed.dtype == object):
                parsed, local[col] = _each_its_offset(raw, fmt, spec.tz)
            elif isinstance(parsed.dtype, pd.DatetimeTZDtype):  # the text carried its offset
                parsed = parsed.dt.tz_convert("UTC")
            else:
                parsed, local[col] = localize(parsed, spec.tz)
                parsed = parsed.dt.tz_convert("UTC")
        frame[col] = parsed.astype("datetime64[us, UTC]")
        bad = raw.notna() & parsed.isna()
        if bad.any():
            failures.append(failure_cases(col, f"parse_timestamp(format={spec.format!r}, tz={spec.tz!r})", raw[bad]))
    return frame, (pd.concat(failures, ignore_index=True) if failures else pd.DataFrame()), local
