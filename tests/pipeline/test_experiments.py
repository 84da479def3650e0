"""Experiments as DVC users run them: a queued sweep (`dvc exp run --queue -S 'k=a,b'`, then
`dvc queue start`) runs in copies of the project without its git-ignored registry, yet each
run's change gates compare with the real live model, and nothing is released."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import registry_of, run

pytestmark = pytest.mark.slow


def _experiments(project) -> dict[str, dict]:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    return {
        exp["name"]: exp
        for entry in shown
        for r in entry.get("experiments") or []
        for exp in r["revs"]
        if exp.get("name")
    }


def test_a_queued_sweep_runs_and_gates_against_the_live_model(sample_copy):
    p = sample_copy
    live = registry_of(p).live()
    run(["dvc", "exp", "run", "--queue", "-S", "model.params.num_leaves=15,31"], p)
    run(["dvc", "queue", "start", "-j", "1"], p)
    deadline = time.time() + 900
    done: dict[str, dict] = {}
    while time.time() < deadline:
        done = {n: e for n, e in _experiments(p).items() if (e.get("data") or {}).get("metrics")}
        if len(done) >= 2:
            break
        time.sleep(5)
    status = subprocess.run(["dvc", "queue", "status"], cwd=p, capture_output=True, text=True).stdout
    assert len(done) == 2, status
    leaves = sorted(e["data"]["params"]["params.yaml"]["data"]["model"]["params"]["num_leaves"] for e in done.values())
    assert leaves == [15, 31]
    baseline = run(["git", "show", "HEAD:studies/dvc.lock"], p).stdout
    for exp in done.values():
        blessing = json.loads(run(["git", "show", f"{exp['rev']}:reports/blessing.json"], p).stdout)
        assert "seen from the experiment workspace" in blessing["registry"]
        change = [g for g in blessing["gates"] if g["gate"] == "change"]
        assert change and all(f"vs live {live}" in g["reason"] for g in change), change  # not "skipped"
        assert run(["git", "show", f"{exp['rev']}:studies/dvc.lock"], p).stdout == baseline  # no study ran
    assert registry_of(p).live() == live and registry_of(p).versions() == [live]  # experiments never release
