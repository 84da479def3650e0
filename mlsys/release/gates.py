"""Release gates as pure functions: metrics in, a blessing record out.

Every gate yields {gate, metric, value, threshold, passed, reason}; a gate that cannot
apply (no live model yet, a slice too small) is recorded with `passed: null` and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from mlsys.errors import ConfigError

# Better direction of each metric: +1 higher is better, -1 lower is better.
DIRECTIONS = {"auc": 1, "pr_auc": 1, "logloss": -1, "brier": -1, "ece": -1}

Gate = dict[str, Any]
GATES = ("absolute", "slice", "change", "baseline", "stability", "infra")  # kinds, in the order judged


def check_release(release: DictConfig) -> None:
    """Every gated metric is one the gates know (with its better direction); the model's
    registry name is a safe folder name."""
    from mlsys.errors import UsageError
    from mlsys.release.registry import check_name

    try:
        check_name(release.model_name)
    except UsageError as exc:
        raise ConfigError(str(exc)) from exc
    known = sorted(DIRECTIONS)
    for key, names in (
        ("absolute", release.absolute),
        ("change", release.change),
        ("slices.bounds", release.slices.bounds),
        ("baseline.metric", [release.baseline.metric]),
    ):
        for name in names:
            if name not in DIRECTIONS:
                where = f"release.{key}" if key == "baseline.metric" else f"release.{key}.{name}"
                raise ConfigError(f"{where}: {name!r} is not one of the gated metrics {known}")


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
    """Every slice value with enough rows, every metric bound; small slices are listed."""
    out = []
    spec = release.slices
    for column, values in slices.items():
        for value, entry in values.items():
            for metric, bound in spec.bounds.items():
                name = f"{column}={value}:{metric}"
                if entry["rows"] < spec.min_rows:
                    out.append(
                        make_gate(
                            "slice",
                            name,
                            entry.get(metric),
                            f"min {bound.min}, max {bound.max}",
                            None,
                            f"not gated: {entry['rows']} rows < release.slices.min_rows={spec.min_rows}",
                        )
                    )
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
    metrics: dict[str, Any], live: dict[str, Any] | None, live_version: str | None, release: DictConfig
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
        worse = (old - new) * DIRECTIONS[name]  # > 0: the candidate is worse
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


def baseline_gate(metrics: dict[str, Any], release: DictConfig) -> Gate:
    spec = release.baseline
    model, base = metrics[spec.metric], metrics["baseline_logreg"][spec.metric]
    lift = (model - base) * DIRECTIONS[spec.metric]
    return make_gate(
        "baseline",
        spec.metric,
        model,
        f"beats logistic baseline {base:.4f} by >= {spec.margin}",
        bool(lift >= spec.margin),
        f"lift over the logistic baseline {lift:+.4f}",
    )


def stability_gates(predictions: np.ndarray, release: DictConfig) -> list[Gate]:
    finite = np.isfinite(predictions)
    std = float(np.std(predictions[finite])) if finite.any() else 0.0
    in_range = bool(((predictions[finite] >= 0) & (predictions[finite] <= 1)).all())
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
        make_gate(
            "stability",
            "predictions_in_[0,1]",
            float(in_range),
            True,
            in_range,
            "probabilities within [0, 1]" if in_range else "probabilities outside [0, 1]",
        ),
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
