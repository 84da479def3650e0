"""Validate each raw table against its contract; write passed rows, quarantine, report."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.progress import track

from mlsys.cluster import engine_client
from mlsys.config import provenance
from mlsys.contracts import summary
from mlsys.data import sliced
from mlsys.data.snapshot import MANIFEST, raw_files_match
from mlsys.errors import ContractError, IntegrityError
from mlsys.io import read_json, read_parquet, write_json, write_parquet


def run(cfg: DictConfig, root: Path) -> None:
    """Every source: parse declared times, validate lazily, split passed / quarantined."""
    raw_dir = root / cfg.paths.raw
    manifest = read_json(raw_dir / MANIFEST, "the snapshot manifest: run the snapshot stage")
    broken = raw_files_match(raw_dir, manifest)
    if broken:
        raise IntegrityError(
            f"raw files differ from {raw_dir / MANIFEST} (an interrupted snapshot, or edited by hand): "
            f"{', '.join(broken)}; run `mlsys snapshot` again"
        )
    reports, failed = {}, []
    with engine_client(cfg.engine) as dask:  # None: here; else slice by slice on the Dask cluster
        for name in track(list(cfg.data.sources), description="validate", transient=True):
            entry = manifest["sources"][name]
            raw = read_parquet(raw_dir / entry["file"]["name"], "raw snapshot: run the snapshot stage")
            result, local_times = sliced.validate(name, raw, list(entry.get("truncated_rows", [])), cfg, dask)
            write_parquet(root / cfg.paths.validated / f"{name}.parquet", result.passed)
            write_parquet(root / cfg.paths.quarantine / f"{name}.parquet", result.quarantined)
            reports[name] = {**result.report, "local_times": local_times}  # ambiguous -> first, nonexistent -> forward
            print(summary(result.report))
            if result.report["status"] == "failed":
                failed.append(name)
    report_path = root / cfg.paths.validation_report
    write_json(report_path, {"tables": reports, **provenance("validate", cfg)})
    counts = ("rows_in", "rows_passed", "rows_quarantined")
    write_json(root / cfg.paths.validation_metrics, {name: {k: r[k] for k in counts} for name, r in reports.items()})
    if failed:
        raise ContractError(f"contract violated for {failed}; full report in {report_path}")
