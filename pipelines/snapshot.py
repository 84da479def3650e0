"""Snapshot every declared source into `paths.raw` (Parquet) with fingerprints and time:
all sources or none.

DVC runs this stage on every `dvc repro` (always_changed) because upstream files live
outside the repository; when no fingerprint changed (and the raw files are the ones the
manifest lists) it leaves its outputs untouched, so nothing downstream reruns. That check is
the no-op path: file sizes and times first (a hash only for a file that changed), and no
pandas.

A new snapshot is adopted whole or not at all: every source is read and checked (it
parses; its row count is within `data.sources.<name>.volume` of the previous snapshot's)
before anything is written; each raw file is written under a new name (its content hash in
it) beside the previous snapshot's; the manifest, which names each raw file and its sha256,
is written last and is the commit point; only then are the previous files removed. A crash
or a refusal at any step leaves the previous snapshot whole and usable, and `validate`
refuses raw files that do not match the manifest.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.snapshot import MANIFEST, fingerprint, raw_files_match, same_version, text_columns
from mlsys.errors import ContractError, MlsysError, UpstreamChangedError
from mlsys.io import file_sha256, fsync_dir, read_json, write_json, write_parquet


def _volume_problems(cfg: DictConfig, frames: dict, previous: dict | None) -> list[str]:
    """Sources whose row count left the band around the previous snapshot's."""
    out = []
    for name, frame in frames.items():
        band = cfg.data.sources[name].volume
        before = (previous or {}).get("sources", {}).get(name, {}).get("rows")
        if band is None or not before:
            continue
        ratio = len(frame) / before
        if not band.min_ratio <= ratio <= band.max_ratio:
            out.append(
                f"{name}: {len(frame):,} rows vs {before:,} in the previous snapshot (ratio {ratio:.2f}, outside "
                f"data.sources.{name}.volume {band.min_ratio}..{band.max_ratio})"
            )
    return out


def run(cfg: DictConfig, root: Path) -> None:
    """Fingerprint every source; copy them into `paths.raw` only when one changed."""
    raw = root / cfg.paths.raw
    manifest_path = raw / MANIFEST
    try:
        previous = read_json(manifest_path, "snapshot manifest") if manifest_path.exists() else None
    except MlsysError as exc:
        print(f"snapshot: {exc}; taking a new snapshot")
        previous = None
    before = {n: s["fingerprint"] for n, s in previous["sources"].items()} if previous else {}
    text = {name: text_columns(cfg.contract.tables[name]) for name in cfg.data.sources}
    prints = {n: fingerprint(n, src, root, before.get(n), text[n]) for n, src in cfg.data.sources.items()}
    if previous is not None:
        unchanged = set(before) == set(prints) and all(same_version(before[n], prints[n]) for n in prints)
        broken = raw_files_match(raw, previous, quick=True) if unchanged else ["(sources changed)"]
        if unchanged and not broken:
            print(f"snapshot: upstream unchanged since {previous['snapshot_time']} ({len(prints)} sources)")
            # The manifest says what the data is and nothing else (a file only touched, same content,
            # is hashed again each run until the next snapshot records its time): rewriting it would
            # rerun everything downstream. Which config took it is the report's.
            _report(cfg, root, previous)
            return
        moved = [n for n in sorted(prints) if not same_version(before.get(n, {}), prints[n])]
        reread = [n for n in moved if before.get(n, {}).get("sha256") == prints[n]["sha256"]]
        changed = [n for n in moved if n not in reread]
        for n in reread:  # the same upstream bytes, read with other text columns (its contract changed)
            print(f"snapshot: {n!r} is read with text columns {prints[n]['text']} now: taking it again")
        for n in changed:
            sha = str(before.get(n, {}).get("sha256", "<new source>"))[:12]
            print(f"snapshot: upstream {n!r} changed: sha256 {sha} -> {prints[n]['sha256'][:12]}")
        if not moved:
            print(f"snapshot: raw files differ from {manifest_path} ({', '.join(broken)}): taking the snapshot again")
        if changed and cfg.data.on_upstream_change == "fail":
            raise UpstreamChangedError(
                f"upstream sources changed: {changed} (data.on_upstream_change=fail). Review the "
                f"change, then rerun with data.on_upstream_change=adopt"
            )
    _take(cfg, root, prints, previous)


def _take(cfg: DictConfig, root: Path, prints: dict, previous: dict | None) -> None:
    """Read and check every source, write the raw files beside the previous ones, commit the
    manifest, then remove the previous files (pandas is imported only here)."""
    from mlsys.data.sources import TRUNCATED_LINE, read_source

    raw = root / cfg.paths.raw
    reads = {name: read_source(name, src, root, prints[name].get("text")) for name, src in cfg.data.sources.items()}
    frames = {name: frame for name, (frame, _) in reads.items()}
    problems = _volume_problems(cfg, frames, previous)
    if problems:
        raise ContractError(
            "snapshot not adopted (the previous one stays): " + "; ".join(problems) + ". If the change is "
            "real, widen the band for one run, e.g. `mlsys snapshot data.sources.<name>.volume=null`"
        )
    sources = {}
    for name, (frame, cut) in reads.items():
        tmp = write_parquet(raw / f".{name}.new.parquet", frame)
        sha = file_sha256(tmp)
        path = raw / f"{name}-{sha[:12]}.parquet"
        os.replace(tmp, path)
        st = path.stat()
        sources[name] = {
            "fingerprint": prints[name],
            "rows": len(frame),
            "columns": list(frame.columns),
            "file": {"name": path.name, "sha256": sha, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns},
            "truncated_rows": cut,
        }
        cut_note = f"; its last line looks cut: row {cut[0]} will be quarantined ({TRUNCATED_LINE})" if cut else ""
        print(f"snapshot: {name}: {len(frame):,} rows x {frame.shape[1]} columns{cut_note}")
    fsync_dir(raw)
    manifest = {"snapshot_time": datetime.now(UTC).isoformat(timespec="seconds"), "sources": sources}
    write_json(raw / MANIFEST, manifest)  # the commit point: until it is replaced, the previous one stands
    _report(cfg, root, manifest)
    current = {s["file"]["name"] for s in sources.values()}
    for stale in raw.glob("*.parquet"):
        if stale.name not in current:
            stale.unlink()


def _report(cfg: DictConfig, root: Path, manifest: dict) -> None:
    """reports/snapshot.json: the snapshot in use and the config that took it (outside the raw
    data, so a config-only change reruns nothing downstream)."""
    write_json(
        root / cfg.paths.snapshot_report, {"snapshot_time": manifest["snapshot_time"], **provenance("snapshot", cfg)}
    )
