"""SQLite files the service reads: the online feature table and the batch prediction store.

Both are keyed by the entity: the `data.key` columns joined with '|'. The prediction store
holds one table per model version (`predictions_<version>`), so a rollback switches table
instead of serving the rolled-back model's scores; a batch replaces its version's table in
one transaction (readers see the old table or the new one, never a mix), so a batch that
fails its checks leaves the previous predictions in place.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsys.io import atomic_write

SEP = "|"


def entity(record: Mapping[str, Any], key: Sequence[str]) -> str:
    return SEP.join(str(record[k]) for k in key)


def share_of(key: str, salt: str) -> float:
    """Where an entity falls in [0, 1), by a hash of its key: the same entity always falls in
    the same place (a canary or a holdout share is a fixed set of entities, not of requests)."""
    digest = hashlib.blake2b(f"{salt}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def holdout_share(loops: Any) -> float:
    """The share of entities held out (`data.feedback_loops`): its holdout when a loop is declared."""
    return float(loops.holdout) if loops.own_inputs or loops.other_models else 0.0


def entities(frame: pd.DataFrame, key: Sequence[str]) -> list[str]:
    cols = [frame[k].astype(str).tolist() for k in key]
    return [SEP.join(parts) for parts in zip(*cols, strict=True)]


def _plain(v: Any) -> Any:
    """A SQLite-storable value (None for missing)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v


def write_online(path: Path, frame: pd.DataFrame, key: Sequence[str], columns: list[str], example: dict) -> Path:
    """Online feature table: entity -> the looked-up columns, written to a new file then
    renamed; its meta holds each column's kind, an example request, its version (a hash of
    its content: the request log records which table a row was served from) and when it
    was built."""
    kinds = {c: "numeric" if pd.api.types.is_numeric_dtype(frame[c]) else "categorical" for c in columns}
    content = pd.util.hash_pandas_object(frame[[*key, *columns]], index=False).to_numpy()
    version = hashlib.sha256(content.tobytes()).hexdigest()[:12]
    built_at = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")

    def write(tmp: Path) -> None:
        con = sqlite3.connect(tmp)
        cols = ", ".join(["entity TEXT PRIMARY KEY", *(f'"{c}"' for c in columns)])  # none: a one-table dataset
        con.execute(f"CREATE TABLE features ({cols}) WITHOUT ROWID")
        rows = zip(entities(frame, key), *(map(_plain, frame[c].tolist()) for c in columns), strict=True)
        con.executemany(f"INSERT INTO features VALUES ({', '.join('?' * (len(columns) + 1))})", rows)
        con.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('columns', ?)", (json.dumps(kinds),))
        con.execute("INSERT INTO meta VALUES ('example', ?)", (json.dumps(example, default=str),))
        con.executemany("INSERT INTO meta VALUES (?, ?)", [("version", version), ("built_at", built_at)])
        con.commit()
        con.close()

    return atomic_write(path, write)


def predictions_table(version: str) -> str:
    """The store's table of one model version's predictions."""
    from mlsys.release.registry import check_version

    return f"predictions_{check_version(version)}"


def write_predictions(
    path: Path,
    ids: list[str],
    values: np.ndarray,
    columns: Sequence[str],
    version: str,
    meta: dict[str, Any],
    keep: Sequence[str],
) -> None:
    """Replace `version`'s predictions table in one transaction (the previous one stays on
    failure): a row per entity, a REAL column per number of the answer (`columns`, the
    task's: score, prediction, or one per class). Tables of versions not in `keep` (the
    registry's kept versions) are dropped."""
    values = np.asarray(values, dtype="float64").reshape(len(ids), len(columns))
    table = predictions_table(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")  # readers keep reading while the batch writes
        con.execute("BEGIN IMMEDIATE")
        con.execute(f'DROP TABLE IF EXISTS "{table}_new"')
        numbers = ", ".join(f'"{c}" REAL NOT NULL' for c in columns)
        con.execute(
            f'CREATE TABLE "{table}_new" (entity TEXT PRIMARY KEY, {numbers}, created_at TEXT NOT NULL) WITHOUT ROWID'
        )
        at, marks = meta["created_at"], ", ".join("?" * (len(columns) + 2))
        con.executemany(
            f'INSERT INTO "{table}_new" VALUES ({marks})',
            ((i, *map(float, row), at) for i, row in zip(ids, values, strict=True)),
        )
        con.execute(f'DROP TABLE IF EXISTS "{table}"')
        con.execute(f'ALTER TABLE "{table}_new" RENAME TO "{table}"')
        kept = {predictions_table(v) for v in [*keep, version]}
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for name in names:
            if name.startswith("predictions") and name not in kept:  # incl. the unversioned table of before
                con.execute(f'DROP TABLE "{name}"')
        con.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"batch:{version}", json.dumps(meta, default=str)))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


class Reader:
    """Thread-safe point lookups in one SQLite file (one read-only connection per thread).
    A missing or unreadable file raises `sqlite3.Error`: the caller decides what that means."""

    def __init__(self, path: Path, query: str) -> None:
        self.path, self.query = Path(path), query
        self._local = threading.local()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.con = con
        return con

    def one(self, *args: Any) -> tuple | None:
        return self._con().execute(self.query, args).fetchone()

    def all(self, query: str, args: Iterable[Any] = ()) -> list[tuple]:
        return self._con().execute(query, tuple(args)).fetchall()


class MemoryTable:
    """An online table read whole into a dict (entity -> its row, as SQLite returns it): a
    lookup is a dict get instead of a SQLite query (~10 µs, a sixth of a one-record answer).
    The SQLite file stays the table of record; the service rereads it when it changes."""

    def __init__(self, reader: Reader) -> None:
        self.path = reader.path
        self.rows = {row[0]: row for row in reader.all("SELECT * FROM features")}

    def one(self, key: str) -> tuple | None:
        return self.rows.get(key)


def online_reader(
    path: Path, memory_rows: int = 0
) -> tuple[Reader | MemoryTable, dict[str, str], dict[str, Any], dict[str, str]]:
    """A reader of the online feature table (in memory when it has at most `memory_rows`
    rows), its columns' kinds, its example request and its version and build time;
    `sqlite3.Error` if the file is missing or is not a readable online table."""
    if not Path(path).is_file():
        raise sqlite3.OperationalError("missing")
    reader = Reader(path, "SELECT * FROM features WHERE entity = ?")
    meta = dict(reader.all("SELECT name, value FROM meta"))
    reader.all("SELECT * FROM features LIMIT 1")  # the table is there and its pages read
    stamp = {k: meta[k] for k in ("version", "built_at") if k in meta}
    small = memory_rows > 0 and reader.all("SELECT count(*) FROM features")[0][0] <= memory_rows
    table = MemoryTable(reader) if small else reader
    return table, json.loads(meta.get("columns", "{}")), json.loads(meta.get("example", "{}")), stamp


def prediction_reader(path: Path, version: str, columns: Sequence[str]) -> Reader:
    """Point lookups of `version`'s batch predictions: (*columns, created_at)."""
    numbers = ", ".join(f'"{c}"' for c in columns)
    return Reader(path, f'SELECT {numbers}, created_at FROM "{predictions_table(version)}" WHERE entity = ?')


def has_predictions(path: Path, version: str) -> bool:
    """Whether the store holds a table of `version`'s predictions (False if it is unreadable)."""
    if not Path(path).is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            found = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (predictions_table(version),)
            ).fetchone()
    except sqlite3.Error:
        return False
    return found is not None
