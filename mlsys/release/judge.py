"""The release rules in one place: every gate a candidate passes before it may go live.

The release stage judges the packaged candidate with `judge`, and so does every backtest
retrain, skipping only what a replay cannot do (`backtest.skip_gates`, default the sandboxed
server); a skipped gate is recorded as such, so the report shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mlsys.data.columns import LABEL
from mlsys.errors import MlsysError
from mlsys.model import Model, load_model
from mlsys.model.evaluate import Evaluation
from mlsys.model.integrity import probe, verify
from mlsys.release import gates as g
from mlsys.release.gates import GATES
from mlsys.tasks import Task


def load_candidate(bundle: Path) -> tuple[Model | None, list[g.Gate]]:
    """The bundle, if its files match their checksums and a child process loaded it first
    (LightGBM can abort on a corrupt model file instead of raising): stability gates."""

    def gate(metric: str, threshold: str, passed: bool, reason: str) -> g.Gate:
        return g.make_gate("stability", metric, None, threshold, passed, reason)

    try:
        verify(bundle)
    except MlsysError as exc:
        return None, [gate("integrity", "checksums.json matches every file", False, str(exc))]
    checked = gate("integrity", "checksums.json matches every file", True, "every bundle file matches its checksum")
    failure = probe(bundle)
    if failure:
        return None, [checked, gate("loads", "loads in a child process", False, failure)]
    try:
        model = load_model(bundle)  # the loader the server uses
    except MlsysError as exc:
        return None, [checked, gate("loads", "load_model succeeds", False, str(exc))]
    return model, [checked, gate("loads", "loads in a child process, then here", True, "the bundle loads")]


def live_scores(
    task: Task, live: Callable[[], Model] | None, version: str | None, test: pd.DataFrame, bins: int
) -> Any:
    """The live model re-scored on the candidate's test rows (like is compared with like) by
    the candidate's task; None when nothing is live, an `error` record when it cannot score
    them (another task, other classes, a feature it cannot compute)."""
    if live is None:
        return None
    try:
        model = live()
        if model.task.spec() != task.spec():
            raise ValueError(f"it is a {model.task.spec()} model, the candidate a {task.spec()} one")
        return task.scores(task.truth(test[LABEL]), model.predict_frame(test), bins)
    except (MlsysError, KeyError, ValueError) as exc:
        return {"error": f"the live model {version} cannot score this test window: {exc}"}


def judge(
    task: Task,
    result: Evaluation,
    names: list[str],
    artifact_names: list[str],
    live: dict[str, Any] | None,
    live_version: str | None,
    release: DictConfig,
    rolling: bool,
    waivers_before: int = 0,
    skip: Collection[str] = (),
    infra: Callable[[], g.Gate] | None = None,
    leakage: dict[str, Any] | None = None,
) -> list[g.Gate]:
    """Every gate, in order: suspected leakage (`leakage`: the candidate's figures), absolute
    (waived within limits on a rolling holdout the live model also misses), slices (and
    classes), change vs the live model, baseline, numerical stability and features, and the
    sandboxed server (`infra`, a callable: it is the expensive one)."""
    metrics = result.metrics
    by_kind: dict[str, Callable[[], list[g.Gate]]] = {
        "leakage": lambda: g.leakage_gates(leakage, release.leakage),
        "absolute": lambda: (
            g.rolling_absolute_gates(metrics, live, release, waivers_before)
            if rolling
            else g.absolute_gates(metrics, release)
        ),
        "slice": lambda: [*g.slice_gates(result.slices, release), *g.per_class_gates(task, metrics, release)],
        "change": lambda: g.change_gates(task, metrics, live, live_version, release),
        "baseline": lambda: [g.baseline_gate(task, metrics, release)],
        "stability": lambda: [
            *g.stability_gates(task, result.predictions, release),
            g.feature_list_gate(names, artifact_names),
        ],
        "infra": lambda: [infra()] if infra else [],
    }
    gates: list[g.Gate] = []
    for kind in GATES:
        if kind in skip:
            why = "skipped: a replay has no server to sandbox" if kind == "infra" else "skipped"
            gates.append(g.make_gate(kind, "all", None, None, None, f"{why} (backtest.skip_gates)"))
        else:
            gates.extend(by_kind[kind]())
    return gates
