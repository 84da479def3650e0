"""The real server under faults: its tables vanish or rot while it runs, a rollback leaves the
store without the served model's predictions, hostile or sloppy requests, and a token."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mlsys.errors import ExitCode
from mlsys.serving.log import read_log
from mlsys.serving.request import request_body
from tests.conftest import ENV, project_copy, registry_of, run
from tests.serving.harness import Server, another_version, append_logged, logged, wait_until

pytestmark = pytest.mark.slow
ONLINE = "data/serving/online.sqlite"


@pytest.fixture(scope="module")
def project(sample_project, tmp_path_factory) -> Path:
    return project_copy(sample_project, tmp_path_factory.mktemp("server-faults"))


@pytest.fixture(scope="module")
def dynamic(project) -> Iterator[Server]:
    server = Server(project, "inference.mode=dynamic", "inference.server.reload_seconds=0.2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def example(dynamic) -> dict:
    return httpx.get(f"{dynamic.url}/model").json()["example_request"]


def _problem(server: Server) -> str:
    response = httpx.get(f"{server.url}/readyz")
    return "" if response.status_code == 200 else json.dumps(response.json())


@pytest.mark.parametrize("fault", ["deleted", "garbage"])
def test_a_lost_or_rotten_online_table_makes_the_service_unready_not_wrong(project, dynamic, example, fault):
    table = project / ONLINE
    score = httpx.post(f"{dynamic.url}/predict", json=example).json()["score"]
    saved = table.with_suffix(".saved")
    table.rename(saved)
    if fault == "garbage":
        table.write_bytes(b"\x00 this is not a database \xff" * 500)
    try:
        assert wait_until(lambda: "online table" in _problem(dynamic)), _problem(dynamic)
        assert ONLINE in _problem(dynamic)
        answer = httpx.post(f"{dynamic.url}/predict", json=example)
        assert answer.status_code == 503 and answer.json()["error"] == "lookup_unavailable", answer.text
        assert dynamic.metric('mlsys_table_available{table="online"}') == 0.0
    finally:
        table.unlink(missing_ok=True)
        saved.rename(table)
    assert wait_until(lambda: _problem(dynamic) == "")
    assert httpx.post(f"{dynamic.url}/predict", json=example).json()["score"] == score


def test_unknown_entities_are_counted_as_lookup_misses(dynamic, example):
    before = dynamic.metric('mlsys_lookup_misses_total{table="online"}') or 0.0
    unknown = {**example, "flight": 9998}
    assert httpx.post(f"{dynamic.url}/predict", json=unknown).status_code == 200
    assert dynamic.metric('mlsys_lookup_misses_total{table="online"}') == before + 1


def test_after_a_rollback_static_answers_switch_table_and_hybrid_computes(project, example):
    """The store holds one table per version: a rollback to a version without predictions
    makes static answers 503 (not the other model's scores) and hybrid compute; `mlsys
    predict` then fills that version's table and static answers come back, by it."""
    static = Server(project, "inference.mode=static", "inference.server.reload_seconds=0.2")
    hybrid = Server(project, "inference.mode=hybrid", "inference.server.reload_seconds=0.2")
    try:
        first = registry_of(project).live()
        assert httpx.post(f"{static.url}/predict", json=example).json()["model_version"] == first
        second = another_version(project)
        run(["mlsys", "rollback", "--to", second], project)
        assert wait_until(lambda: "no predictions by" in _problem(static)), _problem(static)
        answer = httpx.post(f"{static.url}/predict", json=example)
        assert answer.status_code == 503 and answer.json()["error"] == "store_unavailable"
        assert wait_until(lambda: httpx.post(f"{hybrid.url}/predict", json=example).json()["model_version"] == second)
        assert httpx.post(f"{hybrid.url}/predict", json=example).json()["path"] == "dynamic"
        run(["mlsys", "predict"], project)
        assert wait_until(lambda: _problem(static) == "")
        stored = httpx.post(f"{static.url}/predict", json=example).json()
        computed = httpx.post(f"{hybrid.url}/predict", json={**example}).json()
        assert stored["model_version"] == second and stored["path"] == "static"
        assert abs(stored["score"] - computed["score"]) <= 1e-9
        run(["mlsys", "rollback", "--to", first], project)  # its table was kept: static at once
        assert wait_until(
            lambda: httpx.post(f"{static.url}/predict", json=example).json().get("model_version") == first
        )
    finally:
        static.stop()
        hybrid.stop()


def test_hostile_and_sloppy_requests_get_a_clear_4xx(dynamic, example):
    url = f"{dynamic.url}/predict"

    def problems(response: httpx.Response) -> list[dict]:
        assert response.status_code == 422, response.text
        return response.json()["detail"]

    feb30 = problems(httpx.post(url, json={**example, "month": 2, "day": 30}))
    assert "do not form a date and time" in feb30[0]["msg"]
    deep = "[" * 100_000 + "]" * 100_000
    nested = httpx.post(url, content=deep, headers={"content-type": "application/json"})
    assert nested.status_code == 422 and "nested deeper" in nested.json()["detail"]
    text = httpx.post(url, content=json.dumps(example), headers={"content-type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"] == "unsupported_media_type"
    types = [("content-type", "text/plain"), ("content-type", "application/json")]
    assert httpx.post(url, content=json.dumps(example), headers=types).status_code == 415  # a repeat: the first
    # A client's value repeated in the error: a list nested past any encoder's depth, an integer
    # past 64 bits (kept exact by the json module, which reads a body with NaN): still a 422.
    deep = problems(httpx.post(url, json={**example, "carrier": json.loads("[" * 300 + "]" * 300)}))
    assert deep[0]["field"] == "carrier" and deep[0]["input"] is None
    body = json.dumps({**example, "flight": 2**70, "wx_temp": float("nan")})
    huge = problems(httpx.post(url, content=body, headers={"content-type": "application/json"}))
    assert {p["field"]: p["input"] for p in huge} == {"flight": str(2**70), "wx_temp": None}
    assert problems(httpx.post(url, json={**example, "distance": "529"}))[0]["field"] == "distance"
    assert problems(httpx.post(url, json={**example, "flight": True}))[0]["field"] == "flight"
    wind = problems(httpx.post(url, json={**example, "wx_wind_speed": 1048.0}))
    assert wind[0]["field"] == "wx_wind_speed" and "150" in wind[0]["msg"]  # the weather contract's bound
    delay = problems(httpx.post(url, json={**example, "origin_dep_delay_3h": 5000.0}))
    assert delay[0]["field"] == "origin_dep_delay_3h"  # contract.dataset's bound for an aggregate
    assert httpx.post(url, json={**example, "wx_wind_speed": 12.5}).status_code == 200
    metrics = httpx.get(f"{dynamic.url}/metrics").text
    assert 'status="500"' not in metrics


def test_a_chunked_body_is_cut_off_while_it_streams(dynamic):
    """No content-length: the limit holds while reading (413 before the body ends)."""
    sock = socket.create_connection(("127.0.0.1", dynamic.port), timeout=20)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"[" + b" " * 65_534 + b"\n"
    sent = 0
    try:
        while sent < 50_000_000 and not select.select([sock], [], [], 0)[0]:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    head = sock.recv(4096).decode(errors="replace")
    sock.close()
    assert head.startswith("HTTP/1.1 413"), head[:200]
    # Refused while it streamed, long before the 50 MB ended (the client's count also holds what
    # the kernel's socket buffers took, several MB on a loaded machine).
    assert sent < 25_000_000


def test_check_requests_holds_carried_lookups_to_their_tables_bounds(project, dynamic, example):
    log = project / "logs/requests"
    httpx.post(f"{dynamic.url}/predict", json={**example, "wx_wind_speed": 12.5})
    assert httpx.post(f"{dynamic.url}/predict", json={**example, "distance": "far"}).status_code == 422
    assert wait_until(lambda: (logged(log).get("input.wx_wind_speed", pd.Series()) == 12.5).any())
    assert wait_until(lambda: (read_log(log).refused["error"] == "invalid").any())
    run(["mlsys", "check-requests"], project)  # a refused request is no record to check
    line = logged(log).tail(1).assign(**{"input.wx_wind_speed": 1048.0})
    append_logged(log, line)  # what a client could have sent around the service
    proc = run(["mlsys", "check-requests"], project, check=False)
    assert proc.returncode == ExitCode.CONTRACT and "wx_wind_speed" in proc.stdout


def test_an_optional_bearer_token_guards_predict(project, example):
    env = {**ENV, "MLSYS_TEST_TOKEN": "s3cret-token"}
    server = Server(project, "inference.server.auth_token_env=MLSYS_TEST_TOKEN", env=env)
    try:
        url = f"{server.url}/predict"
        assert httpx.post(url, json=example).status_code == 401
        wrong = httpx.post(url, json=example, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert httpx.post(url, json=example, headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert httpx.post(f"{server.url}/explain", json=example).status_code == 401  # the same guard
        assert httpx.get(f"{server.url}/livez").status_code == 200  # probes stay open
    finally:
        server.stop()
    unset = {k: v for k, v in env.items() if k != "MLSYS_TEST_TOKEN"}
    proc = run(["mlsys", "serve", "inference.server.auth_token_env=MLSYS_TEST_TOKEN"], project, check=False, env=unset)
    assert proc.returncode == ExitCode.CONFIG and "MLSYS_TEST_TOKEN" in proc.stderr


def test_request_bodies_from_the_batch_rows_pass_the_request_model(project, dynamic):
    """The strict request model still takes every real row as callers send it."""
    columns = list(httpx.get(f"{dynamic.url}/model").json()["example_request"])
    rows = pd.read_parquet(project / "data/dataset/unlabelled.parquet").head(300)
    bodies = [request_body(r, columns) for _, r in rows.iterrows()]
    answer = httpx.post(f"{dynamic.url}/predict", json=bodies, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    assert len(answer.json()["predictions"]) == len(bodies)
