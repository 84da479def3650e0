"""Join the validated tables as of the prediction time; label; point-in-time aggregates."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mlsys.data.build import build
from mlsys.io import read_parquet, write_json, write_parquet
from mlsys.stages import provenance


def run(cfg: DictConfig, root: Path) -> None:
    tables = {
        name: read_parquet(root / cfg.paths.validated / f"{name}.parquet", "validated table: run validate")
        for name in cfg.data.sources
    }
    result = build(tables, cfg.data)
    out = root / cfg.paths.dataset
    write_parquet(out / "labelled.parquet", result.labelled)
    write_parquet(out / "unlabelled.parquet", result.unlabelled)
    write_json(root / cfg.paths.reports / "build.json", {**result.report, **provenance("build", cfg)})
    write_json(root / cfg.paths.metrics / "build.json", result.report)
    r = result.report
    print(
        f"build: {r['rows_in']:,} rows -> {r['rows_labelled']:,} labelled, "
        f"{r['rows_excluded_no_label']:,} set aside (no {cfg.data.label.column}: data.label.missing=exclude); "
        f"positive rate {r['positive_rate']:.3f}"
    )
