"""The real service: `mlsys serve` in a subprocess on 127.0.0.1, over real sockets, on the
reproduced sample project (its registry, online feature table and batch store)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsys.errors import ExitCode
from mlsys.model import load_model
from mlsys.serving.request import request_body
from mlsys.serving.store import predictions_table
from tests.conftest import project_copy, registry_of, run
from tests.serving.harness import Server, another_version, append_logged, logged

KEY = ["year", "month", "day", "carrier", "flight", "origin"]


@pytest.fixture(scope="module")
def project(sample_project, tmp_path_factory) -> Path:
    return project_copy(sample_project, tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def hybrid(project) -> Iterator[Server]:
    server = Server(project)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rows(project) -> pd.DataFrame:
    """Scheduled flights of the serving window, with their batch scores from the store."""
    import sqlite3

    frame = pd.concat([pd.read_parquet(project / f"data/dataset/{n}.parquet") for n in ("labelled", "unlabelled")])
    frame["entity"] = frame[KEY].astype(str).agg("|".join, axis=1)
    table = predictions_table(registry_of(project).live())
    with sqlite3.connect(project / "data/serving/predictions.sqlite") as con:
        store = pd.read_sql(f'SELECT entity, score AS batch_score FROM "{table}"', con)
    return frame.merge(store, on="entity")


def test_model_card_example_request_is_served_as_is(hybrid):
    card = httpx.get(f"{hybrid.url}/model").json()
    example = card["example_request"]
    assert {"carrier", "flight", "origin", "dest", "sched_dep_time"} <= set(example)
    answer = httpx.post(f"{hybrid.url}/predict", json=example).json()
    assert 0 < answer["score"] < 1 and answer["model_version"] == card["version"]
    assert answer["path"] == "static"  # the batch store holds it, by the served model
    assert card["timeline"]["released_at"] and card["timeline"]["trained_at"]
    listed = httpx.post(f"{hybrid.url}/predict", json=[example, example]).json()["predictions"]
    assert [p["score"] for p in listed] == [answer["score"]] * 2


def test_the_api_schema_describes_the_predict_body(hybrid):
    """/predict is a plain Starlette route, which FastAPI leaves out of /docs: it is put back,
    with the request record (the contract's columns) as its body, one or a list."""
    schema = httpx.get(f"{hybrid.url}/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = schema["components"]["schemas"]["Request"]
    example = httpx.get(f"{hybrid.url}/model").json()["example_request"]
    assert set(example) <= set(request["properties"]) and {"carrier", "flight"} <= set(request["required"])
    assert [part.get("type") for part in body["anyOf"]] == [None, "array"]
    assert body["anyOf"][0] == body["anyOf"][1]["items"] == {"$ref": "#/components/schemas/Request"}
    assert {"/explain", "/model", "/readyz"} <= set(schema["paths"])
    assert request["properties"]["dest"]["pattern"] == "^(?:[A-Z]{3})$"  # the whole value, as it is checked


def test_explain_takes_one_answer_apart_over_http_and_on_the_command_line(hybrid, project):
    """Contributions plus the bias are the raw score; the answer is /predict's; the lookups
    are the online table's; another kept version explains too; the CLI gives the same."""
    example = httpx.get(f"{hybrid.url}/model").json()["example_request"]
    predicted = httpx.post(f"{hybrid.url}/predict", json=example).json()
    got = httpx.post(f"{hybrid.url}/explain", json=example)
    assert got.status_code == 200, got.text
    out = got.json()
    assert sum(out["contributions"].values()) + out["bias"] == pytest.approx(out["raw_score"], abs=1e-9)
    assert out["answer"]["score"] == pytest.approx(predicted["score"], abs=1e-9)  # store and computed agree
    assert out["stored_answer"]["score"] == predicted["score"] and out["online"] == "found"
    assert out["looked_up"]["wx_temp"] is not None and "wx_temp" not in example
    assert {f["name"] for f in out["features"]} == set(out["contributions"])
    other = another_version(project, trees=10)
    older = httpx.post(f"{hybrid.url}/explain", params={"version": other}, json=example).json()
    assert older["model_version"] == other and older["raw_score"] != out["raw_score"]
    assert "stored_answer" not in older  # the store holds the served model's answers only
    assert httpx.post(f"{hybrid.url}/explain", params={"version": "0" * 12}, json=example).status_code == 404
    assert httpx.post(f"{hybrid.url}/explain", json=[example, example]).status_code == 422
    assert httpx.post(f"{hybrid.url}/explain", json={**example, "month": 13}).json()["error"] == "invalid"
    cli = run(["mlsys", "explain", "--json", "--entity", out["entity"]], project)
    assert json.loads(cli.stdout)["raw_score"] == pytest.approx(out["raw_score"], abs=1e-12)
    shown = run(["mlsys", "explain", "--record", json.dumps(example)], project).stdout
    assert "= raw score" in shown and "wx_temp" in shown
    bad = run(["mlsys", "explain", "--record", json.dumps({**example, "month": 13})], project, check=False)
    assert bad.returncode == ExitCode.CONTRACT and "month" in bad.stderr


@pytest.fixture(scope="module")
def dynamic(project) -> Iterator[Server]:
    server = Server(project, "inference.mode=dynamic")
    yield server
    server.stop()


def test_batch_store_and_http_give_the_same_score(dynamic, rows):
    """One feature code path: the batch stage's score (frame path), read back from the store,
    equals the score computed over HTTP from the request fields + the online table."""
    columns = list(httpx.get(f"{dynamic.url}/model").json()["example_request"])
    sample = rows.sample(400, random_state=1)
    bodies = [request_body(r, columns) for _, r in sample.iterrows()]
    got = httpx.post(f"{dynamic.url}/predict", json=bodies, timeout=30).json()["predictions"]
    assert {g["path"] for g in got} == {"dynamic"}
    assert [g["entity"] for g in got] == sample["entity"].tolist()
    diff = np.abs(np.array([g["score"] for g in got]) - sample["batch_score"].to_numpy())
    assert diff.max() <= 1e-9, diff.max()


def test_several_records_are_scored_by_the_compiled_model_with_backend_lleaves(project, rows):
    """`inference.backend: lleaves`: the served version is compiled into paths.compiled (by
    version and host) and a request of several records gets the batch store's scores."""
    from mlsys.model.compiled import cache_name

    version = registry_of(project).live()
    compiled = project / "models/compiled" / cache_name(version, inline=False)
    compiled.unlink(missing_ok=True)
    server = Server(project, "inference.mode=dynamic", "inference.backend=lleaves")
    try:
        assert compiled.exists()
        columns = list(httpx.get(f"{server.url}/model").json()["example_request"])
        sample = rows.sample(200, random_state=2)
        got = httpx.post(f"{server.url}/predict", json=[request_body(r, columns) for _, r in sample.iterrows()])
        scores = np.array([g["score"] for g in got.json()["predictions"]])
        np.testing.assert_allclose(scores, sample["batch_score"].to_numpy(), rtol=0, atol=1e-9)
    finally:
        server.stop()


def _problems(response: httpx.Response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def test_bad_requests_get_a_clear_4xx_and_never_crash_the_service(hybrid, project, rows):
    url = f"{hybrid.url}/predict"
    example = httpx.get(f"{hybrid.url}/model").json()["example_request"]
    post = lambda body, **kw: httpx.post(url, content=body, headers={"content-type": "application/json"}, **kw)  # noqa: E731
    assert post(b'{"carrier": "UA",').json()["error"] == "malformed_json"
    missing = {k: v for k, v in example.items() if k != "carrier"}
    assert _problems(httpx.post(url, json=missing))[0] | {"input": None} == {
        "loc": ["carrier"], "field": "carrier", "msg": "Field required", "input": None
    }  # fmt: skip
    extra = _problems(httpx.post(url, json={**example, "gate": "B12"}))
    assert extra[0]["field"] == "gate" and "Extra inputs are not permitted" in extra[0]["msg"]
    wrong = _problems(httpx.post(url, json={**example, "flight": "one"}))
    assert wrong[0]["field"] == "flight" and "integer" in wrong[0]["msg"]
    bounds = _problems(httpx.post(url, json={**example, "origin": "BOS", "distance": 0}))
    assert {p["field"] for p in bounds} == {"origin", "distance"}
    nan = _problems(post(json.dumps({**example, "wx_temp": float("nan")}).encode()))
    assert nan[0]["field"] == "wx_temp" and "finite" in nan[0]["msg"]
    listed = _problems(httpx.post(url, json=[example, {**example, "month": 13}]))
    assert listed[0]["loc"][:2] == [1, "month"]  # which record, which field
    assert post(b"x" * 1_000_001).status_code == 413
    assert httpx.post(url, json=[example] * 1001).status_code == 413
    assert httpx.post(url, json=[]).status_code == 422
    assert httpx.get(f"{hybrid.url}/livez").status_code == 200
    metrics = httpx.get(f"{hybrid.url}/metrics").text
    assert 'mlsys_errors_total{kind="invalid"}' in metrics and 'status="500"' not in metrics


def test_unknown_categories_are_encoded_as_in_training(dynamic, project, rows):
    example = httpx.get(f"{dynamic.url}/model").json()["example_request"]
    frame = rows[rows.entity == "|".join(str(example[k]) for k in KEY)].head(1).assign(dest="ZZZ")  # never seen
    got = httpx.post(f"{dynamic.url}/predict", json={**example, "dest": "ZZZ"}).json()
    model = load_model(registry_of(project).path(got["model_version"]))
    assert abs(got["score"] - model.predict_frame(frame)[0]) <= 1e-9


def test_a_release_and_a_rollback_switch_models_without_failing_a_request(dynamic, project):
    registry = registry_of(project)
    first = registry.live()
    second = another_version(project)
    example = httpx.get(f"{dynamic.url}/model").json()["example_request"]
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=dynamic.url) as client:
            while not stop.is_set():
                r = client.post("/predict", json=example)
                seen.append((r.status_code, r.json().get("model_version", r.text)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()

    def wait_for(version: str) -> None:
        deadline = time.time() + 20
        while time.time() < deadline and not (seen and seen[-1][1] == version):
            time.sleep(0.05)

    try:
        time.sleep(0.5)
        registry.release(second, reason="test: switch under load", expected_live=first)
        wait_for(second)
        registry.rollback(first, reason="test: switch back")
        wait_for(first)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert {status for status, _ in seen} == {200}, [s for s in seen if s[0] != 200][:3]
    versions = [v for _, v in seen]
    assert versions[0] == first and versions[-1] == first and second in versions
    assert httpx.get(f"{dynamic.url}/model").json()["version"] == first
    assert "mlsys_model_reloads_total 2.0" in httpx.get(f"{dynamic.url}/metrics").text


def test_load_run_has_no_server_error_and_loses_no_log_entry(project, rows):
    """20,000 requests from 16 keep-alive connections (stdlib http.client: a light client,
    so the two cores go to the server); then a graceful stop drains the request log."""
    server = Server(project, "paths.request_log=logs/load")
    n, concurrency = 20_000, 16
    columns = list(httpx.get(f"{server.url}/model").json()["example_request"])
    bodies = [json.dumps(request_body(r, columns)).encode() for _, r in rows.head(500).iterrows()]
    jobs = iter(range(n))
    statuses: list[int] = []

    def worker() -> None:
        con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for i in jobs:
            con.request("POST", "/predict", body=bodies[i % len(bodies)], headers={"content-type": "application/json"})
            response = con.getresponse()
            response.read()
            statuses.append(response.status)
        con.close()

    try:
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        out = server.stop()
    assert len(statuses) == n and set(statuses) == {200}, out
    entries = logged(project / "logs/load")
    assert len(entries) == n  # sample_rate 1.0: every answered record, none lost
    assert {"received_at", "prediction_time", "answer.score", "model_version", "path", "latency_ms"} <= set(entries)
    assert entries["prediction_time"].notna().all() and entries["input.origin"].notna().all()
    checked = run(["mlsys", "check-requests", "paths.request_log=logs/load"], project)
    assert json.loads((project / "reports/requests.json").read_text())["rows_passed"] == n, checked.stdout
    append_logged(project / "logs/load", entries.head(1).assign(**{"input.origin": "BOS"}))  # sent around the service
    broken = run(["mlsys", "check-requests", "paths.request_log=logs/load"], project, check=False)
    assert broken.returncode == ExitCode.CONTRACT and "origin" in broken.stdout


def test_a_batch_that_fails_its_checks_leaves_the_previous_table(project):
    import sqlite3

    def table() -> list[tuple]:
        table = predictions_table(registry_of(project).live())
        with sqlite3.connect(project / "data/serving/predictions.sqlite") as con:
            return con.execute(f'SELECT * FROM "{table}" ORDER BY entity').fetchall()

    before = table()
    proc = run(["mlsys", "predict", "inference.checks.min_coverage=1.01"], project, check=False)
    assert proc.returncode == ExitCode.GATE and "the store keeps its table" in proc.stderr
    assert not json.loads((project / "reports/predict.json").read_text())["passed"]
    assert table() == before and len(before) > 1000
    run(["mlsys", "predict"], project)  # passing checks: the table is replaced (a later created_at)
    after = table()
    assert [r[:2] for r in after] == [r[:2] for r in before] and after[0][2] > before[0][2]
