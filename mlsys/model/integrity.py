"""Bundle integrity: a sha256 of every file, written when a model folder is made and checked
before every load; and a probe that loads a model in a child process first.

LightGBM's C++ model loader can abort the whole process (`terminate called`, SIGABRT or
SIGSEGV) on a corrupt or truncated `model.txt`: there is no Python exception to catch. So a
file whose checksum differs is never handed to it, and a model that has not yet been shown to
load (a release or rollback target) is loaded by a throwaway child process before any pointer
moves. A folder written before checksums existed (bundle format 1) is accepted only if its
content still hashes to its version id.

Child:  python -m mlsys.model.integrity DIR [VERSION]    (exit 0 when DIR loads and predicts)
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlsys.errors import IntegrityError
from mlsys.io import file_sha256, read_json, write_json

CHECKSUMS = "checksums.json"
FORMAT = 2  # 1: mlsys before checksums (no checksums.json); 2: checksums.json lists every file
MODEL_FILE = "model.txt"
FEATURES_FILE = "feature_state.json"
CARD_FILE = "card.json"  # a packaged bundle's card
META_FILE = "meta.json"  # a training output's record (train, backtest)
CALIBRATION_FILE = "calibration.json"  # a calibrated model's fitted calibration (mlsys.model.calibration)


def bundle_version(directory: Path, task: dict[str, Any] | None = None) -> str:
    """Content address of a model: hash of the model file, its feature state and its
    calibration (if any), and of its
    task (`mlsys.tasks.Task.spec`: from the card or meta in DIR unless given) when it is not
    binary, so a renamed class or a changed label transform is another version (a binary
    model's id is what it was before tasks existed)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for name in (MODEL_FILE, FEATURES_FILE):
        digest.update((directory / name).read_bytes())
    if (directory / CALIBRATION_FILE).is_file():  # it changes every answer: another version
        digest.update((directory / CALIBRATION_FILE).read_bytes())
    if task is None:
        record = next((directory / n for n in (CARD_FILE, META_FILE) if (directory / n).is_file()), None)
        task = read_json(record, "the model card").get("task") if record else None
    if task and task.get("kind", "binary") != "binary":
        digest.update(json.dumps(task, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def write_checksums(directory: Path, names: Iterable[str]) -> dict[str, Any]:
    """Record the sha256 of exactly `names` in DIR/checksums.json."""
    directory = Path(directory)
    files = {name: file_sha256(directory / name) for name in sorted(set(names))}
    manifest = {"format": FORMAT, "algorithm": "sha256", "files": files}
    write_json(directory / CHECKSUMS, manifest)
    return manifest


def listed(directory: Path) -> list[str]:
    """The files DIR/checksums.json covers (none for a format-1 folder)."""
    path = Path(directory) / CHECKSUMS
    return list(read_json(path, "the bundle's checksums")["files"]) if path.exists() else []


def _present(file: Path, why: str) -> Path:
    if not file.is_file():
        raise IntegrityError(f"{file}: missing ({why})")
    return file


def verify(directory: Path, version: str | None = None) -> None:
    """Every file listed in checksums.json is there with its recorded sha256; and, given a
    `version`, the model's content hashes to it. Raises IntegrityError naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise IntegrityError(f"{directory}: no such model folder")
    path = directory / CHECKSUMS
    if path.exists():
        files = read_json(path, "the bundle's checksums").get("files", {})
        if MODEL_FILE not in files:
            raise IntegrityError(f"{path}: does not list {MODEL_FILE}")
        for name, expected in files.items():
            actual = file_sha256(_present(directory / name, f"listed in {path}"))
            if actual != expected:
                raise IntegrityError(
                    f"{directory / name}: sha256 {actual[:12]}... differs from {expected[:12]}... recorded in "
                    f"{CHECKSUMS}: the file changed after it was written (corrupt, truncated or edited)"
                )
    elif version is None:
        raise IntegrityError(f"{directory}: no {CHECKSUMS} (written by an older mlsys?): rerun the stage that made it")
    if version is not None:
        for name in (MODEL_FILE, FEATURES_FILE):
            _present(directory / name, f"part of version {version}")
        actual = bundle_version(directory)
        if actual != version:
            raise IntegrityError(
                f"{directory}: its model and feature state hash to {actual}, not to its version {version}: "
                "a file changed after release"
            )


def probe(directory: Path, version: str | None = None, timeout: float = 120.0) -> str | None:
    """Load DIR (verified as `load_model` does) and predict two rows in a child process:
    None if that works, else why not (an abort there leaves this process alive)."""
    cmd = [sys.executable, "-m", "mlsys.model.integrity", str(directory), *([version] if version else [])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"loading {directory} in a child process took more than {timeout:.0f}s"
    if proc.returncode == 0:
        return None
    code = proc.returncode
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    tail = " | ".join(lines[-2:]) if lines else "no output"
    return f"loading {directory} in a child process failed ({how}): {tail}"


def _probe_child(directory: str, version: str | None) -> None:
    import numpy as np

    from mlsys.model import load_model

    model = load_model(Path(directory), version=version)
    row = model.pipeline.transform_record({})  # every feature missing, then every feature 0
    model.booster.predict(np.vstack([row, np.zeros_like(row)]), num_threads=1)


if __name__ == "__main__":
    _probe_child(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
