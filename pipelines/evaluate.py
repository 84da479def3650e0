"""Score the test window with the trained model (through `load_model`, as serving will)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.io import read_parquet, write_csv, write_json
from mlsys.model import load_model
from mlsys.model.evaluate import evaluate, plot_data
from mlsys.reports import PAGE, evaluation_html
from mlsys.split import resolved, select
from mlsys.tasks import BASELINES


def run(cfg: DictConfig, root: Path) -> None:
    """Model + test window -> metrics (overall, slices, baselines), the task's plot data, HTML report."""
    ev = cfg.evaluation
    model = load_model(root / cfg.paths.model)
    task = model.task
    dataset = read_parquet(root / cfg.paths.labelled, "built dataset: run build")
    split = resolved(root / cfg.paths.windows)
    train = select(dataset, EVENT_TIME, split, split.train)
    test = select(dataset, EVENT_TIME, split, split.test)
    result = evaluate(task, model.predict_frame(test), train, test, ev, LABEL)
    metrics = result.metrics
    write_json(root / cfg.paths.test_metrics, metrics)
    write_json(root / cfg.paths.slice_metrics, result.slices)

    plots = plot_data(task, task.truth(test[LABEL]), result.predictions, result.baseline, ev.calibration_bins)
    for slot, frame in plots.items():
        write_csv(frame, root / cfg.paths[slot])
    gain = model.booster.feature_importance(importance_type="gain")
    importance = pd.DataFrame({"feature": model.pipeline.names, "gain": gain / gain.sum()}).sort_values("gain")
    write_csv(importance, root / cfg.paths.importance)

    report = root / cfg.paths.evaluation_page
    evaluation_html(
        report,
        metrics=metrics,
        baselines=BASELINES[task.kind],
        plots=plots,
        specs=ev.plots,
        importance=importance,
        slices=result.slices,
        title=f"mlsys evaluation - {task.kind} model {model.version}",
        worth=os.path.relpath(root / cfg.paths.worth_report / PAGE, report.parent),
    )
    write_json(root / cfg.paths.evaluate_report, {"model_version": model.version, **provenance("evaluate", cfg)})
    linear = BASELINES[task.kind][0]
    shown = ", ".join(f"{k} {metrics[k]:.4f}" for k, v in metrics.items() if k in task.metrics and v is not None)
    print(
        f"evaluate: {task.kind} on {len(test):,} test rows: {shown} "
        f"({task.primary} of the {linear} baseline {metrics[f'baseline_{linear}'][task.primary]:.4f}); report {report}"
    )
