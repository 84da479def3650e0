"""Validate each raw table against its contract; write passed rows, quarantine, report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig
from rich.progress import track

from mlsys.config import provenance
from mlsys.contracts import summary, validate_table
from mlsys.data.build import invalid_event_times
from mlsys.data.derive import Deriver
from mlsys.data.snapshot import MANIFEST, raw_files_match
from mlsys.data.sources import TRUNCATED_LINE, failure_cases, parse_times
from mlsys.errors import ContractError, IntegrityError
from mlsys.io import read_json, read_parquet, write_json, write_parquet


def _row_failures(
    name: str, cfg: DictConfig, parsed: pd.DataFrame, times: pd.DataFrame, cut: list[int]
) -> pd.DataFrame:
    """Failures found before Pandera: unparseable times, a cut last line, impossible event times."""
    cases = [times]
    if cut:
        cases.append(failure_cases("<line>", TRUNCATED_LINE, pd.Series("no final newline or too few fields", cut)))
    if name == cfg.data.primary:
        bad = invalid_event_times(parsed, cfg.data.event_time)
        if bad.any():
            cols = [c for c in cfg.data.event_time.parts.values() if not isinstance(c, int)]
            values = parsed.loc[bad, cols].astype(str).agg(" ".join, axis=1)
            cases.append(failure_cases(f"({', '.join(cols)})", "forms_a_local_time", values))
    found = [c for c in cases if len(c)]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


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
    for name in track(list(cfg.data.sources), description="validate", transient=True):
        entry = manifest["sources"][name]
        raw = read_parquet(raw_dir / entry["file"]["name"], "raw snapshot: run the snapshot stage")
        parsed, times, local_times = parse_times(raw, cfg.data.sources[name])
        if name == cfg.data.primary:
            parsed = Deriver(cfg.data.derived).frame(parsed)  # before the contract: it may bound them
        extra = _row_failures(name, cfg, parsed, times, list(entry.get("truncated_rows", [])))
        result = validate_table(name, cfg.contract.tables[name], parsed, extra, raw=raw)
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
