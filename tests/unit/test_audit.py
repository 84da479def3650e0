"""The ML Test Score audit scores from evidence that holds (tests that passed, config that does
something), and drops when it goes."""

from __future__ import annotations

import shutil

import pytest

from mlsys.audit import RUBRIC, SECTIONS, Project, markdown, score
from tests.conftest import REPO, run


def test_rubric_has_28_tests_seven_per_section():
    assert len(RUBRIC) == 28
    for section in SECTIONS:
        assert sum(t.id.startswith(section) for t in RUBRIC) == 7


def test_every_piece_of_evidence_named_in_the_rubric_exists_here():
    """A renamed test or stage would silently lower the score: catch it here instead. (Whether
    a named test passed is the latest run's to say: here, that it exists.)"""
    import re

    project = Project.load(REPO)
    for test in RUBRIC:
        for evidence in (*test.automated, *test.manual):
            kind, _, what = evidence.partition(":")
            if kind == "test":
                path, _, name = what.partition("::")
                assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), f"{test.id}: {evidence}"
            elif evidence != "config:data.on_upstream_change=fail":  # off by default: 0.5 is earned by setting it
                assert project.holds(evidence), f"{test.id}: {evidence} not found"


def _with(project: Project, **changes) -> Project:
    fields = {k: getattr(project, k) for k in ("root", "params", "stages", "readme", "tracked", "results")}
    return Project(**{**fields, **changes})


def test_a_test_counts_only_if_it_passed_and_config_only_if_it_does_something():
    project = Project.load(REPO)
    name = "tests/model/test_determinism.py::test_training_is_byte_identical_across_processes"
    passed = _with(project, results={name: {"outcome": "passed"}})
    assert passed.holds(f"test:{name}") and not _with(project, results={}).holds(f"test:{name}")
    assert not _with(project, results={name: {"outcome": "failed"}}).holds(f"test:{name}")
    cases = {f"{name}[a]": {"outcome": "passed"}, f"{name}[b]": {"outcome": "failed"}}
    assert not _with(project, results=cases).holds(f"test:{name}")  # every parametrized case must pass
    off = {**project.params, "training": {**project.params["training"], "deterministic": False}}
    assert passed.holds("config:training.deterministic=true")
    assert not _with(passed, params=off).holds("config:training.deterministic=true")
    zero = {**project.params, "release": {**project.params["release"], "baseline": {"metric": "auc", "margin": 0.0}}}
    assert passed.holds("config:release.baseline.margin>0") and not _with(passed, params=zero).holds(
        "config:release.baseline.margin>0"
    )
    infra1 = {r["id"]: r for r in score(passed)["tests"]}["infra-1"]
    assert infra1["points"] == 1.0
    assert {r["id"]: r for r in score(_with(passed, params=off))["tests"]}["infra-1"]["points"] == 0.0


def test_score_follows_the_evidence(tmp_path):
    every = {e.partition(":")[2]: {"outcome": "passed"} for t in RUBRIC for e in (*t.automated, *t.manual)}
    project = _with(Project.load(REPO), results=every)  # as if every named test had passed
    full = score(project)
    assert full["final"] == min(full["sections"].values())
    by_id = {r["id"]: r for r in full["tests"]}
    assert by_id["infra-4"]["points"] == 1.0 and by_id["model-7"]["points"] == 0.0  # no evidence named
    # without the release stage, model validation before serving is no longer automated
    stripped = _with(project, stages={k: v for k, v in project.stages.items() if k != "release"})
    again = {r["id"]: r for r in score(stripped)["tests"]}
    assert again["infra-4"]["points"] == 0.0 and "stage:release" in again["infra-4"]["missing_evidence"]
    assert again["model-5"]["points"] == 0.0
    unblessed = _with(project, root=tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/blessing.json").write_text('{"blessed": false}')
    assert not unblessed.holds("blessed:reports/blessing.json")
    assert "| **final (lowest section)** |" in markdown(full)


def test_unknown_evidence_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown evidence kind"):
        Project(root=REPO).holds("magic:thing")


def test_cli_writes_json_and_markdown(tmp_path):
    import json

    for item in ("conf", "hydra_plugins", "tests", "bench", ".ci", "reports"):
        shutil.copytree(REPO / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
    for item in ("params.yaml", "dvc.yaml", "README.md", "dvc.lock"):
        shutil.copy(REPO / item, tmp_path / item)
    run("git init -q && git add -A", tmp_path)
    out = run(["mlsys", "audit"], tmp_path).stdout
    assert "final score (lowest section)" in out
    written = json.loads((tmp_path / "reports/audit.json").read_text())
    assert written["sections"] == score(Project.load(tmp_path))["sections"]
    assert {r["id"]: r["points"] for r in written["tests"]}["model-1"] == 0.5  # git evidence found
    assert (tmp_path / "reports/audit.md").read_text() == markdown(score(Project.load(tmp_path)))
