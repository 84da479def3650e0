"""Validate each raw table against its contract; write passed rows, quarantine, report."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.progress import track

from mlsys.contracts import summary, validate_table
from mlsys.data.sources import parse_times
from mlsys.errors import ContractError
from mlsys.io import read_parquet, write_json, write_parquet
from mlsys.stages import provenance


def run(cfg: DictConfig, root: Path) -> None:
    """Every source: parse declared times, validate lazily, split passed / quarantined."""
    reports, failed = {}, []
    for name in track(list(cfg.data.sources), description="validate", transient=True):
        raw = read_parquet(root / cfg.paths.raw / f"{name}.parquet", "raw snapshot: run the snapshot stage")
        parsed, parse_failures = parse_times(raw, cfg.data.sources[name])
        result = validate_table(name, cfg.contract.tables[name], parsed, parse_failures, raw=raw)
        write_parquet(root / cfg.paths.validated / f"{name}.parquet", result.passed)
        write_parquet(root / cfg.paths.quarantine / f"{name}.parquet", result.quarantined)
        reports[name] = result.report
        print(summary(result.report))
        if result.report["status"] == "failed":
            failed.append(name)
    report_path = root / cfg.paths.reports / "validation.json"
    write_json(report_path, {"tables": reports, **provenance("validate", cfg)})
    counts = ("rows_in", "rows_passed", "rows_quarantined")
    write_json(
        root / cfg.paths.metrics / "validation.json", {name: {k: r[k] for k in counts} for name, r in reports.items()}
    )
    if failed:
        raise ContractError(f"contract violated for {failed}; full report in {report_path}")
