"""The online feature table: for every scheduled flight in the serving window, the columns
that come from other tables (weather as of the prediction time, plane metadata, point-in-time
aggregates), built from the same snapshot by the same build code as training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.build import EVENT_TIME
from mlsys.io import read_parquet, write_json
from mlsys.serving.request import lookup_columns, request_body, request_columns
from mlsys.serving.store import write_online
from mlsys.split import window_rows


def built_rows(cfg: DictConfig, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The built dataset's labelled and unlabelled rows."""
    return tuple(  # type: ignore[return-value]
        read_parquet(root / cfg.paths.dataset / f"{name}.parquet", "built dataset: run build")
        for name in ("labelled", "unlabelled")
    )


def serving_rows(cfg: DictConfig, labelled: pd.DataFrame, unlabelled: pd.DataFrame) -> pd.DataFrame:
    """Every built row (labelled or not: cancelled flights were scheduled too) in the window."""
    frame = pd.concat([labelled, unlabelled], ignore_index=True).sort_values(EVENT_TIME, kind="stable")
    w = cfg.inference.window
    return window_rows(frame, EVENT_TIME, w.start, w.end, cfg.split.tz)


def run(cfg: DictConfig, root: Path) -> None:
    """Built dataset (serving window) -> paths.online (SQLite, keyed by data.key)."""
    rows = serving_rows(cfg, *built_rows(cfg, root))
    columns = lookup_columns(list(rows.columns), cfg)
    example = request_body(rows.iloc[0], request_columns(cfg)) if len(rows) else {}
    path = write_online(root / cfg.paths.online, rows, list(cfg.data.key), columns, example)
    write_json(
        root / cfg.paths.reports / "online.json",
        {"rows": len(rows), "columns": columns, "window": dict(cfg.inference.window), **provenance("online", cfg)},
    )
    print(f"online: {len(rows):,} entities x {len(columns)} looked-up columns -> {path}")
