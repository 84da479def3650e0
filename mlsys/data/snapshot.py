"""The snapshot's bookkeeping, light enough for the no-op path (no pandas): where each
upstream file is, what identifies its version, and whether the raw files are the ones the
manifest (the snapshot's commit point) lists.

Fingerprints are cheap when nothing changed: a file whose size and modification time equal
the manifest's keeps its recorded sha256; only a changed one is hashed again.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from mlsys.errors import ConfigError
from mlsys.io import file_sha256, require

MANIFEST = "snapshot.json"  # in paths.raw: each raw file's name and sha256; the snapshot's commit point


def source_path(name: str, src: Any, root: Path) -> Path:
    """The file behind a source; package resources are found without importing the package."""
    if src.kind == "package":
        spec = importlib.util.find_spec(src.package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"data.sources.{name}.package: {src.package!r} is not an installed package")
        return Path(next(iter(spec.submodule_search_locations))) / src.path
    path = Path(src.path)
    return path if path.is_absolute() else root / path


def _same_stat(path: Path, recorded: dict[str, Any] | None) -> bool:
    st = path.stat()
    return bool(recorded) and recorded.get("bytes") == st.st_size and recorded.get("mtime_ns") == st.st_mtime_ns


def fingerprint(
    name: str, src: Any, root: Path, previous: dict[str, Any] | None = None, text: list[str] | None = None
) -> dict[str, Any]:
    """What identifies this upstream version: content hash, size, modification time (+ the
    package version, and the columns a CSV is read as text: `text_columns`); the hash is
    reused from `previous` when size and time are unchanged. A SQL source has no file to
    stat: its query runs and its rows are hashed."""
    if src.kind == "sql":
        from mlsys.data.sources import sql_fingerprint

        return sql_fingerprint(name, src, root)
    path = require(source_path(name, src, root), f"data.sources.{name}.path")
    st = path.stat()
    if src.kind == "package":
        origin = f"{src.package}=={importlib.metadata.version(src.package)}:{src.path}"
    else:
        origin = src.path
    quick = previous is not None and _same_stat(path, previous) and previous.get("origin") == origin
    sha = previous["sha256"] if quick else file_sha256(path)
    return {"sha256": sha, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "origin": origin, "text": text or []}


def text_columns(table: Any) -> list[str]:
    """The columns a source's contract declares `str`: a CSV reads them as text, so an
    identifier like 02134 keeps its leading zero instead of becoming the number 2134."""
    return sorted(c for c, spec in table.columns.items() if spec.dtype == "str")


def same_version(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two fingerprints of the same upstream version, read the same way (the time alone
    may differ)."""
    return all(a.get(k) == b.get(k) for k in ("sha256", "bytes", "origin", "text"))


def raw_files_match(raw: Path, manifest: dict, quick: bool = False) -> list[str]:
    """The raw files that are missing or differ from the sha256 the manifest records
    (`quick`: trust an unchanged size and modification time)."""
    bad = []
    for entry in manifest["sources"].values():
        file = entry.get("file") or {}
        path = raw / str(file.get("name", "?"))
        if not path.is_file():
            bad.append(str(path))
        elif not (quick and _same_stat(path, file)) and file_sha256(path) != file.get("sha256"):
            bad.append(str(path))
    return bad
