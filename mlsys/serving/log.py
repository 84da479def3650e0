"""The request log: what the service saw and answered, one row per scored record, in Arrow
IPC stream files (`paths.request_log/<UTC day>/<time>-<pid>-<n>.arrows`).

The request path only samples and enqueues one entry per request (`put`, about a
microsecond, and no wake-up of the writer; the queue is bounded: when it is full the request
is dropped from the log and counted in `/metrics`, never waited on). One writer thread wakes
every `flush_seconds`, turns what is queued into columns and writes it, in record batches of
about `flush_rows` records.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from omegaconf import OmegaConf
from prometheus_client import CollectorRegistry, Counter

from mlsys.contracts import mask
from mlsys.data.build import event_time_of, event_times
from mlsys.data.columns import ANSWER, FEATURE, INPUT
from mlsys.durations import parse_duration
from mlsys.errors import MissingInputError

SUFFIX = ".arrows"
_TYPES = {"numeric": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "text": pa.string(), "time": pa.string()}
ERRORS = "errors"  # the schema key of refused and failed requests' rows
_READ = {**_TYPES, "time": pa.timestamp("us", "UTC")}  # a time field is read as a time, logged as its ISO text


@dataclass(slots=True)
class Entry:
    """One request's scored records, as the request path hands them over (nothing copied)."""

    received_at: float  # time.time()
    latency_ms: float
    version: str | None
    online_version: str | None
    task: Any  # mlsys.tasks.Task: the answer's numbers
    records: list[dict[str, Any]]
    results: list[dict[str, Any]]  # entity, answer, path
    features: list[tuple[list[str], np.ndarray] | None]  # (names, row) on the dynamic path, else None
    status: int = 200  # a refused or failed request: one row, its status and error kind, no records
    error: str | None = None
    shadow_of: str | None = None  # a shadow model's answers: the version that answered the caller


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

    @cached_property
    def schema(self) -> pa.Schema:
        """The request fields as Arrow reads them."""
        return pa.schema([(name, _READ[kind]) for name, kind in self.inputs.items()])

    @cached_property
    def _parts(self) -> Any:
        """The event-time spec as the build stage's `event_times` reads it."""
        return OmegaConf.create({k: self.event_time[k] for k in ("column", "parts", "tz")})

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
            kind = "time" if kind == "datetime" else kind
            inputs[name] = kind if kind in _TYPES else "text"
        pii = frozenset(pii_columns(cfg))
        inputs.update(dict.fromkeys(pii & set(inputs), "text"))  # written as the marker
        spec = event_time_spec(cfg.data)
        reads = {spec["column"], *spec["parts"].values()} & set(cfg.data.derived)
        derive = None
        if reads:
            derive = Deriver(cfg.data.derived, text_columns(cfg.contract.tables[cfg.data.primary])).record
        return cls(inputs, pii, spec, parse_duration(cfg.data.prediction_lead), derive)

    def prediction_times(self, records: list[dict[str, Any]]) -> pa.Array:
        """Each record's prediction time (UTC, None where it has none): from the event-time
        parts of every record at once (the build stage's rule), else record by record (the
        server's rule, `event_time_of`: a timestamp column, or parts read from derived columns)."""
        kind = pa.timestamp("us", "UTC")
        spec = self.event_time
        if not spec["column"] and self.derive is None:
            columns = [c for c in spec["parts"].values() if not isinstance(c, int)]
            frame = pd.DataFrame({c: [r.get(c) for r in records] for c in columns}, dtype="float64")
            try:
                events, _ = event_times(frame, self._parts)
            except (KeyError, TypeError, ValueError):
                return pa.nulls(len(records), kind)
            return pa.Array.from_pandas(events - self.lead, type=kind)
        out = []
        for record in records:
            try:
                event = event_time_of(self.derive(record) if self.derive else record, spec)
            except (KeyError, TypeError, ValueError):
                event = None
            out.append(None if event is None or pd.isna(event) else int((event - self.lead).value // 1000))
        return pa.array(out, kind)


def _column(values: list[Any], kind: str) -> pa.Array:
    if _TYPES[kind] == pa.string():
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
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_queue, self._stop = max_queue, threading.Event()
        self._random = random.Random(seed)
        r = registry or CollectorRegistry()
        self.written = Counter("mlsys_request_log_records", "Records written to the request log", registry=r)
        self.dropped = Counter("mlsys_request_log_dropped", "Requests not logged: the log's queue was full", registry=r)
        self.failed = Counter("mlsys_request_log_errors", "Log flushes that failed (records lost)", registry=r)
        self._files: dict[tuple, tuple[Any, Any]] = {}  # open (sink, stream writer) by (UTC day, schema)
        self._opened = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def put(self, entry: Entry) -> bool:
        """Queue `entry` if sampled and there is room (else count the drop); True if queued."""
        return self.sampled() and self.enqueue(entry)

    def sampled(self) -> bool:
        """Whether to log this request (`sample_rate`): asked first, an entry not logged is
        never built."""
        return self.rate >= 1.0 or self._random.random() < self.rate

    def enqueue(self, entry: Entry) -> bool:
        """Queue `entry` if there is room (else count the drop). Nothing is signalled: the
        writer wakes on its own clock, so a request never hands the GIL to it."""
        if self._queue.qsize() >= self._max_queue:
            self.dropped.inc()
            return False
        self._queue.put(entry)
        return True

    # --- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            pending, rows = [], 0
            while True:  # what is queued now, in batches of about flush_rows records
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                pending.append(entry)
                rows += len(entry.results)
                if rows >= self.flush_rows:
                    self._flush(pending)
                    pending, rows = [], 0
            if pending:
                self._flush(pending)
            if stopping:
                for key in list(self._files):
                    self._close(key)
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
        groups: dict[tuple, list[tuple[Entry, dict, dict, Any]]] = {}
        for e in entries:
            day = datetime.fromtimestamp(e.received_at, UTC).date().isoformat()
            if e.status != 200:
                groups.setdefault((day, ERRORS), []).append((e, {}, {}, None))
            for rec, res, feats in zip(e.records, e.results, e.features, strict=True):
                names = feats[0] if feats is not None else ()
                key = (day, tuple(names), tuple(e.task.columns), e.shadow_of is not None)
                groups.setdefault(key, []).append((e, rec, res, feats))
        for key, rows in groups.items():
            yield key, self._batch(key, rows)

    def _batch(self, key: tuple, rows: list[tuple[Entry, dict, dict, Any]]) -> pa.RecordBatch:
        received = pa.array([int(e.received_at * 1e6) for e, *_ in rows], pa.timestamp("us", "UTC"))
        if key[1] == ERRORS:
            return pa.RecordBatch.from_pydict(
                {
                    "received_at": received,
                    "prediction_time": pa.nulls(len(rows), pa.timestamp("us", "UTC")),
                    "model_version": pa.array([e.version for e, *_ in rows], pa.string()),
                    "latency_ms": pa.array([e.latency_ms for e, *_ in rows], pa.float64()),
                    "status": pa.array([e.status for e, *_ in rows], pa.int16()),
                    "error": pa.array([e.error for e, *_ in rows], pa.string()),
                }
            )
        _, names, answers, shadow = key
        spec, pii = self.spec, self.spec.pii
        cols: dict[str, pa.Array] = {
            "received_at": received,
            "prediction_time": spec.prediction_times([r for _, r, *_ in rows]),
            "entity": pa.array([res["entity"] for _, _, res, _ in rows], pa.string()),
            "model_version": pa.array([e.version for e, *_ in rows], pa.string()),
            "online_version": pa.array([e.online_version for e, *_ in rows], pa.string()),
            "path": pa.array([res["path"] for _, _, res, _ in rows], pa.string()),
            "latency_ms": pa.array([e.latency_ms for e, *_ in rows], pa.float64()),
            "status": pa.repeat(pa.scalar(200, pa.int16()), len(rows)),
        }
        if shadow:  # its own files: no reader mistakes a shadow's answers for what callers got
            cols["shadow_of"] = pa.array([e.shadow_of for e, *_ in rows], pa.string())
        numbers = np.array([e.task.numbers(res) for e, _, res, _ in rows], dtype=np.float64).reshape(len(rows), -1)
        cols.update({ANSWER + c: pa.array(numbers[:, j]) for j, c in enumerate(answers)})
        records = [mask(r, pii) for _, r, *_ in rows]
        try:  # the records' fields converted by Arrow, in C++
            inputs = pa.RecordBatch.from_pylist(records, schema=spec.schema)
            cols.update({INPUT + n: inputs.column(n).cast(_TYPES[k]) for n, k in spec.inputs.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a field of two kinds (a number or a text): one by one
            cols.update({INPUT + n: _column([r.get(n) for r in records], k) for n, k in spec.inputs.items()})
        if names:
            matrix = np.vstack([feats[1] for *_, feats in rows])
            cols.update({FEATURE + n: pa.array(matrix[:, j]) for j, n in enumerate(names)})
        return pa.RecordBatch.from_pydict(cols)

    def _write(self, key: tuple, batch: pa.RecordBatch) -> None:
        """Append to the open file of `key`'s schema (answers of one feature set, or refusals);
        a new UTC day closes every file, a file past `rotate_bytes` is replaced."""
        for other in [k for k in self._files if k[0] != key[0]]:
            self._close(other)
        current = self._files.get(key)
        if current is None or current[0].tell() > self.rotate_bytes:
            self._close(key)
            folder = self.root / key[0]
            folder.mkdir(parents=True, exist_ok=True)
            self._opened += 1
            stamp = datetime.now(UTC).strftime("%H%M%S")
            sink = pa.OSFile(str(folder / f"{stamp}-{os.getpid()}-{self._opened:04d}{SUFFIX}"), "wb")
            current = self._files[key] = (sink, pa.ipc.new_stream(sink, batch.schema))
        current[1].write_batch(batch)
        current[0].flush()

    def _close(self, key: tuple) -> None:
        sink, writer = self._files.pop(key, (None, None))
        if writer is not None:
            writer.close()
            sink.close()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the file (a graceful stop loses nothing)."""
        self._stop.set()
        self._thread.join(timeout)


REFUSED = ["received_at", "model_version", "latency_ms", "status", "error"]  # a refusal row's columns


@dataclass
class LogRead:
    frame: pd.DataFrame  # the answered records
    files: int
    truncated: int  # files whose last batch was cut (a crash mid-write): read up to it
    refused: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REFUSED))  # one row a request
    shadow: pd.DataFrame = field(default_factory=pd.DataFrame)  # a shadow model's answers to the same records


@dataclass
class LogFile:
    """One stream file as read: its kind (answered, refused or shadow), its whole batches (None
    when it has none) and whether its last batch was cut."""

    path: Path
    kind: str
    table: pa.Table | None
    cut: bool


def log_files(root: Path) -> list[Path]:
    """The stream files under `root`, in order."""
    return sorted(Path(root).rglob(f"*{SUFFIX}")) if Path(root).is_dir() else []


def read_file(path: Path, columns: list[str] | None = None) -> LogFile:
    """One stream file, up to its last whole batch; `columns`: only these of an answered file."""
    batches, cut = [], False
    try:
        with pa.OSFile(str(path)) as source, pa.ipc.open_stream(source) as reader:
            for batch in reader:
                batches.append(batch)
    except (pa.ArrowInvalid, OSError):
        cut = True
    if not batches:
        return LogFile(path, "answered", None, cut)
    table = pa.Table.from_batches(batches)
    kind = next((k for c, k in (("error", "refused"), ("shadow_of", "shadow")) if c in table.column_names), "answered")
    if columns and kind == "answered":
        table = table.select([c for c in columns if c in table.column_names])
    return LogFile(path, kind, table, cut)


def read_log(root: Path, columns: list[str] | None = None) -> LogRead:
    """Every stream file under `root`: the answered records as one frame (files of other
    feature sets get NaN in the features they lack), the refused requests apart (their own
    files); a file cut mid-batch is read up to its last whole batch."""
    return combine(root, [read_file(path, columns) for path in log_files(root)])


def combine(root: Path, files: list[LogFile]) -> LogRead:
    """Files as read (or cut to a window) -> one `LogRead`."""
    tables: dict[str, list[pa.Table]] = {"answered": [], "refused": [], "shadow": []}  # by the file's kind
    named = [f.path for f in files if f.table is not None]
    for f in files:
        if f.table is not None:
            tables[f.kind].append(f.table)
    frames = {}
    for kind, parts in tables.items():
        try:  # string and large_string, int and float
            frames[kind] = pa.concat_tables(parts, promote_options="permissive").to_pandas() if parts else None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise MissingInputError(
                f"request log {root}: files {named[0]} .. {named[-1]} do not share columns: {exc}"
            ) from exc
    answered = frames["answered"] if frames["answered"] is not None else pd.DataFrame()
    refused = frames["refused"] if frames["refused"] is not None else pd.DataFrame(columns=REFUSED)
    shadow = frames["shadow"] if frames["shadow"] is not None else pd.DataFrame()
    return LogRead(answered, len(files), sum(f.cut for f in files), refused[REFUSED], shadow)
