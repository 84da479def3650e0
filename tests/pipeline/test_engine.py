"""The Dask engine on the flights sample, a real DVC repo: `engine: dask` in conf/ reruns
validate (by slice of rows on a LocalCluster of 2 worker processes), build (by time slice),
featurize (exact reductions over slices) and training (lightgbm.dask): the validated tables,
built dataset, feature state, profile and encoded windows are the local ones byte for byte;
the model is as good as the local one; batch scoring by partition fills the lookup store with
the local engine's answers. The lleaves backend fills it with LightGBM's answers too."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from tests.conftest import ran, registry_of, run

pytestmark = pytest.mark.slow


def _digests(project, *folders: str) -> dict[str, str]:
    """sha256 of the data files in `folders` (windows.json aside: it records the config, engine included)."""
    return {
        str(f.relative_to(project)): hashlib.sha256(f.read_bytes()).hexdigest()
        for folder in folders
        for f in sorted((project / folder).rglob("*"))
        if f.is_file() and f.name != "windows.json"
    }


def _store(project) -> list[tuple]:
    live = registry_of(project).live()
    with sqlite3.connect(project / "data/serving/predictions.sqlite") as con:
        return con.execute(f'SELECT entity, score FROM "predictions_{live}" ORDER BY entity').fetchall()


def test_engine_dask_trains_on_a_local_cluster_and_scores_by_partition(sample_copy):
    p = sample_copy
    local = json.loads((p / "metrics/metrics.json").read_text())
    before = _digests(p, "data/validated", "data/dataset", "data/features")
    config = p / "conf/config.yaml"
    config.write_text(config.read_text().replace("  - engine: local", "  - engine: dask"))
    run(["mlsys", "compose"], p)
    out = run(["dvc", "repro", "evaluate"], p).stdout
    assert ran(out) == {"guard", "snapshot", "validate", "build", "featurize", "train", "evaluate"}, out
    after = _digests(p, "data/validated", "data/dataset", "data/features")
    assert after == before and len(after) >= 9, after
    assert "lightgbm.dask on 2 workers" in out
    spread = json.loads((p / "metrics/metrics.json").read_text())
    assert abs(spread["auc"] - local["auc"]) < 0.02, (spread["auc"], local["auc"])  # ~20k rows: sampling noise
    run(["mlsys", "predict", "engine=local"], p)
    before = _store(p)
    run(["mlsys", "predict", "engine=dask", "engine.dask.partitions=5"], p)
    assert _store(p) == before and len(before) > 1000


def test_backend_lleaves_fills_the_store_with_the_boosters_answers_and_reuses_its_compilation(sample_copy):
    p = sample_copy
    run(["mlsys", "predict", "inference.backend=lightgbm"], p)
    before = dict(_store(p))
    run(["mlsys", "predict", "inference.backend=lleaves"], p)
    report = json.loads((p / "reports/predict.json").read_text())
    compiled = p / "models/compiled" / report["backend"]["compiled"]
    assert compiled.is_file() and report["backend"]["name"] == "lleaves"
    after = dict(_store(p))
    assert after.keys() == before.keys() and len(before) > 1000
    assert max(abs(after[k] - before[k]) for k in before) < 1e-12
    stamp = compiled.stat().st_mtime_ns
    run(["mlsys", "predict", "inference.backend=lleaves"], p)
    assert compiled.stat().st_mtime_ns == stamp  # the cached object is loaded, not compiled again
