"""Cut the labelled dataset into the backtest's periods: one Parquet file per period, so a
period's stage depends on exactly the files it reads (adding a period reruns only it); and
record the config each backtest stage reads, one file per stage, which they depend on
instead of repeating the same params in every period's lock entry."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mlsys.config import provenance, select
from mlsys.data.columns import EVENT_TIME
from mlsys.io import read_parquet, write_json, write_parquet
from mlsys.split import window_rows
from mlsys.stages import STAGES, record_file


def run(cfg: DictConfig, root: Path) -> None:
    """Labelled dataset -> data/periods/<name>.parquet for the initial window and each period."""
    dataset = read_parquet(root / cfg.paths.labelled, "built dataset: run build")
    out, counts = root / cfg.paths.periods, {}
    for period in [cfg.backtest.initial, *cfg.backtest.periods]:
        rows = window_rows(dataset, EVENT_TIME, period.start, period.end, cfg.backtest.tz)
        write_parquet(out / f"{period.name}.parquet", rows)
        counts[period.name] = len(rows)
    for stage, spec in STAGES.items():
        if spec.recorded_by == "partition":
            write_json(out / record_file(stage), provenance(stage, select(cfg, spec.params)))
    write_json(
        root / cfg.paths.partition_report,
        {"rows": counts, "rows_outside_periods": len(dataset) - sum(counts.values()), **provenance("partition", cfg)},
    )
    print(
        f"partition: {len(counts)} periods, {sum(counts.values()):,} rows; "
        + ", ".join(f"{k}={v:,}" for k, v in counts.items())
    )
