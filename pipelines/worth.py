"""The worth study: is every model input worth having, and what does it cost? (data-2, data-3)"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlsys.config import provenance
from mlsys.data.columns import LABEL
from mlsys.io import read_parquet, write_csv, write_json
from mlsys.model import load_model
from mlsys.model.worth import Windows, study
from mlsys.reports import PAGE, worth_html


def run(cfg: DictConfig, root: Path) -> None:
    """The train stage's model and windows -> reports/worth/{worth.csv,index.html}, metrics/worth.json."""
    model = load_model(root / cfg.paths.model)
    names = model.pipeline.names
    train = read_parquet(root / cfg.paths.train_matrix, "encoded train window: run featurize")
    valid = read_parquet(root / cfg.paths.valid_matrix, "encoded valid window: run featurize")
    data = Windows(train[names].to_numpy("float64"), train[LABEL].to_numpy(), valid[names].to_numpy("float64"),
                   valid[LABEL].to_numpy())  # fmt: skip
    frame = read_parquet(root / cfg.paths.labelled, "built dataset: run build").tail(cfg.worth.cost_rows)
    groups = OmegaConf.to_container(cfg.features.groups)
    start = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("worth: {task.description}"), TimeElapsedColumn(), transient=True) as bar:
        job = bar.add_task("permutation")
        table, summary = study(
            model, data, frame, cfg.worth, groups, cfg.model, cfg.training, cfg.data,
            progress=lambda what: bar.update(job, description=what),
        )  # fmt: skip
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_csv(table, root / cfg.paths.worth_table)
    write_json(root / cfg.paths.worth_metrics, summary)
    write_json(root / cfg.paths.worth_report / "provenance.json", {**summary, **provenance("worth", cfg)})
    worth_html(root / cfg.paths.worth_report / PAGE, table, summary, cfg.worth.useless_below)
    useless = ", ".join(summary["useless"]) or "none"
    print(
        f"worth: {summary['inputs']} inputs, {summary['retrains']} leave-one-out retrains in {summary['seconds']}s; "
        f"useless ({summary['measure']} change <= {cfg.worth.useless_below:g}): {useless}; "
        f"report {cfg.paths.worth_report}/{PAGE}"
    )
