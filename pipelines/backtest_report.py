"""Static vs dynamic, period by period: a table for DVC plots, a summary metric, a page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.io import read_json, write_csv, write_json
from mlsys.reports import SCORES, backtest_html


def run(cfg: DictConfig, root: Path) -> None:
    """models/backtest/*/scores.json -> reports/backtest/{backtest.csv,index.html}, metrics/backtest.json."""
    results = [
        read_json(root / cfg.paths.backtest / p.name / SCORES, f"backtest period {p.name}: run backtest")
        for p in cfg.backtest.periods
    ]
    rows = [
        {
            "period": r["period"],
            "model": kind,
            **{k: r[kind][k] for k in ("auc", "logloss", "ece", "brier", "model_age_days_mean", "rows")},
            "train_seconds": r["train_seconds"] if kind == "dynamic" else 0.0,
        }
        for r in results
        for kind in ("static", "dynamic")
    ]
    table = pd.DataFrame(rows)
    wide = table.pivot(index="period", columns="model", values=["auc", "logloss", "model_age_days_mean"])
    summary = {
        "periods": len(results),
        "auc_static_mean": float(wide["auc"]["static"].mean()),
        "auc_dynamic_mean": float(wide["auc"]["dynamic"].mean()),
        "auc_gain_mean": float((wide["auc"]["dynamic"] - wide["auc"]["static"]).mean()),
        "logloss_gain_mean": float((wide["logloss"]["static"] - wide["logloss"]["dynamic"]).mean()),
        "periods_dynamic_better": int((wide["auc"]["dynamic"] > wide["auc"]["static"]).sum()),
        "retrain_seconds_total": float(sum(r["train_seconds"] for r in results)),
        "retrains_adopted": sum(r["retrain"]["adopted"] for r in results),
        "retrains_kept_previous": sum(not r["retrain"]["adopted"] for r in results),
        "dynamic_training": cfg.training.window + (" + warm start" if cfg.training.warm_start else ""),
    }
    out = root / cfg.paths.backtest_report
    write_csv(table, root / cfg.paths.backtest_table)
    write_json(root / cfg.paths.backtest_metrics, summary)
    decisions = {
        r["period"]: r["dynamic_training"]
        if r["retrain"]["adopted"]
        else "kept the previous model: " + "; ".join(r["retrain"]["reasons"])
        for r in results
    }
    backtest_html(out / "index.html", table, summary, decisions)
    print(
        f"backtest: mean AUC static {summary['auc_static_mean']:.4f}, dynamic {summary['auc_dynamic_mean']:.4f} "
        f"(gain {summary['auc_gain_mean']:+.4f}; dynamic better in {summary['periods_dynamic_better']}/"
        f"{len(results)} periods) for {summary['retrain_seconds_total']:.1f}s of retraining; {out}/index.html"
    )
