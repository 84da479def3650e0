"""Assemble the model bundle: model file, feature state and the model card."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mlsys.data.snapshot import MANIFEST
from mlsys.dynamic import PROFILE, answer_profile
from mlsys.io import read_json, read_parquet, require, write_json
from mlsys.model import CARD_FILE, FEATURES_FILE, META_FILE, MODEL_FILE, bundle_version, load_model
from mlsys.model.integrity import CALIBRATION_FILE, CHECKSUMS, verify, write_checksums
from mlsys.tasks import Task

LIBRARIES = ("lightgbm", "pandas", "numpy", "pyarrow", "pandera", "scikit-learn", "hydra-core", "dvc")


def run(cfg: DictConfig, root: Path) -> None:
    """Model dir + every stage's record -> models/bundle (model, feature state, card.json)."""
    p = cfg.paths
    model_dir, bundle = root / p.model, root / p.bundle
    verify(model_dir)  # what is copied is what train wrote
    meta = read_json(model_dir / META_FILE, "model meta: run train")
    snapshot = read_json(root / p.raw / MANIFEST, "snapshot manifest: run snapshot")
    taken = read_json(root / p.snapshot_report, "snapshot report: run snapshot")
    validation = read_json(root / p.validation_report, "validation report: run validate")
    build = read_json(root / p.build_report, "build report: run build")
    windows = read_json(root / p.windows, "windows: run featurize")
    featurized = read_json(root / p.featurized, "featurize time: run featurize")
    metrics = read_json(root / p.test_metrics, "metrics: run evaluate")
    features = read_json(model_dir / FEATURES_FILE, "feature state: run train")["features"]

    stage_hashes = {r["stage"]: r["config_hash"] for r in (taken, validation, build, windows, meta)}
    config_hash = hashlib.sha256(json.dumps(stage_hashes, sort_keys=True).encode()).hexdigest()[:16]
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / CHECKSUMS).unlink(missing_ok=True)  # written last: a half-made bundle never verifies
    (bundle / CALIBRATION_FILE).unlink(missing_ok=True)
    calibrated = (model_dir / CALIBRATION_FILE).exists()
    model_files = (MODEL_FILE, FEATURES_FILE, *((CALIBRATION_FILE,) if calibrated else ()))
    for name in model_files:
        shutil.copyfile(require(model_dir / name, "model artifacts: run train"), bundle / name)
    profile = read_json(root / p.features / PROFILE, "training data profile: run featurize")
    valid = read_parquet(root / p.valid_matrix, "encoded valid window: run featurize")
    write_json(bundle / PROFILE, {**profile, **answer_profile(load_model(model_dir), valid)})
    packaged_at = datetime.now(UTC).isoformat(timespec="seconds")
    card = {
        "version": bundle_version(bundle, meta.get("task")),
        "task": meta.get("task"),
        "calibration": meta["config"]["model"].get("calibration", "none"),
        "created_at": packaged_at,
        # How old the model's knowledge is, stage by stage (released_at: the registry's events).
        "timeline": {
            "snapshot_time": snapshot["snapshot_time"],
            "newest_training_event": windows["newest_training_event"],
            "featurized_at": featurized["featurized_at"],
            "trained_at": meta["trained_at"],
            "packaged_at": packaged_at,
        },
        "training_mode": windows["mode"],
        "feedback_loops": OmegaConf.to_container(cfg.data.feedback_loops),
        "config_hash": config_hash,
        "stage_config_hashes": stage_hashes,
        "snapshot_time": snapshot["snapshot_time"],
        "data": {
            name: {"fingerprint": s["fingerprint"], "rows": s["rows"], "columns": s["columns"]}
            for name, s in snapshot["sources"].items()
        },
        "validation": {
            name: {k: t[k] for k in ("status", "rows_in", "rows_passed", "rows_quarantined")}
            for name, t in validation["tables"].items()
        },
        "dataset": {
            k: build[k] for k in ("rows_in", "rows_labelled", "rows_excluded_no_label", "rows_pending_label", "label")
        },
        "windows": windows["periods"],
        "roles": windows["roles"],
        "features": [{k: f[k] for k in ("name", "source", "type", "transform", "availability")} for f in features],
        "training": {k: meta[k] for k in ("best_iteration", "train_rows", "valid_rows", "train_seconds", "best_valid")},
        "leakage": meta.get("leakage"),  # the release's leakage gate reads it from the bundle
        "model_params": meta["config"]["model"],
        "determinism": meta["config"]["training"],
        "metrics": metrics,
        "libraries": {lib: version(lib) for lib in LIBRARIES} | {"python": platform.python_version()},
    }
    write_json(bundle / CARD_FILE, card)
    write_checksums(bundle, (*model_files, PROFILE, CARD_FILE))
    primary = Task.from_spec(meta).primary
    print(
        f"package: {card['task']['kind']} bundle {card['version']} at {bundle} (test {primary} {metrics[primary]:.4f})"
    )
