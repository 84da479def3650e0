"""Static vs dynamic, period by period: a table for DVC plots, a summary metric, a page."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.io import read_json, write_csv, write_json
from mlsys.reports import PAGE, SCORES, backtest_html, refusal_warning
from mlsys.tasks import SLICE_METRICS, Task


def run(cfg: DictConfig, root: Path) -> None:
    """models/backtest/*/scores.json -> reports/backtest/{backtest.csv,index.html}, metrics/backtest.json."""
    results = [
        read_json(root / cfg.paths.backtest / p.name / SCORES, f"backtest period {p.name}: run backtest")
        for p in cfg.backtest.periods
    ]
    task = Task(results[0].get("task", "binary"))  # what both models predict
    first, second = SLICE_METRICS[task.kind]
    names = [*task.metrics, "model_age_days_mean", "rows"]
    rows = [
        {
            "period": r["period"],
            "model": kind,
            **{k: r[kind][k] for k in names},
            "train_seconds": r["train_seconds"] if kind == "dynamic" else 0.0,
        }
        for r in results
        for kind in ("static", "dynamic")
    ]
    table = pd.DataFrame(rows)
    wide = table.pivot(index="period", columns="model", values=[first, second, "model_age_days_mean"])
    gain = {m: (wide[m]["dynamic"] - wide[m]["static"]) * task.direction(m) for m in (first, second)}
    summary = {
        "periods": len(results),
        "task": task.kind,
        f"{first}_static_mean": float(wide[first]["static"].mean()),
        f"{first}_dynamic_mean": float(wide[first]["dynamic"].mean()),
        f"{first}_gain_mean": float(gain[first].mean()),  # > 0: dynamic is better (by the metric's direction)
        f"{second}_gain_mean": float(gain[second].mean()),
        "periods_dynamic_better": int((gain[first] > 0).sum()),
        "retrain_seconds_total": float(sum(r["train_seconds"] for r in results)),
        "retrains_adopted": sum(r["retrain"]["adopted"] for r in results),
        "retrains_kept_previous": sum(not r["retrain"]["adopted"] for r in results),
        "dynamic_training": cfg.training.window + (" + warm start" if cfg.training.warm_start else ""),
    }
    if warning := refusal_warning(results):
        summary["warning"] = warning
    out = root / cfg.paths.backtest_report
    write_csv(table, root / cfg.paths.backtest_table)
    write_json(root / cfg.paths.backtest_metrics, summary)
    decisions = {
        r["period"]: r["dynamic_training"]
        if r["retrain"]["adopted"]
        else "kept the previous model: " + "; ".join(r["retrain"]["reasons"])
        for r in results
    }
    backtest_html(out / PAGE, table, summary, decisions, (first, second))
    print(
        f"backtest: mean {first} static {summary[f'{first}_static_mean']:.4f}, dynamic "
        f"{summary[f'{first}_dynamic_mean']:.4f} (gain {summary[f'{first}_gain_mean']:+.4f}; dynamic better in "
        f"{summary['periods_dynamic_better']}/"
        f"{len(results)} periods) for {summary['retrain_seconds_total']:.1f}s of retraining; {out / PAGE}"
    )
    if "warning" in summary:
        print(f"backtest: WARNING {summary['warning']}", file=sys.stderr)
