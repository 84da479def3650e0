"""Static HTML reports with embedded plots (matplotlib, no network needed to view)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsys.io import atomic_write

PAGE = "index.html"  # a report folder's page (the backtest's, the monitor's)
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
    keys = list(dict.fromkeys(k for r in rows for k in r))  # every column, first seen first
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
            for v in (r.get(k, "-") for k in keys)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(path: Path, title: str, heading: str, body: str) -> Path:
    """One self-contained HTML page (plots embedded), written atomically."""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} img{{margin:0.5em}}</style></head><body>
<h1>{html.escape(heading)}</h1>{body}</body></html>"""
    return atomic_write(path, lambda p: p.write_text(page, encoding="utf-8"))


def _plot(plt: Any, spec: Any, frame: pd.DataFrame, baseline: pd.DataFrame | None) -> str:
    """One of the task's plots (`evaluation.plots`) as dvc.yaml declares it, as a PNG."""
    ys = [spec.y] if isinstance(spec.y, str) else list(spec.y)
    fig, ax = plt.subplots(figsize=(5, 5))
    if spec.template == "confusion":
        table = pd.crosstab(frame[spec.x], frame[ys[0]])
        ax.imshow(table.to_numpy(), cmap="Blues")
        ax.set_xticks(range(len(table.columns)), table.columns, rotation=45)
        ax.set_yticks(range(len(table.index)), table.index)
        for (i, j), n in np.ndenumerate(table.to_numpy()):
            ax.text(j, i, str(n), ha="center", va="center")
        ax.set(xlabel=ys[0], ylabel=spec.x)
    elif spec.template == "bar_horizontal":
        ax.barh(frame[ys[0]].astype(str), frame[spec.x])
        ax.set(xlabel=spec.x, ylabel=ys[0])
    else:
        for name, data in (("lightgbm", frame), ("baseline", baseline)):
            if data is None:
                continue
            for y in ys:
                label = f"{name} {y}" if len(ys) > 1 else name
                if spec.template == "scatter":
                    ax.scatter(data[spec.x], data[y], s=4, alpha=0.4, label=label)
                else:
                    ax.plot(data[spec.x], data[y], marker="." if len(data) < 30 else None, label=label)
        ax.set(xlabel=spec.x, ylabel=", ".join(map(str, ys)))
        ax.legend(fontsize="small")
    ax.set_title(spec.title, fontsize="medium")
    return _png(fig)


def evaluation_html(
    path: Path,
    *,
    metrics: dict[str, Any],
    baselines: tuple[str, str],
    plots: dict[str, pd.DataFrame],
    specs: Any,
    importance: pd.DataFrame,
    slices: dict[str, dict[str, Any]],
    title: str,
    worth: str,
) -> Path:
    """The evaluate stage's page: the task's metrics for the model and its two baselines, its
    plots (the ones in DVC plots), feature importance, every slice, and the worth study's page
    (`worth`: its address from this page), which a study run writes beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [_plot(plt, specs[slot], plots[slot], plots.get(f"{slot}_baseline")) for slot in ("curve", "fit", "extra")]
    top = importance.tail(25)
    fig, ax = plt.subplots(figsize=(6, max(3, 0.28 * len(top))))
    ax.barh(top["feature"], top["gain"])
    ax.set(xlabel="share of total gain", title="Feature importance")
    imp_img = _png(fig)

    linear, constant = baselines
    names = [k for k, v in metrics[f"baseline_{linear}"].items() if isinstance(v, float)]
    rows = [
        {"model": name, **{k: source.get(k) for k in names}}
        for name, source in (
            ("lightgbm", metrics),
            (f"{linear} baseline", metrics[f"baseline_{linear}"]),
            (f"{constant} baseline", metrics[f"baseline_{constant}"]),
        )
    ]
    per_class = metrics.get("per_class")
    class_html = f"<h2>Per class</h2>{_table([{'class': c, **e} for c, e in per_class.items()])}" if per_class else ""
    slice_html = "".join(
        f"<h3>by {html.escape(col)}</h3>" + _table([{"value": v, **e} for v, e in values.items()])
        for col, values in slices.items()
    )
    body = f"""<h2>Test window</h2>{_table(rows)}{class_html}
<div>{"".join(images)}</div><div>{imp_img}</div><h2>Slices</h2>{slice_html}
<h2>Feature worth and cost</h2><p>The worth study (<code>dvc repro studies/dvc.yaml:worth</code>, or
<code>dvc repro -P</code>) shuffles and leaves out each input; its latest run, when there is one
(<a href="{html.escape(worth)}">{html.escape(worth)}</a>):</p>
<iframe src="{html.escape(worth)}" style="width:100%;height:900px;border:1px solid #ccc"></iframe>"""
    return _page(path, title, title, body)


def backtest_html(
    path: Path, table: pd.DataFrame, summary: dict[str, Any], decisions: dict[str, str], metrics: tuple[str, str]
) -> Path:
    """Static vs dynamic by period: AUC, log loss and model age, with the summary and what
    each dynamic retrain decided (adopted, or kept the previous model and why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric, title in zip(
        axes,
        (*metrics, "model_age_days_mean"),
        (*(f"{m} by period" for m in metrics), "Model age at prediction (days)"),
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
            **{f"{m} {k}": g.set_index("model").at[m, k] for m in ("static", "dynamic") for k in metrics},
            "dynamic retrain before the period": decisions[p],
        }
        for p, g in table.groupby("period", sort=True)
    ]
    facts = [{"measure": k, "value": v} for k, v in summary.items()]
    body = f"""<p>The static model is trained once on the initial window; the dynamic model is retrained
before each period on the data before it ({html.escape(str(summary["dynamic_training"]))}), once
the new period's data passes its check, and is adopted only if it passes the gates on the
held-out newest days; otherwise the previous model stays live (see the last column).</p>
{_table(facts)}<div>{images}</div><h2>By period</h2>{_table(rows)}"""
    return _page(path, "mlsys backtest", "Static vs dynamic training, replayed", body)


def worth_html(path: Path, table: pd.DataFrame, summary: dict[str, Any], useless_below: float) -> Path:
    """The worth study's page: each input's change (leave-one-out where retrained, else the
    shuffle's), useless ones marked, and the whole table with the costs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table.sort_values("change")
    fig, ax = plt.subplots(figsize=(7, max(3, 0.26 * len(shown))))
    colors = ["#c44" if v == "useless" else "#48a" for v in shown["verdict"]]
    ax.barh(shown["feature"], shown["change"], color=colors)
    ax.axvline(useless_below, color="#888", linestyle="--", linewidth=1)
    ax.set(xlabel=f"relative loss of {summary['measure']} without it (red: useless)", title="Feature worth")
    facts = [{"measure": k, "value": ", ".join(v) if isinstance(v, list) else v} for k, v in summary.items()]
    body = f"""<p>Each input shuffled on the valid window (every input), and left out of a retrain with the
same windows, seed and parameters (the most important ones, those the shuffle finds useless, and
each group). A change is the relative loss of {html.escape(summary["measure"])} without the input; at
or below {useless_below:g} the model does as well without it. Costs: the transform per row (batch)
and per record (serving), and the online read a looked-up input needs (one per request, shared
by every looked-up input).</p>{_table(facts)}<div>{_png(fig)}</div>
<h2>Every input</h2>{_table(table.to_dict("records"))}"""
    return _page(path, "mlsys feature worth", "Feature worth and cost", body)


def refusal_warning(results: list[dict[str, Any]]) -> str | None:
    """When no period of a backtest adopted its retrain, why (the data check's, the contract's
    or the gates' reasons): a dynamic gain of +0.0000 that says so, never a silent one."""
    if any(r["retrain"]["adopted"] for r in results):
        return None
    refusals = sorted({reason for r in results for reason in r["retrain"]["reasons"]})
    return (
        "no retrain was adopted: the dynamic model is the static one in every period; "
        f"refused for: {'; '.join(refusals)}"
    )


def _monitor_model(plt: Any, version: str, by: dict[tuple[str, str], Any]) -> list[str]:
    """One served model's plots: drift (in all, and day by day for the most drifted features),
    its answers against the validation window's, quality by day against the release's test
    figure and gate, calibration."""
    images, v = [], html.escape(version)
    drift, quality = by.get((version, "drift")), by.get((version, "quality"))
    figures = drift.figures if drift else {}
    rows = {k: f["psi"] for k, f in figures.items() if isinstance(f, dict) and "psi" in f}
    if rows:
        top = sorted(rows.items(), key=lambda kv: kv[1])[-25:]
        fig, ax = plt.subplots(figsize=(8, max(3, 0.28 * len(top))))
        ax.barh([k for k, _ in top], [x for _, x in top], color="#4c72b0")
        ax.set_title(f"PSI against the train window (answers: the validation window), model {version}")
        images.append(f"<h2>Drift, model {v}</h2>{_png(fig)}")
    days = figures.get("psi_by_day")
    if days:
        fig, ax = plt.subplots(figsize=(10, 3.5))
        for name in [k for k in days[0] if k != "day"]:
            ax.plot([d["day"] for d in days], [d[name] for d in days], marker=".", label=name)
        ax.set_title("PSI by prediction day, the most drifted features")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.legend(fontsize="small")
        images.append(_png(fig))
    for col, shares in (figures.get("answer_shares") or {}).items():
        fig, ax = plt.subplots(figsize=(8, 3.5))
        x = np.arange(len(shares["reference"]))
        ax.bar(x - 0.2, shares["reference"], 0.4, label="validation window (at release)")
        ax.bar(x + 0.2, shares["served"], 0.4, label="served")
        edges = [f"{e:.3g}" for e in shares["edges"]]
        ax.set_xticks(x, [f"<{edges[0]}" if edges else "all", *(f">={e}" for e in edges), "missing"][: len(x)])
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.set_title(f"Answers ({col}) by bin: share of records")
        ax.legend(fontsize="small")
        images.append(f"<h2>Answers against the reference, model {v}</h2>{_png(fig)}")
    days = quality.figures.get("by_day") if quality else None
    if days:
        metric = next(k for k in days[0] if k not in ("day", "rows"))
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.plot([d["day"] for d in days], [d[metric] for d in days], marker=".", label=f"served {metric} by day")
        for key, style, label in (("release_test", "--", "release test figure"), ("release_gate", ":", "release gate")):
            value = quality.figures.get(f"{key}_{metric}")
            if value is not None:
                ax.axhline(value, color="green" if key == "release_test" else "red", linestyle=style, label=label)
        ax.set_title(f"{metric} of the served answers by prediction day")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.legend()
        images.append(f"<h2>Quality once labels landed, model {v}</h2>{_png(fig)}")
    table = quality.figures.get("calibration") if quality else None
    if table:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.plot([r["mean_predicted"] for r in table], [r["observed_rate"] for r in table], marker="o")
        ax.set(xlabel="mean predicted", ylabel="observed", title="Calibration of the served answers")
        images.append(_png(fig))
    slices = quality.figures.get("slices") if quality else None
    if slices:
        images.append(f"<h3>Slices on served records, by the release's slice gates</h3>{_table(slices)}")
    return images


def monitor_html(
    path: Path, summary: dict[str, Any], results: list[tuple[str, Any]], log: pd.DataFrame, history: list[dict]
) -> Path:
    """`mlsys monitor`'s page: per served model, drift, answers against the validation
    window's, quality and calibration; volume and latency by day; findings, and the alerts
    of every run so far (`history`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(v, r.check): r for v, r in results}
    images = [img for version in summary["models"] for img in _monitor_model(plt, version, by)]
    if len(log):
        day = log["prediction_time"].dt.floor("D")
        daily = log.groupby(day).agg(records=("entity", "size"), p50=("latency_ms", "median"))
        daily["p99"] = log.groupby(day)["latency_ms"].quantile(0.99)
        fig, (a, b) = plt.subplots(1, 2, figsize=(14, 3.5))
        a.bar(daily.index.astype(str), daily["records"])
        a.set_title("Records by prediction day")
        b.plot(daily.index.astype(str), daily["p50"], label="p50 ms")
        b.plot(daily.index.astype(str), daily["p99"], label="p99 ms")
        b.set_title("Latency by prediction day")
        b.legend()
        for ax in (a, b):
            ax.tick_params(axis="x", rotation=60, labelsize=7)
        images.append(f"<h2>Volume and latency</h2>{_png(fig)}")
    if history:
        runs = pd.DataFrame(history)
        counts = runs.groupby(["at", "severity"]).size().unstack(fill_value=0)
        fig, ax = plt.subplots(figsize=(10, 3))
        bottom = np.zeros(len(counts))
        for severity, color in (("fail", "#c44e52"), ("warn", "#dd8452")):
            if severity in counts:
                ax.bar(counts.index.astype(str), counts[severity], bottom=bottom, color=color, label=severity)
                bottom += counts[severity].to_numpy()
        ax.set_title("Findings per monitoring run")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.legend()
        images.append(f"<h2>Alerts over time</h2>{_png(fig)}")
    checks = [{"model:check": k, **v} for k, v in summary["checks"].items()]
    findings = [f.record() for _, r in results for f in r.findings]
    span = summary["window"]
    body = f"""<p>Prediction time {html.escape(str(span["since"]))} to {html.escape(str(span["until"]))}:
{summary["records"]:,} records, models {html.escape(", ".join(summary["models"]))};
{summary["findings"]["fail"]} fail, {summary["findings"]["warn"]} warn.</p>
<h2>Findings</h2>{_table(findings) or "<p>none</p>"}<div>{"".join(images)}</div>
<h2>Checks</h2>{_table(checks)}"""
    return _page(path, "mlsys monitor", f"Monitoring: {summary['status']}", body)
