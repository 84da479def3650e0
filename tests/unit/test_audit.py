"""The ML Test Score audit scores from evidence that exists, and drops when it goes."""

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
    """A renamed test or stage would silently lower the score: catch it here instead."""
    project = Project.load(REPO)
    for test in RUBRIC:
        for evidence in (*test.automated, *test.manual):
            assert project.holds(evidence), f"{test.id}: {evidence} not found"


def test_score_follows_the_evidence(tmp_path):
    project = Project.load(REPO)
    full = score(project)
    assert full["final"] == min(full["sections"].values())
    by_id = {r["id"]: r for r in full["tests"]}
    assert by_id["infra-4"]["points"] == 1.0 and by_id["data-5"]["points"] == 0.0
    # without the release stage, model validation before serving is no longer automated
    stripped = Project(
        root=project.root,
        params=project.params,
        stages={k: v for k, v in project.stages.items() if k != "release"},
        readme=project.readme,
        tracked=project.tracked,
    )
    again = {r["id"]: r for r in score(stripped)["tests"]}
    assert again["infra-4"]["points"] == 0.0 and "stage:release" in again["infra-4"]["missing_evidence"]
    assert again["model-5"]["points"] == 0.0
    unblessed = Project(
        root=tmp_path, params=project.params, stages=project.stages, readme=project.readme, tracked=project.tracked
    )
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
