"""The HTTP service: FastAPI under uvicorn, serving the registry's live model.

`POST /predict` takes one record or a list. Per record, by `inference.mode`: `static`
answers from the batch store's table of the served model, `dynamic` computes, `hybrid`
answers from that table and computes on a miss; each answer says which path served it.
Computing merges the online feature table's row for the entity with the request (the
request wins), then runs the model's own feature pipeline on the record.

Everything a request reads (model, online table, store) is one immutable `State`, rebuilt
and swapped in one reference by a background thread when the registry's live pointer or a
table file changes: a request in flight keeps the state it started with, and never waits
for a load. A table the mode needs that is missing or unreadable makes `/readyz` 503 and
the records that need it 503 (`lookup_unavailable`), never a score computed with silently
missing features. A live version that cannot be loaded (corrupt files) leaves the old model
serving, with `mlsys_model_mismatch` 1 and the reason in `/metrics`: one bad file must not
take every replica out.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from omegaconf import DictConfig, OmegaConf
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError

from mlsys.data.build import event_time_of, event_time_spec
from mlsys.data.columns import EVENT_LOCAL
from mlsys.data.derive import Deriver
from mlsys.data.snapshot import text_columns
from mlsys.errors import ConfigError, MlsysError
from mlsys.io import read_json
from mlsys.model import CARD_FILE, Model, load_model
from mlsys.model.compiled import require
from mlsys.release.registry import Registry, locate
from mlsys.serving.log import Entry, LogSpec, RequestLog
from mlsys.serving.request import lookup_specs, request_model
from mlsys.serving.store import (
    MemoryTable,
    Reader,
    entity,
    has_predictions,
    holdout_share,
    online_reader,
    prediction_reader,
    share_of,
)


@dataclass(frozen=True)
class Served:
    model: Model
    version: str
    card: dict[str, Any]
    loaded_at: str


@dataclass(frozen=True)
class Online:
    """The online feature table as last opened: its reader, or why it cannot be read."""

    reader: Reader | MemoryTable | None
    names: list[str]
    example: dict[str, Any]
    problem: str | None
    stamp: dict[str, str] = field(default_factory=dict)  # version, built_at


@dataclass(frozen=True)
class State:
    served: Served | None
    online: Online
    store: Reader | None  # the batch predictions of the served model
    mismatch: tuple[str, str] | None  # (live version, why it is not the one served)
    candidate: Served | None = None  # the registry's candidate: a canary share of entities


class JSONResponse(Response):
    """JSON written by orjson: an answer in 0.2 µs (`json.dumps`: 3.7); numpy numbers as
    numbers, a non-finite number as null (`json.dumps` would write NaN, which is not JSON).
    What orjson refuses (an integer past 64 bits, nesting past 254 levels) is written by the
    json module instead, never a failed response."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            return json.dumps(content, default=str, ensure_ascii=False, separators=(",", ":")).encode()


class Unavailable(Exception):
    """A record needs a table that cannot be read: 503, naming it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class Refused(Exception):
    """A request the service will not answer: its status, error kind and detail."""

    def __init__(self, status: int, kind: str, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(kind)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers

    def response(self) -> JSONResponse:
        return _error(self.status, self.kind, self.detail, self.headers)


class Metrics:
    def __init__(self, buckets: tuple[float, ...] | None = None) -> None:
        """`buckets` of the answer histogram: probabilities by default (a regression's come
        from its validation predictions, see `answer_buckets`)."""
        self.registry = r = CollectorRegistry()
        self.requests = Counter("mlsys_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.errors = Counter("mlsys_errors", "Failed requests by kind", ["kind"], registry=r)
        self.predictions = Counter("mlsys_predictions", "Records answered, by path", ["path"], registry=r)
        self.latency = Histogram(
            "mlsys_request_latency_seconds",
            "Time to answer /predict",
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.scores = Histogram(
            "mlsys_prediction_score",
            "Answers served: the score, a regression's prediction, a multiclass answer's top probability",
            buckets=buckets or tuple(np.round(np.linspace(0.1, 1, 10), 1)),
            registry=r,
        )
        # Gauges say what each live process serves (`mlsys serve --workers N`: Prometheus'
        # multiprocess mode, one series per worker; a single process: `liveall` is ignored).
        live = {"registry": r, "multiprocess_mode": "liveall"}
        self.model_info = Gauge("mlsys_model_info", "The served model (value 1)", ["version"], **live)
        self.reloads = Counter("mlsys_model_reloads", "Model switches without restart", registry=r)
        self.mismatch = Gauge(
            "mlsys_model_mismatch", "1 while the registry's live version is not served (it failed to load)", **live
        )
        self.load_error = Gauge(
            "mlsys_model_load_error", "Why the live version is not served (value 1)", ["version", "reason"], **live
        )
        self.misses = Counter("mlsys_lookup_misses", "Entities not found in a table", ["table"], registry=r)
        self.available = Gauge("mlsys_table_available", "1 if the table can be read", ["table"], **live)
        self.model_age = Gauge(
            "mlsys_model_age_seconds", "Now minus the served model's newest training event (wall clock)", **live
        )
        self.table_age = Gauge("mlsys_table_age_seconds", "Now minus when the table was built", ["table"], **live)
        self.since: dict[str, float] = {}  # the ages' starts (epoch seconds), set on each reload tick
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def tick(self) -> None:
        """Ages as of now (set every reload tick: multiprocess mode reads values, not functions)."""
        now = time.time()
        if "model" in self.since:
            self.model_age.set(now - self.since["model"])
        if "online" in self.since:
            self.table_age.labels("online").set(now - self.since["online"])

    def scrape(self) -> bytes:
        """The exposition: this process's registry, or every worker's (multiprocess mode)."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        everyone = CollectorRegistry()
        multiprocess.MultiProcessCollector(everyone)
        return generate_latest(everyone)

    def labelled(self, metric: Any, *values: str) -> Any:
        """A counter's labelled child, looked up once: `labels()` costs microseconds a call."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child


class Service:
    """Everything a request needs; `reload` is called from a background thread."""

    def __init__(self, cfg: DictConfig, root: Path, pinned: Path | None = None) -> None:
        """`pinned`: serve that model directory and never follow the registry (the release
        stage's sandbox for a candidate)."""
        self.cfg, self.root, self.pinned = cfg, root, pinned
        p = cfg.paths
        self.mode = cfg.inference.mode
        # The release stage's sandbox is not given the backend: it gates the model as LightGBM answers.
        self.backend = str(cfg.inference.get("backend", "lightgbm"))
        self.compile_inline = bool(cfg.inference.get("compile_inline", False))
        if self.backend == "lleaves":
            require()  # at start, naming the key: not at the first model load, in the reload thread
        self.key = list(cfg.data.key)
        self.event_time = event_time_spec(cfg.data)
        self.derive = (
            Deriver(cfg.data.derived, text_columns(cfg.contract.tables[cfg.data.primary])).record
            if cfg.data.derived
            else None
        )
        self.registry = Registry(locate(root, p.registry)[0], cfg.release.model_name)
        self.online_path, self.store_path = root / p.online, root / p.store
        self.online_memory_rows = int(cfg.inference.server.online_memory_rows)
        self.lookups = bool(lookup_specs(cfg))
        self.canary_share = float(cfg.inference.canary.share)
        self.holdout = holdout_share(cfg.data.feedback_loops)
        self.needs_online = self.mode != "static" and self.lookups
        self._versions: dict[str, Served] = {}  # other versions /explain was asked about
        self.metrics = Metrics(self._answer_buckets())
        log = cfg.inference.request_log
        self.log = RequestLog(
            root / p.request_log,
            LogSpec.from_config(cfg),
            log.sample_rate,
            log.flush_rows,
            log.flush_seconds,
            log.rotate_mb * 1_000_000,
            log.max_queue,
            registry=self.metrics.registry,
        )
        self.request_type = request_model(cfg)
        self.adapter = TypeAdapter(list[self.request_type])  # type: ignore[name-defined]
        self.state = State(served=None, online=Online(None, [], {}, "not opened yet"), store=None, mismatch=None)
        self._stamps: dict[str, Any] = {}
        self.reload()
        self.shadow = self._shadow(cfg.inference.shadow, log.max_queue)

    def _shadow(self, version: str | None, max_queue: int) -> Shadow | None:
        """The shadow scorer of `inference.shadow`, its model verified and loaded once."""
        if not version or self.pinned is not None:
            return None
        try:
            model = self.load(self.registry.path(str(version)), str(version))
        except MlsysError as exc:
            raise ConfigError(f"inference.shadow: {version!r} cannot be served as the shadow: {exc}") from exc
        print(f"serve: shadow {version} scores every request after its answer", flush=True)
        return Shadow(self, Served(model, str(version), model.meta, ""), max_queue)

    def load(self, path: Path, version: str | None = None) -> Model:
        """A model that answers requests: verified and loaded (`load_model`), scoring a request
        of several records with `inference.backend` (lleaves: compiled once per version and host,
        in the reload thread, then loaded from `paths.compiled`)."""
        model = load_model(path, version=version)
        model.use_backend(self.backend, self.root / self.cfg.paths.compiled, self.compile_inline)
        return model

    def _answer_buckets(self) -> tuple[float, ...] | None:
        """A regression model's answer histogram spans its test labels (ten equal steps);
        None (probabilities) for the others, or when no card can be read yet."""
        try:
            version = None if self.pinned else self.registry.live()
            where = self.pinned or (self.registry.path(version) if version else None)
            card = read_json(where / CARD_FILE, "the model card") if where else {}
        except MlsysError:
            return None
        label = (card.get("metrics") or {}).get("test_label") or {}
        if (card.get("task") or {}).get("kind") != "regression" or label.get("min") is None:
            return None
        return tuple(float(b) for b in np.unique(np.linspace(label["min"], label["max"], 11)[1:]))

    # --- state ----------------------------------------------------------------------
    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _open_online(self) -> Online:
        try:
            reader, kinds, example, stamp = online_reader(self.online_path, self.online_memory_rows)
        except sqlite3.Error as exc:
            what = "missing" if str(exc) == "missing" else f"unreadable ({exc})"
            return Online(None, [], {}, f"{self.online_path} is {what}: run `dvc repro online`")
        return Online(reader, list(kinds), example, None, stamp)

    def _model(self, state: State) -> tuple[Served | None, tuple[str, str] | None]:
        """The model to serve: the pinned one, or the registry's live version if it loads;
        else the one served now, and why the live one is not."""
        served = state.served
        if self.pinned is not None:
            if served is None:
                model = self.load(self.pinned)
                served = Served(model, model.version, model.meta, datetime.now(UTC).isoformat(timespec="seconds"))
            return served, None
        try:
            live = self.registry.live()
        except MlsysError as exc:
            return served, ("unknown", f"the registry's pointer cannot be read: {exc}")
        if live is None or (served is not None and served.version == live):
            return served, None
        try:
            model = self.load(self.registry.path(live), live)  # verified first: never a corrupt file
        except MlsysError as exc:
            return served, (live, str(exc))
        return Served(model, model.version, model.meta, datetime.now(UTC).isoformat(timespec="seconds")), None

    def _candidate(self, state: State) -> Served | None:
        """The registry's candidate, loaded, when a canary share is set (release.rollout:
        canary); one that cannot be loaded is not served (the live model answers), and said."""
        if self.pinned is not None or self.canary_share <= 0:
            return None
        try:
            version = self.registry.candidate()
            if version is None or (state.candidate is not None and state.candidate.version == version):
                return state.candidate if version is not None else None
            model = self.load(self.registry.path(version), version)
        except MlsysError as exc:
            self.metrics.errors.labels("candidate_load").inc()
            print(f"serve: the candidate is not served (the live model answers all): {exc}", flush=True)
            return None
        print(f"serve: candidate {version} answers {self.canary_share:.0%} of entities (canary)", flush=True)
        return Served(model, version, model.meta, datetime.now(UTC).isoformat(timespec="seconds"))

    def reload(self) -> None:
        """Pick up a new live model, online table or batch store (no restart)."""
        stamps = {
            "pointer": self._stamp(self.registry.pointer_path),
            "online": self._stamp(self.online_path),
            "store": self._stamp(self.store_path),
        }
        old = self.state
        if stamps == self._stamps and old.mismatch is None:
            return
        served, mismatch = self._model(old)
        online = self._open_online() if stamps["online"] != self._stamps.get("online") else old.online
        changed = served is not old.served or stamps["store"] != self._stamps.get("store")
        store = (
            old.store
            if not changed
            else (prediction_reader(self.store_path, served.version, served.model.task.columns) if served else None)
        )
        candidate = self._candidate(old) if stamps["pointer"] != self._stamps.get("pointer") else old.candidate
        self.state = State(served=served, online=online, store=store, mismatch=mismatch, candidate=candidate)
        self._stamps = stamps
        self._record(old, self.state)

    def _record(self, old: State, new: State) -> None:
        """Metrics and one log line per change of what is served or why not."""
        m = self.metrics
        if new.served is not old.served and new.served is not None:
            m.model_info.labels(new.served.version).set(1)
            if old.served is not None:
                m.model_info.labels(old.served.version).set(0)  # what multiprocess files keep
                m.model_info.remove(old.served.version)
                m.reloads.inc()
        if new.mismatch != old.mismatch:
            if old.mismatch is not None:
                m.load_error.labels(old.mismatch[0], old.mismatch[1][:200]).set(0)
                m.load_error.remove(old.mismatch[0], old.mismatch[1][:200])
            if new.mismatch is not None:
                m.load_error.labels(new.mismatch[0], new.mismatch[1][:200]).set(1)
                serving = new.served.version if new.served else "nothing"
                print(
                    f"serve: live version {new.mismatch[0]} not loaded, serving {serving}: {new.mismatch[1]}",
                    flush=True,
                )
        if new.served is not old.served and new.served is not None:
            newest = (new.served.card.get("timeline") or {}).get("newest_training_event")
            if newest:
                m.since["model"] = datetime.fromisoformat(newest).timestamp()
        if new.online is not old.online and new.online.stamp.get("built_at"):
            m.since["online"] = datetime.fromisoformat(new.online.stamp["built_at"]).timestamp()
        m.tick()
        m.mismatch.set(0 if new.mismatch is None else 1)
        m.available.labels("online").set(0 if new.online.problem else 1)
        if new.online.problem and new.online.problem != old.online.problem and self.needs_online:
            print(f"serve: online table unavailable: {new.online.problem}", flush=True)

    def problems(self, state: State) -> list[str]:
        """Why the service cannot answer as its mode promises (empty: ready)."""
        out = []
        if state.served is None:
            out.append(state.mismatch[1] if state.mismatch else "no model is released yet: run `dvc repro` (release)")
        if self.needs_online and state.online.problem:
            out.append(f"online table: {state.online.problem}")
        if self.mode == "static" and state.served and not has_predictions(self.store_path, state.served.version):
            out.append(
                f"lookup store {self.store_path} has no predictions by {state.served.version}: run `mlsys predict`"
            )
        return out

    # --- scoring --------------------------------------------------------------------
    def features(self, state: State, record: dict[str, Any], key: str) -> dict[str, Any]:
        """Online row for the entity, overlaid with what the request carries, + event time."""
        merged: dict[str, Any] = {}
        if self.lookups:  # static mode never computes; /explain does, and needs the table then
            online = state.online
            if online.reader is None:
                raise Unavailable("lookup_unavailable", f"online table: {online.problem}")
            try:
                row = online.reader.one(key)
            except sqlite3.Error as exc:
                raise Unavailable("lookup_unavailable", f"online table {self.online_path} unreadable: {exc}") from exc
            if row is None:
                self.metrics.labelled(self.metrics.misses, "online").inc()
            else:
                merged = dict(zip(online.names, row[1:], strict=True))
        merged.update(record)
        merged[EVENT_LOCAL] = event_time_of(record, self.event_time, local=True)
        return merged

    def _stored(self, state: State, key: str) -> tuple | None:
        """The served model's batch prediction for the entity, if the store has it."""
        if state.store is None:
            return None
        try:
            hit = state.store.one(key)
        except sqlite3.Error as exc:
            if self.mode == "static":
                what = "has no predictions by the served model" if "no such table" in str(exc) else f"unreadable: {exc}"
                raise Unavailable("store_unavailable", f"lookup store {self.store_path} {what}") from exc
            return None  # hybrid: compute instead
        if hit is None:
            self.metrics.labelled(self.metrics.misses, "store").inc()
        return hit

    def score(self, state: State, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        served = state.served  # one model for the whole request, whatever a reload does meanwhile
        if served is None:
            raise Unavailable("not_ready", "; ".join(self.problems(state)))
        out: list[dict[str, Any]] = [{} for _ in records]
        task = served.model.task
        todo: dict[str, tuple[Served, list[tuple[int, str, dict[str, Any]]]]] = {}
        canary = state.candidate
        for i, rec in enumerate(records):
            rec = self.derive(rec) if self.derive else rec  # the validate stage's columns, from one record
            key = entity(rec, self.key)
            if self.holdout and share_of(key, "holdout") < self.holdout:  # data.feedback_loops: no answer
                out[i] = {"entity": key, **task.held_out(), "holdout": True, "model_version": served.version}
                out[i]["path"] = "holdout"
                continue
            if canary is not None and share_of(key, "canary") < self.canary_share:  # computed, never looked up
                todo.setdefault(canary.version, (canary, []))[1].append((i, key, self.features(state, rec, key)))
                continue
            hit = self._stored(state, key) if self.mode != "dynamic" else None
            if hit is not None:
                out[i] = {"entity": key, **task.answer(hit[:-1]), "model_version": served.version, "path": "static"}
            elif self.mode == "static":
                out[i] = {"entity": key, "error": "no batch prediction for this entity (inference.mode: static)"}
            else:
                todo.setdefault(served.version, (served, []))[1].append((i, key, self.features(state, rec, key)))
        for model, items in todo.values():
            pipe = model.model.pipeline
            x = (
                pipe.transform_record(items[0][2])
                if len(items) == 1
                else np.vstack([pipe.transform_record(f) for _, _, f in items])
            )
            answers = model.model.task.matrix(model.model.predict_matrix(x, num_threads=1))
            for (i, key, inputs), row, values in zip(items, x, answers, strict=True):
                out[i] = {"entity": key, **model.model.task.answer(values), "model_version": model.version}
                out[i]["path"] = "dynamic"
                if model is canary:
                    out[i]["candidate"] = True
                out[i]["_features"] = (pipe.names, row)  # for the request log (taken out before the answer)
                out[i]["_inputs"] = inputs  # what was looked up: a shadow scores from it
        return out

    def served(self, state: State, version: str | None) -> Served:
        """The served model, or another kept version of the registry (loaded once, verified)."""
        if version is None or (state.served is not None and version == state.served.version):
            if state.served is None:
                raise Unavailable("not_ready", "; ".join(self.problems(state)))
            return state.served
        if version not in self._versions:
            model = load_model(self.registry.path(version), version=version)
            kept = dict(list(self._versions.items())[-3:])  # a few, not every version ever asked about
            self._versions = {**kept, version: Served(model, version, model.meta, "")}
        return self._versions[version]

    def explain(self, state: State, record: dict[str, Any], served: Served) -> dict[str, Any]:
        """The dynamic path for one record, step by step: the request, the derived columns,
        the looked-up values, then `explain.breakdown` (features, contributions, scores)."""
        from mlsys.model.explain import breakdown, plain

        rec = self.derive(record) if self.derive else record
        key = entity(rec, self.key)
        merged = self.features(state, rec, key)
        looked_up = {c: merged[c] for c in merged if c not in rec and c != EVENT_LOCAL}
        out = {
            "entity": key,
            "model_version": served.version,
            "request": record,
            "derived": {c: rec[c] for c in rec if c not in record},
            "looked_up": looked_up,
            "online": (
                "not used"
                if not self.lookups
                else "found"
                if looked_up
                else "no row for this entity: looked-up features are missing"
            ),
            **breakdown(served.model, merged),
        }
        hit = self._stored(state, key) if served is state.served and self.mode != "dynamic" else None
        if hit is not None:  # what /predict answers from the batch store for this entity
            out["stored_answer"] = served.model.task.answer(hit[:-1])
        return plain(out)


class Shadow:
    """Another kept version (`inference.shadow`) scoring what callers were answered, off the
    request path. A request puts its answered records on a queue, with the inputs the live
    path already looked up when it computed, and signals nothing (a full queue: not shadowed,
    counted); a thread wakes every `WAKE` seconds and scores everything queued in one
    Booster.predict. Its answers go to the request log's own shadow files."""

    WAKE = 0.1  # seconds between the thread's rounds

    def __init__(self, service: Service, served: Served, max_queue: int) -> None:
        self.service, self.served, self.max_queue = service, served, max_queue
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.stop = threading.Event()
        r = service.metrics.registry
        self.dropped = Counter("mlsys_shadow_dropped", "Requests not shadowed (queue full)", registry=r)
        self.thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self.thread.start()

    def put(self, state: State, live: str, answered: list[tuple[dict, str, dict | None]]) -> None:
        """`answered`: (record, entity, the inputs the live path looked up or None) each."""
        if self.queue.qsize() >= self.max_queue:
            self.dropped.inc()
            return
        self.queue.put((state, live, answered))

    def _run(self) -> None:
        while True:
            stopping = self.stop.wait(self.WAKE)
            items = []
            while True:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if items:
                self._score(items)
            if stopping:
                return

    def _score(self, items: list[tuple[State, str, list[tuple[dict, str, dict | None]]]]) -> None:
        service, model = self.service, self.served.model
        pipe, task = model.pipeline, model.task
        start = time.perf_counter()
        try:
            rows = []
            for state, _, answered in items:
                for record, key, inputs in answered:
                    if inputs is None:  # answered from the store, or held out: looked up here
                        inputs = service.features(state, service.derive(record) if service.derive else record, key)
                    rows.append(pipe.transform_record(inputs))
            x = np.vstack(rows)
            answers = task.matrix(model.predict_matrix(x, num_threads=1))
        except Exception as exc:  # a shadow never takes the service down: counted, said
            service.metrics.errors.labels("shadow").inc()
            print(f"serve: shadow {self.served.version} failed: {type(exc).__name__}: {exc}", flush=True)
            return
        per_record = (time.perf_counter() - start) * 1000 / len(x)
        at = 0
        for state, live, answered in items:
            n = len(answered)
            results = [
                {"entity": k, **task.answer(v), "path": "shadow"}
                for (_, k, _), v in zip(answered, answers[at : at + n], strict=True)
            ]
            service.log.put(
                Entry(
                    time.time(), per_record, self.served.version, state.online.stamp.get("version"), task,
                    [r for r, _, _ in answered], results, [(pipe.names, row) for row in x[at : at + n]], shadow_of=live,
                )
            )  # fmt: skip
            at += n

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def _error(status: int, kind: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


def _echo(value: Any) -> Any:
    """A client's value as an error repeats it: a number or text as it is (a non-finite
    number as null, an integer past 64 bits as its text), a list or an object as null (it may
    be nested deeper than any encoder goes)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    return value if value is None or isinstance(value, (str, int)) else None


def _token(server: DictConfig) -> bytes | None:
    """The bearer token /predict requires (from the environment variable the config names)."""
    if not server.auth_token_env:
        return None
    token = os.environ.get(server.auth_token_env)
    if not token:
        raise ConfigError(
            f"inference.server.auth_token_env: the environment variable {server.auth_token_env!r} is not set "
            "(it holds the bearer token /predict requires)"
        )
    return token.encode()


def _lenient(body: bytes) -> Any:
    """A body orjson refused, read by the standard library: NaN and Infinity parse (the request
    model then names the field that is not finite), anything else is `Refused` as malformed."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refused(422, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise Refused(422, "malformed_json", "the body is nested deeper than the JSON parser's limit") from exc


async def _body(request: Request, limit: int) -> bytes | None:
    """The body, read as it streams in; None as soon as it passes `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(cfg: DictConfig, root: Path, pinned: Path | None = None) -> FastAPI:
    token = _token(cfg.inference.server)
    service = Service(cfg, root, pinned)
    limits = SimpleNamespace(**OmegaConf.to_container(cfg.inference.server))  # plain: read per request

    def reloader(stop: threading.Event) -> None:
        while not stop.wait(limits.reload_seconds):
            try:
                service.reload()
                service.metrics.tick()
            except Exception as exc:  # a bad release must not kill the service: keep serving
                service.metrics.errors.labels("reload").inc()
                served = service.state.served
                print(f"serve: reload failed, still serving {served and served.version}: {exc}", flush=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=reloader, args=(stop,), name="model-reload", daemon=True)
        thread.start()
        yield
        stop.set()
        thread.join(5)
        if service.shadow is not None:
            service.shadow.close()  # its last answers reach the log before it closes
        service.log.close()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # this worker's live gauges go with it
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    app = FastAPI(title="mlsys", lifespan=lifespan)
    app.state.service = service
    m = service.metrics

    @app.get("/livez")
    async def livez() -> dict[str, Any]:
        return {"status": "alive", "pid": os.getpid()}

    @app.get("/readyz")
    async def readyz() -> Response:
        state = service.state
        problems = service.problems(state)
        if problems:
            return _error(503, "not_ready", problems)
        return JSONResponse({"status": "ready", "model_version": state.served.version, "mode": service.mode})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(m.scrape(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/model")
    async def model() -> Response:
        state = service.state
        served = state.served
        if served is None:
            return _error(503, "not_ready", service.problems(state))
        return JSONResponse(
            {
                "version": served.version,
                "loaded_at": served.loaded_at,
                "inference_mode": service.mode,
                "candidate": state.candidate.version if state.candidate else None,
                "canary_share": service.canary_share if state.candidate else 0.0,
                "timeline": service.registry.timeline(served.version),
                "card": served.card,
                "request_fields": json.loads(json.dumps(service.request_type.model_json_schema(), default=str)),
                "example_request": state.online.example,
            }
        )

    async def read(request: Request) -> tuple[list[dict[str, Any]], bool]:
        """The request's records (and whether one was sent bare), or `Refused`: auth, media
        type, size, JSON, the request model."""
        headers = dict(reversed(list(request.scope["headers"])))  # raw lower-case names; a repeat: the first
        if token is not None:
            given = headers.get(b"authorization", b"")
            if not (given.startswith(b"Bearer ") and hmac.compare_digest(given[7:], token)):
                raise Refused(401, "unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise Refused(415, "unsupported_media_type", f"content-type {ctype or '(none)'}: send application/json")
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise Refused(413, "too_large", f"body of {declared} bytes > inference.server.max_body_bytes")
        body = await _body(request, limits.max_body_bytes)
        if body is None:
            raise Refused(413, "too_large", f"body over inference.server.max_body_bytes={limits.max_body_bytes}")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = _lenient(body)  # NaN or Infinity (named by field below), or the stdlib's message
        single = isinstance(payload, dict)
        items = [payload] if single else payload
        if not isinstance(items, list) or not items:
            raise Refused(422, "invalid", "the body must be one JSON object or a non-empty list of them")
        if len(items) > limits.max_records:
            detail = f"{len(items)} records > inference.server.max_records={limits.max_records}"
            raise Refused(413, "too_many_records", detail)
        try:
            parsed: list[BaseModel] = service.adapter.validate_python(items)
        except ValidationError as exc:
            errors = [
                {
                    "loc": list(e["loc"][1:]) if single else list(e["loc"]),
                    "field": str(e["loc"][1]) if len(e["loc"]) > 1 else None,
                    "msg": e["msg"],
                    "input": _echo(e.get("input")),
                }
                for e in exc.errors(include_url=False)
            ]
            raise Refused(422, "invalid", errors) from exc
        return [r.model_dump(exclude_none=True) for r in parsed], single

    @app.post("/explain")
    async def explain(request: Request, version: str | None = None) -> Response:
        """One record taken apart (`mlsys explain`): inputs, lookups, features, contributions."""
        status = 200
        try:
            records, single = await read(request)
            if not single:
                raise Refused(422, "invalid", "/explain takes one JSON object (one record)")
            state = service.state
            try:
                served = service.served(state, version)
                return JSONResponse(await asyncio.to_thread(service.explain, state, records[0], served))
            except Unavailable as exc:
                raise Refused(503, exc.kind, exc.detail) from exc
            except ConfigError as exc:
                raise Refused(422, "not_explainable", str(exc)) from exc
            except MlsysError as exc:
                raise Refused(404, "unknown_version", str(exc)) from exc
        except Refused as exc:
            status = exc.status
            return exc.response()
        except Exception as exc:  # never crash the service; count and report
            status = 500
            return _error(500, "internal", f"{type(exc).__name__}: {exc}")
        finally:
            m.requests.labels("/explain", str(status)).inc()

    async def predict(request: Request) -> Response:
        """Answers one record (a JSON object) or a list of them. A plain Starlette route:
        FastAPI's per-request dependency solving does nothing for a handler that reads the
        request itself (27 µs a request, measured in process)."""
        start = time.perf_counter()
        status, kind = 200, ""
        try:
            try:
                records, single = await read(request)
            except Refused as exc:
                status, kind = exc.status, exc.kind
                return exc.response()
            state = service.state  # one state (model, tables) for the whole request
            try:
                if len(records) > 32:
                    results = await asyncio.to_thread(service.score, state, records)
                else:
                    results = service.score(state, records)
            except Unavailable as exc:
                status, kind = 503, exc.kind
                return _error(503, kind, exc.detail)
            if single and "error" in results[0]:
                status, kind = 404, "not_found"
                return _error(404, kind, results[0]["error"])
            elapsed = time.perf_counter() - start
            served = state.served
            features = [res.pop("_features", None) for res in results]
            inputs = [res.pop("_inputs", None) for res in results]
            by_version: dict[str, list[int]] = {}
            for i, res in enumerate(results):
                if "error" not in res:
                    m.labelled(m.predictions, "canary" if res.get("candidate") else res["path"]).inc()
                    if not res.get("holdout"):
                        m.scores.observe(served.model.task.headline(res))
                    by_version.setdefault(res["model_version"], []).append(i)
            if service.shadow is not None and by_version:
                answered = sorted(i for rows in by_version.values() for i in rows)
                service.shadow.put(
                    state, served.version, [(records[i], results[i]["entity"], inputs[i]) for i in answered]
                )
            arms = {s.version: s for s in (served, state.candidate) if s is not None}
            logged = by_version.items() if by_version and service.log.sampled() else ()
            for version, answered in logged:  # one entry per model: monitoring judges each
                service.log.enqueue(
                    Entry(
                        time.time(), elapsed * 1000, version, state.online.stamp.get("version"),
                        arms[version].model.task, [records[i] for i in answered], [results[i] for i in answered],
                        [features[i] for i in answered],
                    )
                )  # fmt: skip
            return JSONResponse(results[0] if single else {"predictions": results})
        except Exception as exc:  # never crash the service; count and report
            status, kind = 500, "internal"
            return _error(500, kind, f"{type(exc).__name__}: {exc}")
        finally:
            elapsed = time.perf_counter() - start
            m.latency.observe(elapsed)
            m.labelled(m.requests, "/predict", str(status)).inc()
            if kind:
                m.errors.labels(kind).inc()
                served = service.state.served  # monitoring's error and refusal rates
                version = served.version if served is not None else None
                service.log.put(Entry(time.time(), elapsed * 1000, version, None, None, [], [], [], status, kind))

    app.add_route("/predict", predict, methods=["POST"])

    def openapi() -> dict[str, Any]:
        """FastAPI's schema (`/docs`), with `/predict`, which as a Starlette route it leaves
        out: its body is one request record or a list of them."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            request = service.request_type.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(json.loads(json.dumps({**request.pop("$defs", {}), "Request": request}, default=str)))
            record = {"$ref": "#/components/schemas/Request"}
            body = {"anyOf": [record, {"type": "array", "items": record, "maxItems": limits.max_records}]}
            said = "per record: the entity, the task's answer, the model version and the path that answered"
            schema["paths"]["/predict"] = {
                "post": {
                    "summary": "Predict",
                    "description": "One record (a JSON object) or a list of them; `GET /model` gives an example.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                    "responses": {"200": {"description": f"One answer, or `predictions`: one {said}"}},
                }
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # Routes are matched in order: the hot one first (each miss costs a regex match).
    app.router.routes.sort(key=lambda route: getattr(route, "path", "") != "/predict")
    return app


SERVE_CONFIG = "MLSYS_SERVE_CONFIG"  # `mlsys serve --workers N`: the composed config (JSON) each worker reads
SERVE_ROOT = "MLSYS_SERVE_ROOT"


def from_environment() -> FastAPI:
    """The app of one `mlsys serve --workers N` worker (uvicorn's factory): the config the
    command composed, read from the file `MLSYS_SERVE_CONFIG` names."""
    cfg = OmegaConf.create(json.loads(Path(os.environ[SERVE_CONFIG]).read_text(encoding="utf-8")))
    return create_app(cfg, Path(os.environ[SERVE_ROOT]))
