"""SQLite files the service reads: the online feature table and the batch prediction store.

Both are keyed by the entity: the `data.key` columns joined with '|'. The prediction store
replaces its table in one transaction (readers see the old table or the new one, never a
mix), so a batch that fails its checks leaves the previous predictions in place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsys.io import atomic_write

SEP = "|"


def entity(record: Mapping[str, Any], key: Sequence[str]) -> str:
    return SEP.join(str(record[k]) for k in key)


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
    renamed; its meta holds each column's kind and an example request."""
    kinds = {c: "numeric" if pd.api.types.is_numeric_dtype(frame[c]) else "categorical" for c in columns}

    def write(tmp: Path) -> None:
        con = sqlite3.connect(tmp)
        cols = ", ".join(f'"{c}"' for c in columns)
        con.execute(f"CREATE TABLE features (entity TEXT PRIMARY KEY, {cols}) WITHOUT ROWID")
        rows = zip(entities(frame, key), *(map(_plain, frame[c].tolist()) for c in columns), strict=True)
        con.executemany(f"INSERT INTO features VALUES ({', '.join('?' * (len(columns) + 1))})", rows)
        con.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('columns', ?)", (json.dumps(kinds),))
        con.execute("INSERT INTO meta VALUES ('example', ?)", (json.dumps(example, default=str),))
        con.commit()
        con.close()

    return atomic_write(path, write)


def write_predictions(path: Path, ids: list[str], scores: np.ndarray, version: str, meta: dict[str, Any]) -> None:
    """Replace the predictions table in one transaction (the previous one stays on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")  # readers keep reading while the batch writes
        con.execute("BEGIN IMMEDIATE")
        con.execute("DROP TABLE IF EXISTS predictions_new")
        con.execute(
            "CREATE TABLE predictions_new (entity TEXT PRIMARY KEY, score REAL NOT NULL, "
            "model_version TEXT NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID"
        )
        at = meta["created_at"]
        con.executemany(
            "INSERT INTO predictions_new VALUES (?, ?, ?, ?)",
            ((i, float(s), version, at) for i, s in zip(ids, scores, strict=True)),
        )
        con.execute("DROP TABLE IF EXISTS predictions")
        con.execute("ALTER TABLE predictions_new RENAME TO predictions")
        con.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('batch', ?)", (json.dumps(meta, default=str),))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


class Reader:
    """Thread-safe point lookups in one SQLite file (one read-only connection per thread)."""

    def __init__(self, path: Path, query: str) -> None:
        self.path, self.query = Path(path), query
        self._local = threading.local()

    def _con(self) -> sqlite3.Connection | None:
        con = getattr(self._local, "con", None)
        if con is None and self.path.exists():
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.con = con
        return con

    def one(self, *args: Any) -> tuple | None:
        con = self._con()
        if con is None:
            return None
        try:
            return con.execute(self.query, args).fetchone()
        except sqlite3.OperationalError:  # e.g. no table yet
            return None

    def all(self, query: str, args: Iterable[Any] = ()) -> list[tuple]:
        con = self._con()
        return [] if con is None else con.execute(query, tuple(args)).fetchall()


def online_reader(path: Path) -> tuple[Reader, dict[str, str], dict[str, Any]]:
    """A reader of the online feature table, its columns' kinds and its example request."""
    reader = Reader(path, "SELECT * FROM features WHERE entity = ?")
    meta = dict(reader.all("SELECT name, value FROM meta")) if Path(path).exists() else {}
    return reader, json.loads(meta.get("columns", "{}")), json.loads(meta.get("example", "{}"))


def prediction_reader(path: Path) -> Reader:
    return Reader(path, "SELECT score, model_version, created_at FROM predictions WHERE entity = ?")
