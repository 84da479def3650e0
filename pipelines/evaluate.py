"""Score the test window with the trained model (through `load_model`, as serving will)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.columns import EVENT_TIME, LABEL
from mlsys.io import read_parquet, write_csv, write_json
from mlsys.model import load_model
from mlsys.model.evaluate import calibration_table, evaluate, roc_points
from mlsys.reports import evaluation_html
from mlsys.split import resolved, select


def run(cfg: DictConfig, root: Path) -> None:
    """Model + test window -> metrics (overall, slices, baselines), plot data, HTML report."""
    ev = cfg.evaluation
    model = load_model(root / cfg.paths.model)
    dataset = read_parquet(root / cfg.paths.labelled, "built dataset: run build")
    split = resolved(root / cfg.paths.windows)
    train = select(dataset, EVENT_TIME, split, split.train)
    test = select(dataset, EVENT_TIME, split, split.test)
    result = evaluate(model.predict_frame(test), train, test, ev, LABEL)
    metrics, slices, p, p_logreg = result.metrics, result.slices, result.predictions, result.baseline
    y = test[LABEL].to_numpy("int8")
    write_json(root / cfg.paths.test_metrics, metrics)
    write_json(root / cfg.paths.slice_metrics, slices)

    roc = pd.concat([roc_points(y, p).assign(model="lightgbm"), roc_points(y, p_logreg).assign(model="logreg")])
    calib = calibration_table(y, p, ev.calibration_bins)
    gain = model.booster.feature_importance(importance_type="gain")
    importance = pd.DataFrame({"feature": model.pipeline.names, "gain": gain / gain.sum()}).sort_values("gain")
    roc[roc["model"] == "lightgbm"].drop(columns="model").pipe(write_csv, root / cfg.paths.roc)
    roc[roc["model"] == "logreg"].drop(columns="model").pipe(write_csv, root / cfg.paths.roc_baseline)
    write_csv(calib, root / cfg.paths.calibration)
    write_csv(importance, root / cfg.paths.importance)

    report = root / cfg.paths.evaluation_page
    evaluation_html(
        report,
        metrics=metrics,
        roc=roc,
        calibration=calib,
        importance=importance,
        slices=slices,
        title=f"mlsys evaluation - model {model.version}",
    )
    write_json(root / cfg.paths.evaluate_report, {"model_version": model.version, **provenance("evaluate", cfg)})
    print(
        f"evaluate: test AUC {metrics['auc']:.4f} (logreg {metrics['baseline_logreg']['auc']:.4f}), "
        f"log loss {metrics['logloss']:.4f}, Brier {metrics['brier']:.4f}, ECE {metrics['ece']:.4f} "
        f"on {len(y):,} rows; report {report}"
    )
