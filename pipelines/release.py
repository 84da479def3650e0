"""Gate the packaged candidate; if blessed, add it to the registry and make it live."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.errors import GateError, MlsysError
from mlsys.io import read_json, read_parquet, write_json
from mlsys.model import FEATURES_FILE, Model, load_model
from mlsys.model.evaluate import Evaluation
from mlsys.release import gates as g
from mlsys.release.infra import infra_config, infra_gate
from mlsys.release.judge import judge, live_scores, load_candidate
from mlsys.release.registry import BLESSING, Registry, locate
from mlsys.split import resolved, select


def _gates(cfg: DictConfig, root: Path, model: Model, registry: Registry, live: str | None) -> tuple[list, int]:
    """The candidate judged (mlsys.release.judge) on the test window, against the live model
    re-scored on the same rows; and how many releases in a row used a waiver before it."""
    p, rel = cfg.paths, cfg.release
    slices = read_json(root / p.slice_metrics, "slice metrics: run evaluate")
    fitted = read_json(root / p.features / FEATURES_FILE, "feature state: run featurize")
    dataset = read_parquet(root / p.labelled, "built dataset: run build")
    split = resolved(root / p.windows)
    test = select(dataset, EVENT_TIME, split, split.test)
    # What would be released: the card's metrics (evaluate's), the bundle's own predictions.
    result = Evaluation(model.meta["metrics"], slices, model.predict_frame(test), np.array([]))
    # The sandboxed server gets requests as callers send them (the request columns; the rest
    # is looked up in an online table built from these rows), never the label.
    sample = test.sample(min(rel.infra.requests, len(test)), random_state=0).drop(columns=[LABEL])
    before = read_json(registry.path(live) / BLESSING, "the live version's blessing") if live else {}
    waivers = int(before.get("waivers_in_a_row", 0))
    task = model.task
    live_metrics = (
        live_scores(
            task, lambda: load_model(registry.path(live), version=live), live, test, cfg.evaluation.calibration_bins
        )
        if live
        else None
    )
    gates = judge(
        task,
        result,
        model.pipeline.names,
        [f["name"] for f in fitted["features"]],
        live_metrics,
        live,
        rel,
        rolling=cfg.training.mode == "dynamic",  # judged on the newest `training.holdout` days
        waivers_before=waivers,
        leakage=model.meta.get("leakage"),
        infra=lambda: infra_gate(
            root / p.bundle, sample, task, model.predict_frame(sample), infra_config(cfg), rel.infra.timeout_seconds
        ),
    )
    return gates, waivers


def run(cfg: DictConfig, root: Path) -> None:
    """Bundle + metrics + test window -> blessing record; blessed -> registry, live.

    Under `dvc exp run` (DVC_EXP_BASELINE_REV is set) the gates are evaluated and
    recorded, but nothing is released and a rejection does not fail the experiment:
    experiments are compared, and promoted on purpose (`dvc exp apply`, `mlsys release`).
    """
    p = cfg.paths
    where, registry_note = locate(root, p.registry)
    registry = Registry(where, cfg.release.model_name)
    live = registry.live()
    model, gates = load_candidate(root / p.bundle)
    version = model.version if model is not None else "unloadable"
    waivers = 0
    if model is not None:
        try:
            judged, waivers = _gates(cfg, root, model, registry, live)
            gates += judged
        except MlsysError as exc:
            gates.append(g.make_gate("stability", "gates_evaluated", None, "every gate evaluates", False, str(exc)))
    record = {
        **g.blessing(gates, version, live),
        "registry": registry_note,  # the live model the change gates compared with came from there
        "waivers_in_a_row": g.waivers_in_a_row(gates, waivers),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **provenance("release", cfg),
    }
    experiment = os.environ.get("DVC_EXP_BASELINE_REV")
    if experiment:
        record["not_released"] = "dvc exp run: gates evaluated only; to release: dvc exp apply, then mlsys release"
    write_json(root / p.blessing, record)
    write_json(root / p.release_metrics, {"blessed": record["blessed"], "gates_failed": len(record["failed"])})
    print(g.summary(record))
    if experiment:
        print(f"release: {record['not_released']}")
        write_json(root / p.live, {"model": registry.name, "live": live})
        return
    if not record["blessed"]:
        raise GateError(f"candidate {version} rejected; live model stays {live or '(none)'}; gates in {p.blessing}")
    registry.add(
        root / p.bundle,
        version,
        {
            BLESSING: json.dumps(record, indent=2, sort_keys=True, default=str),
            "params.yaml": (root / "params.yaml").read_text(encoding="utf-8"),
        },
    )
    if cfg.release.rollout == "canary" and live is not None:
        registry.propose(version, reason="blessed by the release stage (rollout: canary)", expected_live=live)
        write_json(root / p.live, {"model": registry.name, "live": live, "candidate": version})
        print(
            f"release: {version} is the candidate; {live} stays live. Servers answer "
            "inference.canary.share of entities with it; `mlsys monitor` compares "
            "the two; `mlsys release --promote` makes it live, `mlsys rollback` drops it"
        )
        return
    event = registry.release(version, reason="blessed by the release stage", expected_live=live)
    write_json(root / p.live, {"model": registry.name, "live": version})
    before = "already live" if event.get("noop") else f"was {live or 'none'}"
    print(f"release: {version} is live ({before}); registry {registry.root}")
