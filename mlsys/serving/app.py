"""The HTTP service: FastAPI under uvicorn, serving the registry's live model.

`POST /predict` takes one record or a list. Per record, by `inference.mode`: `static`
answers from the batch store, `dynamic` computes, `hybrid` answers from the store when it
holds a prediction by the served model and computes otherwise; each answer says which path
served it. Computing merges the online feature table's row for the entity with the request
(the request wins), then runs the model's own feature pipeline on the record.

The served model is one immutable object, swapped by a background thread when the
registry's live pointer changes (release or rollback): a request in flight keeps the model
it started with, and no request ever waits for a load.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from omegaconf import DictConfig, OmegaConf
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError

from mlsys.data.build import EVENT_LOCAL, event_time_of
from mlsys.model import Model, load_model
from mlsys.release.registry import Registry
from mlsys.serving.log import RequestLog
from mlsys.serving.request import request_model
from mlsys.serving.store import entity, online_reader, prediction_reader


@dataclass(frozen=True)
class Served:
    model: Model
    version: str
    card: dict[str, Any]
    loaded_at: str


class Metrics:
    def __init__(self) -> None:
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
            "mlsys_prediction_score", "Scores served", buckets=tuple(np.round(np.linspace(0.1, 1, 10), 1)), registry=r
        )
        self.model_info = Gauge("mlsys_model_info", "The served model (value 1)", ["version"], registry=r)
        self.reloads = Counter("mlsys_model_reloads", "Model switches without restart", registry=r)


class Service:
    """Everything a request needs; `reload` is called from a background thread."""

    def __init__(self, cfg: DictConfig, root: Path, pinned: Path | None = None) -> None:
        """`pinned`: serve that model directory and never follow the registry (the release
        stage's sandbox for a candidate)."""
        self.cfg, self.root, self.pinned = cfg, root, pinned
        p = cfg.paths
        self.mode = cfg.inference.mode
        self.key = list(cfg.data.key)
        self.event_time = OmegaConf.to_container(cfg.data.event_time, resolve=True)
        self.registry = Registry(root / p.registry)
        self.metrics = Metrics()
        self.log = RequestLog(root / p.request_log, cfg.inference.request_log.sample_rate)
        self.served: Served | None = None
        self._stamps: dict[str, Any] = {}
        self.reload()

    # --- state ----------------------------------------------------------------------
    def _open_tables(self) -> None:
        p = self.cfg.paths
        self.online, kinds, self.example = online_reader(self.root / p.online)
        self.lookup_names = list(kinds)
        self.store = prediction_reader(self.root / p.store)
        self.request_type = request_model(self.cfg, kinds)
        self.adapter = TypeAdapter(list[self.request_type])  # type: ignore[name-defined]

    def _stamp(self, path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def reload(self) -> None:
        """Pick up a new live model, online table or batch store (no restart)."""
        p = self.cfg.paths
        stamps = {
            "pointer": self._stamp(self.registry.root / "released.json"),
            "online": self._stamp(self.root / p.online),
        }
        if stamps == self._stamps:
            return
        if self.pinned is not None:
            source = self.pinned if self.served is None else None
        else:
            live = self.registry.live()
            changed = live is not None and (self.served is None or self.served.version != live)
            source = self.registry.path(live) if changed else None
        if source is not None:
            model = load_model(source)
            old = self.served
            self.served = Served(model, model.version, model.meta, datetime.now(UTC).isoformat(timespec="seconds"))
            self.metrics.model_info.labels(model.version).set(1)
            if old is not None:
                self.metrics.model_info.remove(old.version)
                self.metrics.reloads.inc()
        if not self._stamps or stamps["online"] != self._stamps["online"]:  # the store is rewritten in place
            self._open_tables()
        self._stamps = stamps

    # --- scoring --------------------------------------------------------------------
    def features(self, record: dict[str, Any], key: str) -> dict[str, Any]:
        """Online row for the entity, overlaid with what the request carries, + event time."""
        row = self.online.one(key)
        merged = dict(zip(self.lookup_names, row[1:], strict=True)) if row else {}
        merged.update(record)
        merged[EVENT_LOCAL] = event_time_of(record, self.event_time, local=True)
        return merged

    def score(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        served = self.served  # one model for the whole request, whatever a reload does meanwhile
        if served is None:
            raise RuntimeError("no model is released yet")
        out: list[dict[str, Any]] = [{} for _ in records]
        todo: list[tuple[int, str, dict[str, Any]]] = []
        for i, rec in enumerate(records):
            key = entity(rec, self.key)
            hit = self.store.one(key) if self.mode != "dynamic" else None
            if hit is not None and (self.mode == "static" or hit[1] == served.version):
                out[i] = {"entity": key, "score": hit[0], "model_version": hit[1], "path": "static"}
            elif self.mode == "static":
                out[i] = {"entity": key, "error": "no batch prediction for this entity (inference.mode: static)"}
            else:
                todo.append((i, key, self.features(rec, key)))
        if todo:
            pipe = served.model.pipeline
            x = np.vstack([pipe.transform_record(f) for _, _, f in todo])
            scores = served.model.booster.predict(x, num_threads=1)
            for (i, key, _), row, s in zip(todo, x, scores, strict=True):
                out[i] = {"entity": key, "score": float(s), "model_version": served.version, "path": "dynamic"}
                out[i]["_features"] = (pipe.names, row)  # made a dict by the log's writer thread
        return out


def _error(status: int, kind: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status)


def _json_safe(v: Any) -> Any:
    return None if isinstance(v, float) and not np.isfinite(v) else v


def create_app(cfg: DictConfig, root: Path, pinned: Path | None = None) -> FastAPI:
    service = Service(cfg, root, pinned)
    limits = SimpleNamespace(**OmegaConf.to_container(cfg.inference.server))  # plain: read per request

    def reloader(stop: threading.Event) -> None:
        while not stop.wait(limits.reload_seconds):
            try:
                service.reload()
            except Exception as exc:  # a bad release must not kill the service: keep serving
                service.metrics.errors.labels("reload").inc()
                print(f"serve: reload failed, still serving {service.served and service.served.version}: {exc}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=reloader, args=(stop,), name="model-reload", daemon=True)
        thread.start()
        yield
        stop.set()
        thread.join(5)
        service.log.close()

    app = FastAPI(title="mlsys", lifespan=lifespan)
    app.state.service = service
    m = service.metrics

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if service.served is None:
            return _error(503, "not_ready", "no model is released yet: run `dvc repro` (release stage)")
        return JSONResponse({"status": "ready", "model_version": service.served.version, "mode": service.mode})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/model")
    async def model() -> Response:
        served = service.served
        if served is None:
            return _error(503, "not_ready", "no model is released yet")
        return JSONResponse(
            {
                "version": served.version,
                "loaded_at": served.loaded_at,
                "inference_mode": service.mode,
                "timeline": service.registry.timeline(served.version),
                "card": served.card,
                "request_fields": json.loads(json.dumps(service.request_type.model_json_schema(), default=str)),
                "example_request": service.example,
            }
        )

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        status, kind = 200, ""
        try:
            declared = request.headers.get("content-length")
            if declared is not None and int(declared) > limits.max_body_bytes:
                status, kind = 413, "too_large"
                return _error(413, kind, f"body of {declared} bytes > inference.server.max_body_bytes")
            body = await request.body()
            if len(body) > limits.max_body_bytes:
                status, kind = 413, "too_large"
                return _error(413, kind, f"body of {len(body)} bytes > inference.server.max_body_bytes")
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                status, kind = 422, "malformed_json"
                return _error(422, kind, f"the body is not valid JSON: {exc}")
            single = isinstance(payload, dict)
            items = [payload] if single else payload
            if not isinstance(items, list) or not items:
                status, kind = 422, "invalid"
                return _error(422, kind, "the body must be one JSON object or a non-empty list of them")
            if len(items) > limits.max_records:
                status, kind = 413, "too_many_records"
                return _error(413, kind, f"{len(items)} records > inference.server.max_records={limits.max_records}")
            try:
                parsed: list[BaseModel] = service.adapter.validate_python(items)
            except ValidationError as exc:
                status, kind = 422, "invalid"
                errors = [
                    {
                        "loc": list(e["loc"][1:]) if single else list(e["loc"]),
                        "field": str(e["loc"][1]) if len(e["loc"]) > 1 else None,
                        "msg": e["msg"],
                        "input": _json_safe(e.get("input")) if not isinstance(e.get("input"), dict) else None,
                    }
                    for e in exc.errors(include_url=False)
                ]
                return _error(422, kind, errors)
            records = [r.model_dump(exclude_none=True) for r in parsed]
            if len(records) > 32:
                results = await asyncio.to_thread(service.score, records)
            else:
                results = service.score(records)
            if single and "error" in results[0]:
                status, kind = 404, "not_found"
                return _error(404, kind, results[0]["error"])
            elapsed = time.perf_counter() - start
            for rec, res in zip(records, results, strict=True):
                features = res.pop("_features", None)
                if "score" in res:
                    m.predictions.labels(res["path"]).inc()
                    m.scores.observe(res["score"])
                    service.log.put(
                        {
                            "at": time.time(),
                            "input": rec,
                            "features": features,
                            "score": res["score"],
                            "model_version": res["model_version"],
                            "path": res["path"],
                            "latency_ms": elapsed * 1000,
                        }
                    )
            return JSONResponse(results[0] if single else {"predictions": results})
        except Exception as exc:  # never crash the service; count and report
            status, kind = 500, "internal"
            return _error(500, kind, f"{type(exc).__name__}: {exc}")
        finally:
            m.latency.observe(time.perf_counter() - start)
            m.requests.labels("/predict", str(status)).inc()
            if kind:
                m.errors.labels(kind).inc()

    return app
