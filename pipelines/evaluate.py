"""Score the test window with the trained model (through `load_model`, as serving will)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.data.build import EVENT_TIME, LABEL
from mlsys.errors import ConfigError, ContractError
from mlsys.io import read_parquet, write_json
from mlsys.model import load_model
from mlsys.model.evaluate import calibration_table, logistic_baseline, roc_points, scores, slice_metrics
from mlsys.reports import evaluation_html
from mlsys.split import resolved, select


def run(cfg: DictConfig, root: Path) -> None:
    """Model + test window -> metrics (overall, slices, baselines), plot data, HTML report."""
    ev = cfg.evaluation
    model = load_model(root / cfg.paths.model)
    dataset = read_parquet(root / cfg.paths.dataset / "labelled.parquet", "built dataset: run build")
    split = resolved(root / cfg.paths.features)
    train = select(dataset, EVENT_TIME, split, split.train)
    test = select(dataset, EVENT_TIME, split, split.test)
    for key, columns in (("evaluation.baseline.features", ev.baseline.features), ("evaluation.slices", ev.slices)):
        missing = sorted(set(columns) - set(test.columns))
        if missing:
            raise ConfigError(f"{key}: {missing} are not columns of the built dataset")
    y = test[LABEL].to_numpy("int8")
    p = model.predict_frame(test)
    if not np.isfinite(p).all():
        raise ContractError(f"evaluate: {int((~np.isfinite(p)).sum())} non-finite predictions on the test window")

    base_rate = float(train[LABEL].mean())
    p_logreg = logistic_baseline(train, test, list(ev.baseline.features), LABEL, ev.baseline.max_iter)
    overall = scores(y, p, ev.calibration_bins)
    logreg = scores(y, p_logreg, ev.calibration_bins)
    constant = scores(y, np.full(len(y), base_rate), ev.calibration_bins)
    metrics = {
        **overall,
        "test_rows": len(y),
        "test_positive_rate": float(y.mean()),
        "baseline_logreg": logreg,
        "baseline_base_rate": constant,
        "auc_lift_over_logreg": overall["auc"] - logreg["auc"],
    }
    out_metrics, out_plots = root / cfg.paths.metrics, root / cfg.paths.plots
    write_json(out_metrics / "metrics.json", metrics)
    slices = slice_metrics(test, y, p, list(ev.slices), ev.min_slice_rows)
    write_json(out_metrics / "slices.json", slices)

    roc = pd.concat([roc_points(y, p).assign(model="lightgbm"), roc_points(y, p_logreg).assign(model="logreg")])
    calib = calibration_table(y, p, ev.calibration_bins)
    gain = model.booster.feature_importance(importance_type="gain")
    importance = pd.DataFrame({"feature": model.pipeline.names, "gain": gain / gain.sum()}).sort_values("gain")
    out_plots.mkdir(parents=True, exist_ok=True)
    roc[roc["model"] == "lightgbm"].drop(columns="model").to_csv(out_plots / "roc.csv", index=False)
    roc[roc["model"] == "logreg"].drop(columns="model").to_csv(out_plots / "roc_baseline.csv", index=False)
    calib.to_csv(out_plots / "calibration.csv", index=False)
    importance.to_csv(out_plots / "importance.csv", index=False)

    report = root / cfg.paths.reports / "evaluation.html"
    evaluation_html(
        report,
        metrics=metrics,
        roc=roc,
        calibration=calib,
        importance=importance,
        slices=slices,
        title=f"mlsys evaluation - model {model.version}",
    )
    write_json(
        root / cfg.paths.reports / "evaluate.json", {"model_version": model.version, **provenance("evaluate", cfg)}
    )
    print(
        f"evaluate: test AUC {overall['auc']:.4f} (logreg {logreg['auc']:.4f}), log loss {overall['logloss']:.4f}, "
        f"Brier {overall['brier']:.4f}, ECE {overall['ece']:.4f} on {len(y):,} rows; report {report}"
    )
