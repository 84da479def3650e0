"""Gate the packaged candidate; if blessed, add it to the registry and make it live."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import DictConfig

from mlsys.data.build import EVENT_TIME
from mlsys.errors import GateError
from mlsys.io import read_json, read_parquet, write_json
from mlsys.model import FEATURES_FILE, load_model
from mlsys.release import gates as g
from mlsys.release.infra import infra_gate
from mlsys.release.registry import Registry
from mlsys.split import select
from mlsys.stages import provenance


def run(cfg: DictConfig, root: Path) -> None:
    """Bundle + metrics + test window -> blessing record; blessed -> registry, live.

    Under `dvc exp run` (DVC_EXP_BASELINE_REV is set) the gates are evaluated and
    recorded, but nothing is released and a rejection does not fail the experiment:
    experiments are compared, and promoted on purpose (`dvc exp apply`, `mlsys release`).
    """
    p, rel = cfg.paths, cfg.release
    bundle = root / p.bundle
    model = load_model(bundle)  # the loader the server uses; checks model vs feature state
    metrics = read_json(root / p.metrics / "metrics.json", "metrics: run evaluate")
    slices = read_json(root / p.metrics / "slices.json", "slice metrics: run evaluate")
    fitted = read_json(root / p.features / FEATURES_FILE, "feature state: run featurize")
    dataset = read_parquet(root / p.dataset / "labelled.parquet", "built dataset: run build")
    test = select(dataset, EVENT_TIME, cfg.split, cfg.split.test)
    predictions = model.predict_frame(test)

    registry = Registry(root / p.registry)
    live = registry.live()
    live_metrics = registry.card(live)["metrics"] if live else None
    fitted_names = [f["name"] for f in fitted["features"]]
    sample = test.sample(min(rel.infra.requests, len(test)), random_state=0)
    gates = [
        *g.absolute_gates(metrics, rel),
        *g.slice_gates(slices, rel),
        *g.change_gates(metrics, live_metrics, live, rel),
        g.baseline_gate(metrics, rel),
        *g.stability_gates(predictions, rel),
        g.make_gate(
            "stability",
            "feature_list",
            len(model.pipeline.names),
            "== feature artifact",
            model.pipeline.names == fitted_names,
            "model features match data/features/feature_state.json"
            if model.pipeline.names == fitted_names
            else "model features differ from the feature artifact",
        ),
        infra_gate(bundle, sample, model.predict_frame(sample), rel.infra.timeout_seconds),
    ]
    record = {
        **g.blessing(gates, model.version, live),
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
            f"candidate {model.version} rejected; live model stays {live or '(none)'}; "
            f"gates in {p.reports}/blessing.json"
        )
    registry.add(
        bundle,
        model.version,
        {
            "blessing.json": json.dumps(record, indent=2, sort_keys=True, default=str),
            "params.yaml": (root / "params.yaml").read_text(encoding="utf-8"),
        },
    )
    event = registry.release(model.version, reason="blessed by the release stage")
    before = "already live" if event.get("noop") else f"was {live or 'none'}"
    print(f"release: {model.version} is live ({before}); registry {registry.root}")
