"""Join the validated tables as of the prediction time; label; point-in-time aggregates;
then check the built table against `contract.dataset`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.cluster import engine_client
from mlsys.config import provenance
from mlsys.contracts import summary, validate_table, without_column
from mlsys.data import sliced
from mlsys.data.build import pending
from mlsys.data.columns import LABEL
from mlsys.data.snapshot import MANIFEST
from mlsys.errors import ContractError, MlsysError
from mlsys.io import read_json, read_parquet, write_json, write_parquet


def run(cfg: DictConfig, root: Path) -> None:
    """Validated tables -> labelled / unlabelled modelling tables (+ dataset quarantine)."""
    tables = {
        name: read_parquet(root / cfg.paths.validated / f"{name}.parquet", "validated table: run validate")
        for name in cfg.data.sources
    }
    manifest = read_json(root / cfg.paths.raw / MANIFEST, "the snapshot manifest: run snapshot")
    as_of = pd.Timestamp(manifest["snapshot_time"])  # labels are final or pending as of the snapshot
    with engine_client(cfg.engine) as dask:  # None: here; else time slice by time slice on the Dask cluster
        result = sliced.build(tables, cfg.data, as_of, cfg.engine, dask)
    report = dict(result.report)
    labelled, unlabelled = result.labelled, result.unlabelled
    if cfg.contract.dataset is not None:
        # Labelled rows meet the whole contract; unlabelled ones (no outcome: like serving
        # rows) the same contract minus the label.
        checks = {
            "labelled": validate_table("dataset", cfg.contract.dataset, labelled),
            "unlabelled": validate_table("dataset", without_column(cfg.contract.dataset, LABEL), unlabelled),
        }
        quarantined = pd.concat([c.quarantined.assign(_part=part) for part, c in checks.items()], ignore_index=True)
        write_parquet(root / cfg.paths.dataset_quarantine, quarantined)
        report["contract"] = {part: c.report for part, c in checks.items()}
        for c in checks.values():
            print(summary(c.report))
        if any(c.report["status"] == "failed" for c in checks.values()):
            write_json(root / cfg.paths.build_report, {**report, **provenance("build", cfg)})
            raise ContractError(f"contract.dataset violated; report in {cfg.paths.build_report}")
        labelled, unlabelled = checks["labelled"].passed, checks["unlabelled"].passed
        young = int(pending(unlabelled, cfg.data.label, as_of).sum())
        report["rows_quarantined"] = len(quarantined)
        report["rows_labelled"], report["rows_pending_label"] = len(labelled), young
        report["rows_excluded_no_label"] = len(unlabelled) - young
    parts = ("rows_labelled", "rows_excluded_no_label", "rows_pending_label", "rows_quarantined")
    accounted = sum(report.get(k, 0) for k in parts)
    if accounted != report["rows_in"] or len(labelled) + len(unlabelled) != accounted - report.get(
        "rows_quarantined", 0
    ):
        raise MlsysError(f"build lost rows: {accounted} accounted for, {report['rows_in']} in ({parts})")
    write_parquet(root / cfg.paths.labelled, labelled)
    write_parquet(root / cfg.paths.unlabelled, unlabelled)
    write_json(root / cfg.paths.build_report, {**report, **provenance("build", cfg)})
    write_json(root / cfg.paths.build_metrics, {k: v for k, v in report.items() if k != "contract"})
    print(
        f"build: {report['rows_in']:,} rows -> {report['rows_labelled']:,} labelled, "
        f"{report['rows_excluded_no_label']:,} set aside (no {cfg.data.label.column}: data.label.missing=exclude), "
        f"{report['rows_pending_label']:,} pending (label not final yet), "
        f"{report.get('rows_quarantined', 0):,} quarantined by contract.dataset; "
        f"label {report['label']}"
    )
