"""The Dask cluster a stage runs on (`engine.dask`): a `LocalCluster` started for the stage,
or a running scheduler's address; how many slices the rows are cut into, and the slices."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.errors import ConfigError


@contextmanager
def client(cfg: DictConfig) -> Iterator[Any]:
    """A Dask client: to `cfg.address`, or to a LocalCluster started here (and stopped after)."""
    from distributed import Client, LocalCluster

    if cfg.address:
        try:
            connected = Client(cfg.address, timeout=cfg.connect_timeout)
        except OSError as exc:
            raise ConfigError(f"engine.dask.address: no Dask scheduler answers at {cfg.address} ({exc})") from exc
        try:
            yield connected
        finally:
            connected.close()
        return
    cluster = LocalCluster(
        n_workers=cfg.n_workers,
        threads_per_worker=cfg.threads_per_worker,
        memory_limit=cfg.memory_limit,
        processes=True,
        dashboard_address=":0",  # any free port: never a clash with another cluster's
    )
    try:
        with Client(cluster) as local:
            yield local
    finally:
        cluster.close()


ROWS_PER_SLICE = 1_000_000  # a slice travels whole: past this many rows, more slices than workers


def partitions(n: int, cfg: DictConfig, dask: Any) -> int:
    """Row slices of `n` rows for the cluster of the client `dask`: `engine.dask.partitions`,
    else one per worker or one per `ROWS_PER_SLICE` rows, whichever is more (LightGBM trains
    on each worker's slices as its share of the data)."""
    workers = len(dask.scheduler_info()["workers"])
    return max(1, min(n, cfg.partitions or max(workers, math.ceil(n / ROWS_PER_SLICE))))


class Slices:
    """Row slices of a frame, held by the workers of the Dask client `dask` (sent as data, not
    in the task graph; `hash=False`: equal slices must not share a key one's release cancels)."""

    def __init__(self, dask: Any, frame: pd.DataFrame, n: int) -> None:
        self.dask = dask
        edges = np.linspace(0, len(frame), max(1, n) + 1).astype(int)
        self.parts = [dask.scatter(frame.iloc[a:b], hash=False) for a, b in itertools.pairwise(edges) if b > a]

    def map(self, fn: Callable[..., Any], *args: Any, parts: list[Any] | None = None) -> list[Any]:
        """`fn(part, *args)` on each slice's worker: futures, in order."""
        return [self.dask.submit(fn, part, *args, pure=False) for part in (self.parts if parts is None else parts)]

    def gather(self, fn: Callable[..., Any], *args: Any, parts: list[Any] | None = None) -> list[Any]:
        return self.dask.gather(self.map(fn, *args, parts=parts))


@contextmanager
def engine_client(engine: DictConfig) -> Iterator[Any]:
    """`client(engine.dask)` under `engine.kind: dask`; None (work here) under `local`."""
    if engine.kind != "dask":
        yield None
        return
    with client(engine.dask) as dask:
        yield dask
