"""The online feature table: for every scheduled flight in the serving window, the columns
that come from other tables (weather as of the prediction time, plane metadata, point-in-time
aggregates), built from the same snapshot by the same build code as training."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.contracts import mask, pii_columns
from mlsys.io import read_parquet, write_json
from mlsys.serving.batch import serving_rows
from mlsys.serving.request import lookup_columns, request_body, request_columns
from mlsys.serving.store import write_online


def run(cfg: DictConfig, root: Path) -> None:
    """Built dataset (serving window) -> paths.online (SQLite, keyed by data.key)."""
    labelled = read_parquet(root / cfg.paths.labelled, "built dataset: run build")
    unlabelled = read_parquet(root / cfg.paths.unlabelled, "built dataset: run build")
    rows = serving_rows(labelled, unlabelled, cfg.inference.window, cfg.split.tz)
    columns = lookup_columns(list(rows.columns), cfg)
    # The example is shown by /model: personal fields as the marker, never a real value.
    example = mask(request_body(rows.iloc[0], request_columns(cfg)), pii_columns(cfg)) if len(rows) else {}
    path = write_online(root / cfg.paths.online, rows, list(cfg.data.key), columns, example)
    write_json(
        root / cfg.paths.online_report,
        {"rows": len(rows), "columns": columns, "window": dict(cfg.inference.window), **provenance("online", cfg)},
    )
    print(f"online: {len(rows):,} entities x {len(columns)} looked-up columns -> {path}")
