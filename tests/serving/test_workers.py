"""`mlsys serve --workers 2`: two worker processes on one socket (uvicorn), each loading the
model and reloading it on a release; /metrics counts every worker's requests (Prometheus'
multiprocess mode), whichever worker answers the scrape; each worker writes its own request
log files, and no answered record is missing from them."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from mlsys.serving.log import read_log
from mlsys.serving.request import request_body
from tests.conftest import project_copy, registry_of
from tests.serving.harness import Server, another_version, wait_until

pytestmark = pytest.mark.slow
LOG = "logs/requests"


@pytest.fixture(scope="module")
def project(sample_project, tmp_path_factory) -> Path:
    return project_copy(sample_project, tmp_path_factory.mktemp("workers"))


def test_two_workers_share_the_socket_the_metrics_and_each_reloads(project):
    import pandas as pd

    registry = registry_of(project)
    live = registry.live()
    server = Server(project, "--workers", "2", "inference.mode=dynamic")
    try:
        pids = {httpx.get(f"{server.url}/livez").json()["pid"] for _ in range(80)}  # a new connection each
        assert len(pids) == 2, pids
        columns = list(httpx.get(f"{server.url}/model").json()["example_request"])
        rows = pd.read_parquet(project / "data/dataset/labelled.parquet").tail(120)
        for _, row in rows.iterrows():
            assert httpx.post(f"{server.url}/predict", json=request_body(row, columns)).status_code == 200
        scrapes = [server.metric('mlsys_requests_total{endpoint="/predict",status="200"}') for _ in range(6)]
        assert scrapes == [120.0] * 6  # every worker's requests, whichever worker answers
        exposition = httpx.get(f"{server.url}/metrics").text
        serving = re.findall(rf'mlsys_model_info{{pid="(\d+)",version="{live}"}} 1\.0', exposition)
        assert sorted(map(int, serving)) == sorted(pids)  # one series per live worker
        new = another_version(project, trees=3)
        registry.release(new, "test: each worker reloads", expected_live=live)

        def switched() -> bool:
            return all(httpx.get(f"{server.url}/model").json()["version"] == new for _ in range(30))

        assert wait_until(switched, 30)  # both workers, asked on fresh connections
    finally:
        server.stop()
    files = list((project / LOG).rglob("*.arrows"))
    assert len({re.search(r"-(\d+)-", f.name).group(1) for f in files}) == 2  # a log file per worker
    assert len(read_log(project / LOG).frame) == 120
