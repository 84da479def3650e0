"""Real, tiny model bundles for registry and integrity tests: LightGBM on 300 random rows,
two features, packaged as the package stage does (card, profile, checksums)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlsys.features import FeaturePipeline
from mlsys.io import write_json
from mlsys.model import CARD_FILE, FEATURES_FILE, META_FILE, MODEL_FILE, bundle_version, save_model_dir
from mlsys.model.integrity import write_checksums

BUNDLE_FILES = (MODEL_FILE, FEATURES_FILE, CARD_FILE, "profile.json")


def make_bundle(dest: Path, trees: int = 3, seed: int = 0, auc: float = 0.7) -> str:
    """Train and package a bundle at `dest`; returns its version (content address)."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    spec = {"type": "numeric", "transform": "identity", "availability": "at_prediction", "config": {}, "state": {}}
    pipeline = FeaturePipeline([{"name": n, "source": n, **spec} for n in ("a", "b")])
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=["a", "b"]), num_boost_round=trees)
    save_model_dir(dest, booster, trees, pipeline, {})
    (dest / META_FILE).unlink()
    version = bundle_version(dest)
    card = {
        "version": version,
        "created_at": "2026-01-01T00:00:00+00:00",
        "metrics": {"auc": auc, "logloss": 0.4, "brier": 0.1},
        "features": [],
        "timeline": {"newest_training_event": "2013-08-31"},
    }
    write_json(dest / CARD_FILE, card)
    write_json(dest / "profile.json", {})
    write_checksums(dest, BUNDLE_FILES)
    return version


def corrupt(path: Path, how: str) -> None:
    """Damage one file: `truncate` (cut in half), `flip` (invert bytes in the middle) or `delete`."""
    if how == "delete":
        path.unlink()
        return
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 16]) + data[middle + 16 :])
    else:
        raise ValueError(how)


def corrupt_leaf_values(model_file: Path) -> None:
    """The fault that aborts LightGBM's loader: three `leaf_value=` lines edited to garbage
    (checksums then rewritten by the caller when it wants them to pass)."""
    lines = model_file.read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith("leaf_value=")][:3]
    for i in hits:
        lines[i] = "leaf_value=1.0 x y"
    model_file.write_text("\n".join(lines) + "\n")


def card_of(directory: Path) -> dict:
    return json.loads((directory / CARD_FILE).read_text())
