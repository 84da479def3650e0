"""Release gates as pure functions: metrics in, a blessing record out.

Every gate yields {gate, metric, value, threshold, passed, reason}; a gate that cannot
apply (no live model yet, a slice too small) is recorded with `passed: null` and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from mlsys.errors import ConfigError
from mlsys.tasks import BASELINES, PER_CLASS_METRICS, SLICE_METRICS, Task

Gate = dict[str, Any]
GATES = ("leakage", "absolute", "slice", "change", "baseline", "stability", "infra")  # kinds, in order


def check_release(release: DictConfig, task: Task) -> None:
    """Every gated metric is one of the task's (with its better direction); the model's
    registry name is a safe folder name."""
    from mlsys.errors import UsageError
    from mlsys.release.registry import check_name

    try:
        check_name(release.model_name)
    except UsageError as exc:
        raise ConfigError(str(exc)) from exc
    for key, names in (
        ("absolute", release.absolute),
        ("change", release.change),
        ("baseline.metric", [release.baseline.metric] if release.baseline.metric else []),
    ):
        for name in names:
            task.check_metric(f"release.{key}" if key == "baseline.metric" else f"release.{key}.{name}", name)
    for name in release.slices.bounds:
        if name not in SLICE_METRICS[task.kind]:
            raise ConfigError(
                f"release.slices.bounds.{name}: slices of a {task.kind} task are scored by "
                f"{list(SLICE_METRICS[task.kind])}"
            )
    for name in release.per_class:
        if task.kind != "multiclass" or name not in PER_CLASS_METRICS:
            raise ConfigError(
                f"release.per_class.{name}: per-class bounds are for a multiclass task's {list(PER_CLASS_METRICS)}"
                f" (data.label.task is {task.kind})"
            )


def make_gate(gate: str, metric: str, value: float | None, threshold: Any, passed: bool | None, reason: str) -> Gate:
    return {"gate": gate, "metric": metric, "value": value, "threshold": threshold, "passed": passed, "reason": reason}


def _bound(gate: str, metric: str, value: float, bound: DictConfig) -> Gate:
    if value is None or not np.isfinite(value):
        return make_gate(
            gate, metric, None, f"min {bound.min}, max {bound.max}", False, f"{metric} is not a finite number"
        )
    if bound.min is not None and value < bound.min:
        return make_gate(gate, metric, value, f">= {bound.min}", False, f"{metric} {value:.4f} < {bound.min}")
    if bound.max is not None and value > bound.max:
        return make_gate(gate, metric, value, f"<= {bound.max}", False, f"{metric} {value:.4f} > {bound.max}")
    limits = " and ".join(f"{op} {v}" for op, v in ((">=", bound.min), ("<=", bound.max)) if v is not None)
    return make_gate(gate, metric, value, limits, True, f"{metric} {value:.4f} within {limits}")


def absolute_gates(metrics: dict[str, Any], release: DictConfig) -> list[Gate]:
    return [_bound("absolute", name, metrics.get(name), bound) for name, bound in release.absolute.items()]


def rolling_absolute_gates(
    metrics: dict[str, Any], live: dict[str, Any] | None, release: DictConfig, waivers_before: int = 0
) -> list[Gate]:
    """Absolute gates for a retrain judged on a short rolling holdout: a bound the live model
    also misses on the same rows measures those rows, not the candidate, so it is waived
    (recorded as not gated; the change gates still hold the candidate to the live model).

    No ratchet: a waived value may be at most `release.waiver.max_beyond` past its bound, and
    at most `release.waiver.max_consecutive` releases in a row may use a waiver (the live
    model's record says how many did), so retrains cannot each slip a little further."""
    out = absolute_gates(metrics, release)
    if not live or "error" in live:
        return out
    waiver = release.waiver
    for i, (name, bound) in enumerate(release.absolute.items()):
        live_gate = _bound("absolute", name, live.get(name), bound)
        if out[i]["passed"] is not False or live_gate["passed"] is not False:
            continue
        value = metrics.get(name)
        near = value is not None and np.isfinite(value)
        near = near and (bound.min is None or value >= bound.min - waiver.max_beyond)
        near = near and (bound.max is None or value <= bound.max + waiver.max_beyond)
        also = f"the live model misses it too on these rows ({live_gate['reason']})"
        if not near:
            out[i]["reason"] += f"; {also}, but a waiver covers at most release.waiver.max_beyond={waiver.max_beyond}"
        elif waivers_before >= waiver.max_consecutive:
            out[i]["reason"] += (
                f"; {also}, but the last {waivers_before} releases already used a waiver "
                f"(release.waiver.max_consecutive={waiver.max_consecutive})"
            )
        else:
            out[i] = {**out[i], "passed": None, "waived": True, "reason": f"not gated: {out[i]['reason']}, and {also}"}
    return out


def waivers_in_a_row(gates: list[Gate], before: int) -> int:
    """How many releases in a row used a waiver, this one included (0 if it used none)."""
    return before + 1 if any(g.get("waived") for g in gates) else 0


def slice_gates(slices: dict[str, dict[str, Any]], release: DictConfig) -> list[Gate]:
    """Every slice value with enough rows, every metric bound; small slices, and binary slices
    holding one class (no ranking to score: every hour of the night is quiet), are listed."""
    out = []
    spec = release.slices
    for column, values in slices.items():
        for value, entry in values.items():
            for metric, bound in spec.bounds.items():
                name = f"{column}={value}:{metric}"
                if entry["rows"] < spec.min_rows:
                    why = f"{entry['rows']} rows < release.slices.min_rows={spec.min_rows}"
                elif entry.get("positive_rate") in (0.0, 1.0):
                    why = f"every row of the slice has label {int(entry['positive_rate'])}"
                else:
                    why = None
                if why:
                    bounds = f"min {bound.min}, max {bound.max}"
                    out.append(make_gate("slice", name, entry.get(metric), bounds, None, f"not gated: {why}"))
                else:
                    out.append(_bound("slice", name, entry.get(metric), bound))
    return out


def feature_list_gate(model_names: list[str], artifact_names: list[str]) -> Gate:
    same = model_names == artifact_names
    return make_gate(
        "stability",
        "feature_list",
        len(model_names),
        "== feature artifact",
        same,
        "model features match the feature artifact"
        if same
        else f"model features differ from the feature artifact: {sorted(set(model_names) ^ set(artifact_names))}",
    )


def change_gates(
    task: Task, metrics: dict[str, Any], live: dict[str, Any] | None, live_version: str | None, release: DictConfig
) -> list[Gate]:
    """Candidate vs the live model, both scored on the same test rows."""
    if live is None:
        return [
            make_gate("change", name, metrics.get(name), None, None, "skipped: no model is released yet")
            for name in release.change
        ]
    if "error" in live:
        return [make_gate("change", name, metrics.get(name), None, False, live["error"]) for name in release.change]
    out = []
    for name, spec in release.change.items():
        new, old = metrics[name], live[name]
        worse = (old - new) * task.direction(name)  # > 0: the candidate is worse
        allowed = spec.max_worsening * (abs(old) if spec.relative else 1.0)
        kind = f"{spec.max_worsening:.1%} of live" if spec.relative else f"{spec.max_worsening}"
        passed = bool(worse <= allowed)
        out.append(
            make_gate(
                "change",
                name,
                new,
                f"worsening <= {kind} ({allowed:.4f})",
                passed,
                f"{name} {new:.4f} vs live {live_version} {old:.4f} on the same rows: "
                f"{'worse' if worse > 0 else 'better or equal'} by {abs(worse):.4f}",
            )
        )
    return out


def baseline_gate(task: Task, metrics: dict[str, Any], release: DictConfig) -> Gate:
    spec = release.baseline
    metric, linear = spec.metric or task.primary, BASELINES[task.kind][0]
    model, base = metrics[metric], metrics[f"baseline_{linear}"][metric]
    lift = (model - base) * task.direction(metric)
    return make_gate(
        "baseline",
        metric,
        model,
        f"beats the {linear} baseline {base:.4f} by >= {spec.margin}",
        bool(lift >= spec.margin),
        f"lift over the {linear} baseline {lift:+.4f}",
    )


def per_class_gates(task: Task, metrics: dict[str, Any], release: DictConfig) -> list[Gate]:
    """Multiclass: each declared class's one-vs-rest figures; a class absent from the test
    window is listed, not gated."""
    out = []
    for name, entry in (metrics.get("per_class") or {}).items():
        for metric, bound in release.per_class.items():
            gate = f"class={name}:{metric}"
            if not entry["rows"]:
                out.append(make_gate("slice", gate, None, None, None, f"not gated: class {name!r} is absent"))
            else:
                out.append(_bound("slice", gate, entry[metric], bound))
    return out


def stability_gates(task: Task, predictions: np.ndarray, release: DictConfig) -> list[Gate]:
    finite = np.isfinite(predictions).all(axis=1) if predictions.ndim == 2 else np.isfinite(predictions)
    headline = predictions.max(axis=1) if predictions.ndim == 2 else predictions
    std = float(np.std(headline[finite])) if finite.any() else 0.0
    in_range, why = task.in_range(predictions)
    return [
        make_gate(
            "stability",
            "non_finite_predictions",
            int((~finite).sum()),
            0,
            bool(finite.all()),
            f"{int((~finite).sum())} NaN/inf among {len(predictions)} test predictions",
        ),
        make_gate(
            "stability",
            "prediction_std",
            std,
            f"> {release.min_prediction_std}",
            bool(std > release.min_prediction_std),
            f"predictions vary with std {std:.5f}",
        ),
        make_gate("stability", f"predictions_of_a_{task.kind}_task", float(in_range), True, in_range, why),
    ]


def blessing(gates: list[Gate], candidate: str, live: str | None) -> dict[str, Any]:
    failed = [g for g in gates if g["passed"] is False]
    return {
        "candidate": candidate,
        "live_before": live,
        "blessed": not failed,
        "failed": [f"{g['gate']}:{g['metric']}: {g['reason']}" for g in failed],
        "gates": gates,
    }


def summary(record: dict[str, Any]) -> str:
    counts = {
        k: sum(1 for g in record["gates"] if g["passed"] is v)
        for k, v in (("passed", True), ("failed", False), ("not gated", None))
    }
    head = (
        f"release: candidate {record['candidate']} {'BLESSED' if record['blessed'] else 'REJECTED'} "
        f"({counts['passed']} gates passed, {counts['failed']} failed, {counts['not gated']} not gated)"
    )
    return "\n".join([head, *(f"  FAILED {line}" for line in record["failed"])])


def leakage_gates(figures: dict[str, Any] | None, spec: DictConfig) -> list[Gate]:
    """One gate per suspect (mlsys.model.leakage's figures against `release.leakage`): an
    input that alone tells the label, holds most of the gain, or is a function of the label;
    a model whose valid figure is too good, or whose top two inputs hold nearly all the gain.
    A suspect all of whose inputs are accepted (with a reason) passes, and says so."""
    if figures is None:
        return [make_gate("leakage", "suspects", None, None, None, "not gated: no leakage figures (an older bundle)")]
    m, inputs = figures["measure"], figures["features"]
    suspects: list[tuple[list[str], str, float, str, str]] = []
    for f in inputs:
        name = f["name"]
        if f["label_function"]:
            suspects.append(([name], f"{name}:label_function", 1.0, "no", f"{name} is a function of the label (train)"))
        if np.isfinite(f["alone"]) and f["alone"] >= spec.alone:
            what = f"{name} alone tells the label: valid {m} {f['alone']:.4f} >= {spec.alone}"
            suspects.append(([name], f"{name}:alone_{m}", f["alone"], f"< {spec.alone}", what))
        if f["gain_share"] > spec.gain_share:
            what = f"{name} holds {f['gain_share']:.0%} of the gain (> {spec.gain_share:.0%})"
            suspects.append(([name], f"{name}:gain_share", f["gain_share"], f"<= {spec.gain_share}", what))
    top, overall, two = figures["top_two"], figures["overall"], figures["top_two_gain_share"]
    if np.isfinite(overall) and overall >= spec.overall:
        what = f"the model's valid {m} is {overall:.4f} (>= {spec.overall}); its top inputs: {', '.join(top)}"
        suspects.append((top, f"model:{m}", overall, f"< {spec.overall}", what))
    if len(inputs) >= spec.min_inputs and two > spec.top_two_gain_share:
        what = f"{' and '.join(top)} hold {two:.0%} of the gain (> {spec.top_two_gain_share:.0%})"
        suspects.append((top, "model:top_two_gain_share", two, f"<= {spec.top_two_gain_share}", what))
    gates = []
    for names, metric, value, threshold, what in suspects:
        reasons = [f"{n}: {spec.accepted[n]}" for n in names if n in spec.accepted]
        if len(reasons) == len(names):
            gates.append(
                make_gate("leakage", metric, value, threshold, True, f"accepted ({'; '.join(reasons)}): {what}")
            )
            continue
        hint = (
            "if it is known only after the outcome, declare it (availability: after_outcome) or drop it; "
            "if it is no leak, accept it with a reason in release.leakage.accepted"
        )
        passed = False if spec.policy == "fail" else None
        gates.append(make_gate("leakage", metric, value, threshold, passed, f"suspected leakage: {what}; {hint}"))
    if not suspects:
        best = max(inputs, key=lambda f: f["alone"] if np.isfinite(f["alone"]) else -np.inf, default=None)
        strongest = f"strongest alone {best['name']} ({m} {best['alone']:.3f}), " if best else ""
        why = f"no suspect: {strongest}top two hold {two:.0%} of the gain, valid {m} {overall:.4f}"
        gates.append(make_gate("leakage", "suspects", 0.0, "none", True, why))
    return gates
