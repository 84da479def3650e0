"""The Dask cluster a stage runs on (`engine.dask`): a `LocalCluster` started for the stage,
or a running scheduler's address; and how many partitions the rows are cut into."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def partitions(n: int, cfg: DictConfig, workers: int) -> int:
    """Row slices of `n` rows: `engine.dask.partitions`, else one per worker or one per
    `ROWS_PER_SLICE` rows, whichever is more (LightGBM trains on each worker's slices as its
    share of the data)."""
    return max(1, min(n, cfg.partitions or max(workers, math.ceil(n / ROWS_PER_SLICE))))


@contextmanager
def engine_client(engine: DictConfig) -> Iterator[Any]:
    """`client(engine.dask)` under `engine.kind: dask`; None (work here) under `local`."""
    if engine.kind != "dask":
        yield None
        return
    with client(engine.dask) as dask:
        yield dask
