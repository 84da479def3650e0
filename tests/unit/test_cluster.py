"""`mlsys.cluster`, on real LocalClusters: `stream`'s results in order; items sent only as the
workers take them (a worker never holds every slice); a worker lost mid-stage is an error
naming the keys that bound a slice's size; a cluster started early (`prestart`) is the one a
stage's `client` gets, its workers' imports done."""

from __future__ import annotations

import os
import socket
import sys
import time

import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys import cluster
from mlsys.cluster import client, prestart, stream
from mlsys.config.schema import DaskConfig
from mlsys.errors import ConfigError


def _slow_sum(part: pd.DataFrame, pause: float) -> tuple[int, float]:
    time.sleep(pause)
    return int(part["x"].sum()), time.time()


def test_items_go_out_as_results_come_back_and_results_keep_their_order(dask_client):
    limit = 2 * sum(w["nthreads"] for w in dask_client.scheduler_info()["workers"].values())
    pulled: list[float] = []

    def items():
        for i in range(12):
            pulled.append(time.time())
            yield pd.DataFrame({"x": [i, i]})

    out = stream(dask_client, _slow_sum, items(), 0.2, total=12)
    assert [s for s, _ in out] == [2 * i for i in range(12)]
    finished = sorted(t for _, t in out)
    # Item k (past the first `limit`) is taken only once k - limit + 1 results are back.
    assert all(pulled[k] >= finished[k - limit] for k in range(limit, 12))
    assert pulled[-1] > finished[0]  # not all taken up front


def _dies_on(part: pd.DataFrame, marker: int) -> int:
    if (part["x"] == marker).any():
        os._exit(1)  # the worker process dies, as one killed past its memory limit does
    return int(part["x"].sum())


def test_a_worker_lost_mid_stage_is_an_error_naming_the_memory_limit():
    cfg = OmegaConf.structured(DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB"))
    with client(cfg) as dask:
        parts = (pd.DataFrame({"x": [i]}) for i in range(4))
        with pytest.raises(ConfigError, match=r"engine\.dask\.memory_limit.*engine\.dask\.partitions"):
            stream(dask, _dies_on, parts, 2, total=4, description="build")


def test_a_worker_lost_under_any_cluster_call_is_the_same_error(dask_client):
    """Not only a slice's result: a scatter (the next slice sent to the worker just killed, as
    under load) or a gather meeting the lost worker gives the error naming the keys, not Dask's."""
    from distributed.comm import CommClosedError

    cfg = OmegaConf.create({"address": dask_client.scheduler.address, "connect_timeout": "10s"})
    with pytest.raises(ConfigError, match=r"engine\.dask\.memory_limit.*engine\.dask\.partitions"), client(cfg):
        raise CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")


def _imported(name: str) -> bool:
    return name in sys.modules


def test_a_prestarted_cluster_is_the_one_the_stage_gets_with_its_modules_imported(dask_client):
    engine = OmegaConf.create(
        {"kind": "dask", "dask": {"address": dask_client.scheduler.address, "connect_timeout": "10s"}}
    )
    assert not any(dask_client.run(_imported, "tabnanny").values())  # no test imports it on a worker
    prestart(engine, ("tabnanny",))
    with client(engine.dask) as dask:
        assert not cluster._early  # taken, not a second client
        assert all(dask.run(_imported, "tabnanny").values())


def test_a_prestart_that_cannot_connect_fails_the_stage_naming_the_address():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    engine = OmegaConf.create({"kind": "dask", "dask": {"address": address, "connect_timeout": "1s"}})
    prestart(engine, ())
    with pytest.raises(ConfigError, match=r"engine\.dask\.address: no Dask scheduler answers"), client(engine.dask):
        pass
    assert not cluster._early
