"""The real server with a personal (`pii: true`) request field: logged masked, its feature
value encoded, and `mlsys check-requests` passes on the masked log."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mlsys.contracts import PII
from mlsys.errors import ExitCode
from tests.conftest import project_copy, run
from tests.serving.harness import Server, logged, wait_until

pytestmark = pytest.mark.slow
PERSONAL = "contract.tables.flights.columns.dest.pii=true"  # dest: a vocabulary feature, not a slice


@pytest.fixture(scope="module")
def project(sample_project, tmp_path_factory) -> Path:
    return project_copy(sample_project, tmp_path_factory.mktemp("pii"))


def test_a_pii_field_is_logged_masked_with_its_encoded_feature(project):
    log = project / "logs/requests"
    server = Server(project, "inference.mode=dynamic", PERSONAL)
    try:
        example = httpx.get(f"{server.url}/model").json()["example_request"]
        answer = httpx.post(f"{server.url}/predict", json=example)
        assert answer.status_code == 200, answer.text
        assert wait_until(lambda: len(logged(log)) > 0)
    finally:
        server.stop()
    line = logged(log).iloc[-1]
    assert line["input.dest"] == PII
    assert line["input.flight"] == example["flight"] and line["input.origin"] == example["origin"]  # the rest as sent
    assert not any(example["dest"].encode() in f.read_bytes() for f in log.rglob("*.arrows"))
    assert isinstance(line["feature.dest"], float)  # the vocabulary code the model saw, not the text
    checked = run(["mlsys", "check-requests", PERSONAL], project)
    assert "not checked (pii: logged masked): dest" in checked.stdout
    unmasked = run(["mlsys", "check-requests"], project, check=False)  # dest held to its regex: fails
    assert unmasked.returncode == ExitCode.CONTRACT, unmasked.stdout
