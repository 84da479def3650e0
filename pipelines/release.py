"""Gate the packaged candidate; if blessed, add it to the registry and make it live."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.config import provenance
from mlsys.config import select as select_keys
from mlsys.data.build import EVENT_TIME, LABEL
from mlsys.errors import GateError, MlsysError
from mlsys.io import read_json, read_parquet, write_json
from mlsys.model import FEATURES_FILE, Model, load_model
from mlsys.model.evaluate import scores
from mlsys.model.integrity import probe, verify
from mlsys.release import gates as g
from mlsys.release.infra import infra_gate
from mlsys.release.registry import Registry
from mlsys.split import resolved, select
from mlsys.stages import SERVE


def _live_metrics(registry: Registry, live: str | None, test: pd.DataFrame, bins: int) -> dict[str, Any] | None:
    """The live model re-scored on the candidate's test rows: like is compared with like."""
    if live is None:
        return None
    try:
        model = load_model(registry.path(live), version=live)  # verified: a corrupt live model is named
        return scores(test[LABEL].to_numpy("int8"), model.predict_frame(test), bins)
    except (MlsysError, KeyError, ValueError) as exc:
        return {"error": f"the live model {live} cannot score this test window: {exc}"}


def _gates(cfg: DictConfig, root: Path, model: Model, registry: Registry, live: str | None) -> list[g.Gate]:
    p, rel = cfg.paths, cfg.release
    metrics = model.meta["metrics"]  # the bundle's card (load_model read it): what would be released
    slices = read_json(root / p.metrics / "slices.json", "slice metrics: run evaluate")
    fitted = read_json(root / p.features / FEATURES_FILE, "feature state: run featurize")
    dataset = read_parquet(root / p.dataset / "labelled.parquet", "built dataset: run build")
    split = resolved(root / p.features)
    test = select(dataset, EVENT_TIME, split, split.test)
    # The sandboxed server gets requests as callers send them (the request columns; the rest
    # is looked up in an online table built from these rows), never the label.
    sample = test.sample(min(rel.infra.requests, len(test)), random_state=0).drop(columns=[LABEL])
    serve = OmegaConf.to_container(select_keys(cfg, SERVE), resolve=True)
    live_metrics = _live_metrics(registry, live, test, cfg.evaluation.calibration_bins)
    # Dynamic: the test window is the newest `training.holdout`, so a bound the live model
    # misses too on it says the week was hard; the change gates still apply.
    absolute = (
        g.rolling_absolute_gates(metrics, live_metrics, rel)
        if cfg.training.mode == "dynamic"
        else g.absolute_gates(metrics, rel)
    )
    return [
        *absolute,
        *g.slice_gates(slices, rel),
        *g.change_gates(metrics, live_metrics, live, rel),
        g.baseline_gate(metrics, rel),
        *g.stability_gates(model.predict_frame(test), rel),
        g.feature_list_gate(model.pipeline.names, [f["name"] for f in fitted["features"]]),
        infra_gate(root / p.bundle, sample, model.predict_frame(sample), serve, rel.infra.timeout_seconds),
    ]


def _load_candidate(bundle: Path) -> tuple[Model | None, list[g.Gate]]:
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


def run(cfg: DictConfig, root: Path) -> None:
    """Bundle + metrics + test window -> blessing record; blessed -> registry, live.

    Under `dvc exp run` (DVC_EXP_BASELINE_REV is set) the gates are evaluated and
    recorded, but nothing is released and a rejection does not fail the experiment:
    experiments are compared, and promoted on purpose (`dvc exp apply`, `mlsys release`).
    """
    p = cfg.paths
    registry = Registry(root / p.registry, cfg.release.model_name)
    live = registry.live()
    model, gates = _load_candidate(root / p.bundle)
    version = model.version if model is not None else "unloadable"
    if model is not None:
        try:
            gates += _gates(cfg, root, model, registry, live)
        except MlsysError as exc:
            gates.append(g.make_gate("stability", "gates_evaluated", None, "every gate evaluates", False, str(exc)))
    record = {
        **g.blessing(gates, version, live),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **provenance("release", cfg),
    }
    experiment = os.environ.get("DVC_EXP_BASELINE_REV")
    if experiment:
        record["not_released"] = "dvc exp run: gates evaluated only; to release: dvc exp apply, then mlsys release"
    write_json(root / p.reports / "blessing.json", record)
    write_json(root / p.metrics / "release.json", {"blessed": record["blessed"], "gates_failed": len(record["failed"])})
    print(g.summary(record))
    if experiment:
        print(f"release: {record['not_released']}")
        return
    if not record["blessed"]:
        raise GateError(
            f"candidate {version} rejected; live model stays {live or '(none)'}; gates in {p.reports}/blessing.json"
        )
    registry.add(
        root / p.bundle,
        version,
        {
            "blessing.json": json.dumps(record, indent=2, sort_keys=True, default=str),
            "params.yaml": (root / "params.yaml").read_text(encoding="utf-8"),
        },
    )
    event = registry.release(version, reason="blessed by the release stage", expected_live=live)
    before = "already live" if event.get("noop") else f"was {live or 'none'}"
    print(f"release: {version} is live ({before}); registry {registry.root}")
