"""The request log: what the service saw and answered, one row per scored record, in Arrow
IPC stream files (`paths.request_log/<UTC day>/<time>-<pid>-<n>.arrows`).

The request path only samples and enqueues one entry per request (`put`, about a
microsecond; the queue is bounded: when it is full the request is dropped from the log and
counted in `/metrics`, never waited on). One writer thread turns entries into columns and
writes a record batch every `flush_rows` records or `flush_seconds`, whichever comes first.
A stream file is readable up to its last complete batch (Parquet's footer would be lost to a
crash), so a `kill -9` loses at most one flush; `close` drains the queue (a graceful stop
loses nothing). Files rotate by UTC day, by size, and when the served model's features
change (one schema per file).

Each row: `received_at` (wall clock), `prediction_time` (the event's, from the request: a
replay of 2013 is judged in 2013), the entity, the model version, the online table's
version, the path (static/dynamic), latency; the request's fields as `input.<name>`, the
answer's numbers as `answer.<column>` (the task's), and the model's features as
`feature.<name>` (dynamic path). Personal fields (`pii`) are written as `PII`, in the writer
thread; a personal model input stays in `feature.*` as its encoded value, so skew checks work.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter

from mlsys.contracts import PII
from mlsys.data.build import event_time_of
from mlsys.data.columns import ANSWER, FEATURE, INPUT
from mlsys.durations import parse_duration
from mlsys.errors import MissingInputError

_STOP = object()
SUFFIX = ".arrows"
_TYPES = {"numeric": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "text": pa.string()}


@dataclass(frozen=True)
class Entry:
    """One request's scored records, as the request path hands them over (nothing copied)."""

    received_at: float  # time.time()
    latency_ms: float
    version: str
    online_version: str | None
    task: Any  # mlsys.tasks.Task: the answer's numbers
    records: list[dict[str, Any]]
    results: list[dict[str, Any]]  # entity, answer, path; `_features`: (names, row) on the dynamic path


@dataclass(frozen=True)
class LogSpec:
    """What the writer needs from the config: each request field's kind (numeric, int, bool,
    text: the column reads back with its declared dtype), the personal ones, and how to find
    a record's prediction time."""

    inputs: dict[str, str]
    pii: frozenset[str]
    event_time: Mapping[str, Any]  # mlsys.data.build.event_time_spec
    lead: pd.Timedelta
    derive: Any = None  # Deriver.record, when the event time reads a derived column

    @classmethod
    def from_config(cls, cfg: Any) -> LogSpec:
        from mlsys.contracts import pii_columns
        from mlsys.data.build import event_time_spec
        from mlsys.data.checks import dtype_kind
        from mlsys.data.derive import Deriver
        from mlsys.data.snapshot import text_columns
        from mlsys.serving.request import lookup_specs, serving_table

        kinds = {name: kind for name, (kind, _) in lookup_specs(cfg).items()}
        inputs = {}
        for name, spec in serving_table(cfg).columns.items():
            dtype = str(spec.dtype or "")
            kind = kinds.get(name) or ("bool" if dtype == "bool" else dtype_kind(dtype))
            if kind == "numeric" and dtype.lower().startswith("int"):
                kind = "int"
            inputs[name] = kind if kind in _TYPES else "text"
        pii = frozenset(pii_columns(cfg))
        inputs.update(dict.fromkeys(pii & set(inputs), "text"))  # written as the marker
        spec = event_time_spec(cfg.data)
        reads = {spec["column"], *spec["parts"].values()} & set(cfg.data.derived)
        derive = None
        if reads:
            derive = Deriver(cfg.data.derived, text_columns(cfg.contract.tables[cfg.data.primary])).record
        return cls(inputs, pii, spec, parse_duration(cfg.data.prediction_lead), derive)

    def prediction_time(self, record: dict[str, Any]) -> int | None:
        """Microseconds since the epoch (UTC) of the record's prediction time, None if it has none."""
        try:
            event = event_time_of(self.derive(record) if self.derive else record, self.event_time)
        except (KeyError, TypeError, ValueError):
            return None
        return None if pd.isna(event) else int((event - self.lead).value // 1000)


def _column(values: list[Any], kind: str) -> pa.Array:
    if kind == "text":
        values = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return pa.array(values, type=_TYPES[kind])


class RequestLog:
    def __init__(
        self,
        root: Path,
        spec: LogSpec,
        sample_rate: float,
        flush_rows: int = 2000,
        flush_seconds: float = 1.0,
        rotate_bytes: int = 64_000_000,
        max_queue: int = 10_000,
        registry: CollectorRegistry | None = None,
        seed: int | None = None,
    ) -> None:
        self.root, self.spec, self.rate = Path(root), spec, sample_rate
        self.flush_rows, self.flush_seconds, self.rotate_bytes = flush_rows, flush_seconds, rotate_bytes
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._random = random.Random(seed)
        r = registry or CollectorRegistry()
        self.written = Counter("mlsys_request_log_records", "Records written to the request log", registry=r)
        self.dropped = Counter("mlsys_request_log_dropped", "Requests not logged: the log's queue was full", registry=r)
        self.failed = Counter("mlsys_request_log_errors", "Log flushes that failed (records lost)", registry=r)
        self._writer: Any = None
        self._file: tuple[Any, str, tuple] | None = None  # (sink, day, schema key)
        self._files = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def put(self, entry: Entry) -> bool:
        """Queue `entry` if sampled and there is room (else count the drop); True if queued."""
        if self.rate < 1.0 and self._random.random() >= self.rate:
            return False
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped.inc()
            return False
        return True

    # --- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        pending: list[Entry] = []
        rows, deadline = 0, time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                item = None
            if item is not None and item is not _STOP:
                pending.append(item)
                rows += len(item.results)
            if item is _STOP or rows >= self.flush_rows or time.monotonic() >= deadline:
                if pending:
                    self._flush(pending)
                pending, rows, deadline = [], 0, time.monotonic() + self.flush_seconds
            if item is _STOP:
                self._close_file()
                return

    def _flush(self, entries: list[Entry]) -> None:
        try:
            for key, batch in self._batches(entries):
                self._write(key, batch)
                self.written.inc(batch.num_rows)
        except Exception as exc:  # the log never takes the service down; the loss is counted
            self.failed.inc()
            print(f"serve: request log flush failed ({type(exc).__name__}: {exc})", flush=True)

    def _batches(self, entries: list[Entry]) -> Iterable[tuple[tuple, pa.RecordBatch]]:
        """Record batches of `entries`, one per (UTC day, features, answer columns)."""
        groups: dict[tuple, list[tuple[Entry, dict, dict]]] = {}
        for e in entries:
            day = datetime.fromtimestamp(e.received_at, UTC).date().isoformat()
            for rec, res in zip(e.records, e.results, strict=True):
                names = res["_features"][0] if "_features" in res else ()
                groups.setdefault((day, tuple(names), tuple(e.task.columns)), []).append((e, rec, res))
        for key, rows in groups.items():
            yield key, self._batch(key, rows)

    def _batch(self, key: tuple, rows: list[tuple[Entry, dict, dict]]) -> pa.RecordBatch:
        _, names, answers = key
        spec, pii = self.spec, self.spec.pii
        cols: dict[str, pa.Array] = {
            "received_at": pa.array([int(e.received_at * 1e6) for e, _, _ in rows], pa.timestamp("us", "UTC")),
            "prediction_time": pa.array([spec.prediction_time(r) for _, r, _ in rows], pa.timestamp("us", "UTC")),
            "entity": pa.array([res["entity"] for _, _, res in rows], pa.string()),
            "model_version": pa.array([e.version for e, _, _ in rows], pa.string()),
            "online_version": pa.array([e.online_version for e, _, _ in rows], pa.string()),
            "path": pa.array([res["path"] for _, _, res in rows], pa.string()),
            "latency_ms": pa.array([e.latency_ms for e, _, _ in rows], pa.float64()),
        }
        numbers = np.array([e.task.numbers(res) for e, _, res in rows], dtype=np.float64).reshape(len(rows), -1)
        cols.update({ANSWER + c: pa.array(numbers[:, j]) for j, c in enumerate(answers)})
        for name, kind in spec.inputs.items():
            values = [r.get(name) for _, r, _ in rows]
            if name in pii:
                values = [None if v is None else PII for v in values]
            cols[INPUT + name] = _column(values, kind)
        if names:
            matrix = np.vstack([res["_features"][1] for _, _, res in rows])
            cols.update({FEATURE + n: pa.array(matrix[:, j]) for j, n in enumerate(names)})
        return pa.RecordBatch.from_pydict(cols)

    def _write(self, key: tuple, batch: pa.RecordBatch) -> None:
        day, schema = key[0], key[1:]
        current = self._file
        if current is None or current[1] != day or current[2] != schema or current[0].tell() > self.rotate_bytes:
            self._close_file()
            folder = self.root / day
            folder.mkdir(parents=True, exist_ok=True)
            self._files += 1
            stamp = datetime.now(UTC).strftime("%H%M%S")
            sink = pa.OSFile(str(folder / f"{stamp}-{os.getpid()}-{self._files:04d}{SUFFIX}"), "wb")
            self._writer = pa.ipc.new_stream(sink, batch.schema)
            self._file = (sink, day, schema)
        self._writer.write_batch(batch)
        self._file[0].flush()

    def _close_file(self) -> None:
        if self._file is not None:
            self._writer.close()
            self._file[0].close()
            self._file, self._writer = None, None

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the file (a graceful stop loses nothing)."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)


@dataclass
class LogRead:
    frame: pd.DataFrame
    files: int
    truncated: int  # files whose last batch was cut (a crash mid-write): read up to it


def read_log(root: Path, columns: list[str] | None = None) -> LogRead:
    """Every stream file under `root` as one frame (files of other feature sets get NaN in
    the features they lack); a file cut mid-batch is read up to its last whole batch."""
    tables, truncated, named = [], 0, []
    files = sorted(Path(root).rglob(f"*{SUFFIX}")) if Path(root).is_dir() else []
    for path in files:
        batches = []
        try:
            with pa.OSFile(str(path)) as source, pa.ipc.open_stream(source) as reader:
                for batch in reader:
                    batches.append(batch)
        except (pa.ArrowInvalid, OSError):
            truncated += 1
        if batches:
            table = pa.Table.from_batches(batches)
            tables.append(table.select([c for c in columns if c in table.column_names]) if columns else table)
            named.append(path)
    if not tables:
        return LogRead(pd.DataFrame(), len(files), truncated)
    try:
        table = pa.concat_tables(tables, promote_options="permissive")  # string and large_string, int and float
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise MissingInputError(
            f"request log {root}: files {named[0]} .. {named[-1]} do not share columns: {exc}"
        ) from exc
    return LogRead(table.to_pandas(), len(files), truncated)
