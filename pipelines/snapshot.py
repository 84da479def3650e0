"""Snapshot every declared source into `paths.raw` (Parquet) with fingerprints and time.

DVC runs this stage on every `dvc repro` (always_changed) because upstream files live
outside the repository; when no fingerprint changed it leaves its outputs untouched, so
nothing downstream reruns.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import DictConfig

from mlsys.data.sources import fingerprint, read_source
from mlsys.errors import UpstreamChangedError
from mlsys.io import write_json, write_parquet
from mlsys.stages import provenance

MANIFEST = "snapshot.json"


def run(cfg: DictConfig, root: Path) -> None:
    """Fingerprint every source; copy them into `paths.raw` only when one changed."""
    raw = root / cfg.paths.raw
    prints = {name: fingerprint(name, src, root) for name, src in cfg.data.sources.items()}
    manifest_path = raw / MANIFEST
    previous = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if previous is not None:
        before = {n: s["fingerprint"] for n, s in previous["sources"].items()}
        files_ok = all((raw / f"{n}.parquet").exists() for n in prints)
        if before == prints and files_ok:
            print(f"snapshot: upstream unchanged since {previous['snapshot_time']} ({len(prints)} sources)")
            stage = provenance("snapshot", cfg)
            if previous["config_hash"] != stage["config_hash"]:  # same data, new config: record it
                write_json(manifest_path, {**previous, **stage})
            return
        changed = sorted(n for n in prints if before.get(n) != prints[n])
        for n in changed:
            old = before.get(n, {}).get("sha256", "<new source>")
            print(f"snapshot: upstream {n!r} changed: sha256 {str(old)[:12]} -> {prints[n]['sha256'][:12]}")
        if changed and cfg.data.on_upstream_change == "fail":
            raise UpstreamChangedError(
                f"upstream sources changed: {changed} (data.on_upstream_change=fail). Review the "
                f"change, then rerun with data.on_upstream_change=adopt"
            )
    sources = {}
    for name, src in cfg.data.sources.items():
        frame = read_source(name, src, root)
        write_parquet(raw / f"{name}.parquet", frame)
        sources[name] = {"fingerprint": prints[name], "rows": len(frame), "columns": list(frame.columns)}
        print(f"snapshot: {name}: {len(frame):,} rows x {frame.shape[1]} columns")
    for stale in raw.glob("*.parquet"):
        if stale.stem not in sources:
            stale.unlink()
    write_json(
        manifest_path,
        {
            "snapshot_time": datetime.now(UTC).isoformat(timespec="seconds"),
            "sources": sources,
            **provenance("snapshot", cfg),
        },
    )
