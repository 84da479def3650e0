"""The Dask cluster a stage runs on (`engine.dask`): a `LocalCluster` started for the stage,
or a running scheduler's address; how many slices the rows are cut into, and the slices."""

from __future__ import annotations

import atexit
import importlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.errors import ConfigError


@contextmanager
def client(cfg: DictConfig) -> Iterator[Any]:
    """A Dask client: to `cfg.address`, or to a LocalCluster started here (and stopped after);
    the one `prestart` began for this config, if any."""
    early = _early.pop(_key(cfg), None)
    connected, cluster = early.result() if early is not None else _open(cfg)
    try:
        with _losing("the stage's work on the cluster"):  # wherever a lost worker surfaces: a scatter, a gather
            yield connected
    finally:
        _close(connected, cluster)


def prestart(engine: DictConfig, modules: Sequence[str]) -> None:
    """Under `engine.kind: dask`, start the stage's cluster (or connect to it) in the background
    while the stage reads its inputs, and import `modules` (what its tasks run) on the workers:
    its first slice then finds them ready. `client` takes it; one never taken is closed at exit."""
    key = _key(engine.dask) if engine.kind == "dask" else None
    if key is None or key in _early:
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="dask-start")
    _early[key] = pool.submit(_open, engine.dask, tuple(modules))
    pool.shutdown(wait=False)
    atexit.register(_drop, key)


_early: dict[str, Future] = {}  # engine.dask (as JSON) -> (client, LocalCluster | None) being opened


def _key(cfg: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)


def _open(cfg: DictConfig, modules: tuple[str, ...] = ()) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    cluster = None
    if cfg.address:
        try:
            connected = Client(cfg.address, timeout=cfg.connect_timeout)
        except OSError as exc:
            raise ConfigError(f"engine.dask.address: no Dask scheduler answers at {cfg.address} ({exc})") from exc
    else:
        cluster = LocalCluster(
            n_workers=cfg.n_workers,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=cfg.memory_limit,
            processes=True,
            dashboard_address=":0",  # any free port: never a clash with another cluster's
        )
        connected = Client(cluster)
    if modules:
        try:
            connected.run(_import, modules)
        except Exception:
            _close(connected, cluster)
            raise
    return connected, cluster


def _import(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name)


def _close(connected: Any, cluster: Any) -> None:
    try:
        connected.close()
    finally:
        if cluster is not None:
            cluster.close()


def _drop(key: str) -> None:
    """A prestarted cluster the stage never took (it stopped before): closed."""
    early = _early.pop(key, None)
    if early is not None and early.exception() is None:
        _close(*early.result())


ROWS_PER_SLICE = 1_000_000  # a slice travels whole: past this many rows, more slices than workers


def partitions(n: int, cfg: DictConfig, dask: Any) -> int:
    """Row slices of `n` rows for the cluster of the client `dask`: `engine.dask.partitions`,
    else one per worker or one per `ROWS_PER_SLICE` rows, whichever is more (LightGBM trains
    on each worker's slices as its share of the data)."""
    workers = len(dask.scheduler_info()["workers"])
    return max(1, min(n, cfg.partitions or max(workers, math.ceil(n / ROWS_PER_SLICE))))


def cuts(rows: int, n: int) -> list[tuple[int, int]]:
    """`rows` cut into `n` slices of (nearly) equal rows: (start, stop) of each non-empty one;
    no rows, one empty slice (its columns still have their checks: a missing one, a dtype)."""
    edges = np.linspace(0, rows, max(1, n) + 1).astype(int)
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a] or [(0, 0)]


class Slices:
    """Row slices of a frame, held by the workers of the Dask client `dask` (sent as data, not
    in the task graph; `hash=False`: equal slices must not share a key one's release cancels)."""

    def __init__(self, dask: Any, frame: pd.DataFrame, n: int) -> None:
        self.dask = dask
        self.parts = [dask.scatter(frame.iloc[a:b], hash=False) for a, b in cuts(len(frame), n)]

    def map(self, fn: Callable[..., Any], *args: Any, parts: list[Any] | None = None) -> list[Any]:
        """`fn(part, *args)` on each slice's worker: futures, in order."""
        return [self.dask.submit(fn, part, *args, pure=False) for part in (self.parts if parts is None else parts)]

    def gather(self, fn: Callable[..., Any], *args: Any, parts: list[Any] | None = None) -> list[Any]:
        return self.dask.gather(self.map(fn, *args, parts=parts))


def stream(
    dask: Any, fn: Callable[..., Any], items: Iterable[Any], *args: Any, total: int, description: str = ""
) -> list[Any]:
    """`fn(item, *args)` on the cluster of `dask` for each of `total` items, the results in
    order. An item (a frame, sent as data; or a future the workers hold) goes out only while
    fewer than two per worker thread are in flight, and each result is brought back as soon as
    it is done and its future released: a worker holds a few items and results at a time,
    never all of them. A worker lost meanwhile (killed past `engine.dask.memory_limit`) is an
    error naming the keys that bound a slice's size."""
    from distributed import as_completed
    from rich.progress import Progress

    items = iter(items)
    limit = 2 * max(1, sum(w.get("nthreads", 1) for w in dask.scheduler_info()["workers"].values()))
    running, done = as_completed(), {}
    order: dict[str, int] = {}
    what = description or getattr(fn, "__name__", "a task")

    def send(i: int, item: Any) -> None:
        data = item if _is_future(item) else dask.scatter(item, hash=False)
        future = dask.submit(fn, data, *args, pure=False)
        order[future.key] = i
        running.add(future)

    sent = 0
    # a lost worker surfaces at a scatter to it or at a result it held: either names this step
    with _losing(what), Progress(transient=True, disable=not description) as progress:
        for item in itertools.islice(items, limit):
            send(sent, item)
            sent += 1
        bar = progress.add_task(description, total=total)
        for future in running:
            done[order.pop(future.key)] = future.result()
            future.release()
            progress.advance(bar)
            for item in itertools.islice(items, 1):
                send(sent, item)
                sent += 1
    return [done[i] for i in range(sent)]


def _is_future(item: Any) -> bool:
    from distributed import Future

    return isinstance(item, Future)


@contextmanager
def _losing(what: str) -> Iterator[None]:
    """A worker lost while `what` runs (killed past `engine.dask.memory_limit`): the error
    naming the keys that bound a slice's size, whichever cluster call saw it first."""
    from concurrent.futures import CancelledError

    from distributed.comm import CommClosedError
    from distributed.scheduler import KilledWorker

    try:
        yield
    except (CancelledError, KilledWorker, CommClosedError) as exc:
        raise ConfigError(
            f"engine.dask: the cluster lost a worker during {what} ({type(exc).__name__}: {exc}); a worker "
            "past engine.dask.memory_limit is restarted and its slices lost: raise engine.dask.memory_limit, "
            "or engine.dask.partitions for smaller slices"
        ) from exc


@contextmanager
def engine_client(engine: DictConfig) -> Iterator[Any]:
    """`client(engine.dask)` under `engine.kind: dask`; None (work here) under `local`."""
    if engine.kind != "dask":
        yield None
        return
    with client(engine.dask) as dask:
        yield dask
