"""Static HTML reports with embedded plots (matplotlib, no network needed to view)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from mlsys.io import atomic_write

SCORES = "scores.json"  # in each backtest period's model folder: how both models did there


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>" for v in r.values()
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def evaluation_html(
    path: Path,
    *,
    metrics: dict[str, Any],
    roc: pd.DataFrame,
    calibration: pd.DataFrame,
    importance: pd.DataFrame,
    slices: dict[str, dict[str, Any]],
    title: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, grp in roc.groupby("model"):
        ax.plot(grp["fpr"], grp["tpr"], label=name)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test window)")
    ax.legend()
    roc_img = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(calibration["mean_predicted"], calibration["observed_rate"], marker="o")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="mean predicted", ylabel="observed rate", title="Calibration (test window)")
    cal_img = _png(fig)

    top = importance.tail(25)
    fig, ax = plt.subplots(figsize=(6, max(3, 0.28 * len(top))))
    ax.barh(top["feature"], top["gain"])
    ax.set(xlabel="share of total gain", title="Feature importance")
    imp_img = _png(fig)

    names = ("auc", "pr_auc", "logloss", "brier", "ece")
    rows = [
        {"model": "lightgbm", **{k: metrics[k] for k in names}},
        {"model": "logistic baseline", **{k: metrics["baseline_logreg"][k] for k in names}},
        {"model": "base rate", **{k: metrics["baseline_base_rate"][k] for k in names}},
    ]
    slice_html = "".join(
        f"<h3>by {html.escape(col)}</h3>"
        + _table(
            [
                {
                    "value": v,
                    "rows": e["rows"],
                    "positive_rate": e["positive_rate"],
                    "auc": e.get("auc", "-"),
                    "logloss": e.get("logloss", "-"),
                }
                for v, e in values.items()
            ]
        )
        for col, values in slices.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} img{{margin:0.5em}}</style></head><body>
<h1>{html.escape(title)}</h1><h2>Test window</h2>{_table(rows)}
<div>{roc_img}{cal_img}</div><div>{imp_img}</div><h2>Slices</h2>{slice_html}</body></html>"""
    return atomic_write(path, lambda p: p.write_text(page, encoding="utf-8"))


def backtest_html(path: Path, table: pd.DataFrame, summary: dict[str, Any], decisions: dict[str, str]) -> Path:
    """Static vs dynamic by period: AUC, log loss and model age, with the summary and what
    each dynamic retrain decided (adopted, or kept the previous model and why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric, title in zip(
        axes,
        ("auc", "logloss", "model_age_days_mean"),
        ("AUC by period (higher is better)", "Log loss by period (lower is better)", "Model age at prediction (days)"),
        strict=True,
    ):
        for model, grp in table.groupby("model"):
            ax.plot(grp["period"], grp[metric], marker="o", label=model)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
        ax.legend()
    images = _png(fig)
    rows = [
        {
            "period": p,
            **{f"{m} {k}": g.set_index("model").at[m, k] for m in ("static", "dynamic") for k in ("auc", "logloss")},
            "dynamic retrain before the period": decisions[p],
        }
        for p, g in table.groupby("period", sort=True)
    ]
    facts = [{"measure": k, "value": v} for k, v in summary.items()]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mlsys backtest</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>Static vs dynamic training, replayed</h1>
<p>The static model is trained once on the initial window; the dynamic model is retrained
before each period on the data before it ({html.escape(str(summary["dynamic_training"]))}), once
the new period's data passes its check, and is adopted only if it passes the gates on the
held-out newest days; otherwise the previous model stays live (see the last column).</p>
{_table(facts)}<div>{images}</div><h2>By period</h2>{_table(rows)}</body></html>"""
    return atomic_write(path, lambda p: p.write_text(page, encoding="utf-8"))
