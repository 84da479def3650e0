"""The optional compiled backend (`inference.backend: lleaves`, `pip install "mlsys[lleaves]"`):
lleaves compiles a LightGBM model to machine code with LLVM; a batch is scored several
times faster than by `Booster.predict`, with the same numbers (tested on every task).

The compiled object is cached under `paths.compiled`, its name keyed by the model version,
the host CPU (name and features), the lleaves and llvmlite versions and the inline flag: a
new model, machine or compiler compiles again, and nothing stale is loaded (lleaves itself
does not check a cache). It is written under a temporary name and renamed into place, under a
file lock, so concurrent stages neither compile twice nor read half a file. A host that cannot
write the cache folder (a Dask worker on another machine) uses its own temp folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from mlsys.errors import ConfigError
from mlsys.model.integrity import MODEL_FILE

KEY = "inference.backend"


@dataclass
class Compiled:
    """A model compiled by lleaves: `Booster.predict`'s answers for a batch of encoded rows."""

    model: Any  # lleaves.Model, compiled
    path: Path  # its cached object file

    def __call__(self, x: np.ndarray, num_threads: int = 0) -> np.ndarray:
        return self.model.predict(x, n_jobs=num_threads or os.cpu_count())


def require() -> tuple[Any, Any]:
    """lleaves and llvmlite, or a ConfigError naming `inference.backend` and the extra."""
    try:
        import lleaves
        import llvmlite
    except ImportError as exc:  # not installed, or llvmlite without a wheel here
        raise ConfigError(
            f'{KEY}: lleaves cannot be imported ({exc}); pip install "mlsys[lleaves]" (lleaves 1.3 needs '
            "llvmlite < 0.45), or set inference.backend: lightgbm"
        ) from exc
    return lleaves, llvmlite


def cache_name(version: str, inline: bool) -> str:
    """`<version>-<cpu>-<features hash>-lleaves<v>-llvmlite<v>[-inline].o` for this host."""
    _, llvmlite = require()
    from importlib.metadata import version as installed

    from llvmlite import binding

    features = hashlib.sha256(binding.get_host_cpu_features().flatten().encode()).hexdigest()[:12]
    parts = [version, binding.get_host_cpu_name(), features, f"lleaves{installed('lleaves')}"]
    parts += [f"llvmlite{llvmlite.__version__}", *(["inline"] if inline else [])]
    return "-".join(parts) + ".o"


def compile_model(model_text: str, version: str, cache: Path, inline: bool = False) -> Compiled:
    """The model (LightGBM's text) compiled, or loaded from `cache` if this host compiled it."""
    if "is_linear=1" in model_text:
        raise ConfigError(f"{KEY}: lleaves cannot compile linear trees (model.params.linear_tree); use lightgbm")
    lleaves, _ = require()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        writable = os.access(cache, os.W_OK)
    except OSError:
        writable = False
    if not writable:  # e.g. a Dask worker on a host without the project's folder: its own temp folder
        cache = Path(tempfile.gettempdir()) / "mlsys-compiled"
        cache.mkdir(exist_ok=True)
    path = cache / cache_name(version, inline)
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / MODEL_FILE
        text.write_text(model_text, encoding="utf-8")
        compiled = lleaves.Model(model_file=str(text))
        with FileLock(str(path) + ".lock", timeout=3600):
            if path.exists():
                compiled.compile(cache=str(path))  # loaded: no compilation
            else:
                partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                compiled.compile(cache=str(partial), finline=inline)
                os.replace(partial, path)
    return Compiled(compiled, path)
