"""The checks of `mlsys monitor`, each over the window's logged records of one served model.

Each returns its figures (what the report shows) and findings (figures past a bound). A
finding's severity is `fail` past `fail`, else `warn` past `warn`; higher is worse.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys import drift
from mlsys.data.columns import ANSWER, FEATURE, INPUT, LABEL
from mlsys.serving.batch import widened_range

CHECKS = ("invariants", "skew", "drift", "staleness", "stability", "performance", "quality", "upstream")


@dataclass
class Finding:
    check: str
    subject: str  # what crossed: a feature, a contract check, "model age"...
    measure: str
    value: float
    bound: float
    severity: str  # warn | fail
    message: str
    model_version: str | None = None

    def record(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Result:
    check: str
    figures: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None  # why the check could not judge (not enough data, no labels yet)

    def judge(self, subject: str, measure: str, value: float, bounds: Any, what: str) -> None:
        """Record a finding when `value` is past `bounds.fail` (else `bounds.warn`)."""
        if value is None or not np.isfinite(value):
            return
        for severity in ("fail", "warn"):
            bound = bounds[severity]
            if bound is not None and value > bound:
                message = f"{what}: {value:.4g} > {severity} bound {bound:g}"
                self.findings.append(
                    Finding(self.check, subject, measure, float(value), float(bound), severity, message)
                )
                return

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        severities = {f.severity for f in self.findings}
        return "fail" if "fail" in severities else "warn" if severities else "ok"


@dataclass
class Window:
    """The records one model served in the window, and what monitoring knows of that model."""

    version: str
    log: pd.DataFrame  # request log rows
    model: Any  # mlsys.model.Model (the registry's bundle)
    profile: dict[str, Any]
    card: dict[str, Any]
    built: pd.DataFrame | None = None  # the built dataset by entity: the static path's features

    def features(self) -> pd.DataFrame:
        """The features each record was answered with: logged on the dynamic path; for a
        static (lookup store) answer, the batch path's on the entity's built row, which is
        what the store's prediction was computed from."""
        names = self.model.pipeline.names
        cols = [FEATURE + n for n in names if FEATURE + n in self.log]
        dynamic = self.log[self.log["path"] == "dynamic"][cols].rename(columns=lambda c: c.removeprefix(FEATURE))
        static = self.log[self.log["path"] == "static"]
        if not len(static) or self.built is None:
            return dynamic
        rows = static[["entity"]].merge(self.built, on="entity", how="inner")
        batch = pd.DataFrame(self.model.pipeline.transform_frame(rows), columns=names)
        return pd.concat([dynamic, batch], ignore_index=True)

    def answers(self) -> np.ndarray:
        return self.log[[ANSWER + c for c in self.model.task.columns]].to_numpy("float64")


def invariants(w: Window, validate: Callable[[pd.DataFrame], dict], bounds: Any) -> Result:
    """The serving contract (Pandera, in batch, looked-up columns included) on the inputs."""
    inputs = w.log[[c for c in w.log if c.startswith(INPUT)]].rename(columns=lambda c: c.removeprefix(INPUT))
    report = validate(inputs)
    out = Result("invariants", {"rows": report["rows_in"], "rows_failing": report["rows_quarantined"]})
    for f in report["frame_failures"]:
        subject = f"{f['column']}: {f['check']}"
        out.findings.append(
            Finding("invariants", subject, "frame", 1.0, 0.0, "fail", f"{subject} ({f['failure_case']})")
        )
    for f in report["row_failures"]:
        share = f["rows"] / max(report["rows_in"], 1)
        subject = f"{f['column']}: {f['check']}"
        out.figures[subject] = share
        examples = ", ".join(repr(e["value"]) for e in f["examples"][:3])
        out.judge(subject, "share", share, bounds, f"share of records failing {subject} (e.g. {examples})")
    return out


def skew(w: Window, bounds: Any) -> Result:
    """Training-serving skew: the logged features of records whose entity is in the built
    dataset against the features the batch path computes from that row; and schema skew
    (features the model reads that the log lacks, or the other way round)."""
    out = Result("skew")
    names = w.model.pipeline.names
    rows = w.log[w.log["path"] == "dynamic"]
    logged = [c.removeprefix(FEATURE) for c in w.log if c.startswith(FEATURE)]  # a feature all NaN is logged
    missing = sorted(set(names) - set(logged))
    extra = sorted(n for n in set(logged) - set(names) if rows[FEATURE + n].notna().any())  # not another model's
    if len(rows) and (missing or extra):
        what = f"logged features differ from the model's: missing {missing}, extra {extra}"
        out.findings.append(Finding("skew", "schema", "columns", float(len(missing) + len(extra)), 0.0, "fail", what))
    built = w.built
    if built is None or not len(rows):
        out.skipped = (
            "no built dataset to compare with" if built is None else "no dynamic-path records (no features logged)"
        )
        return out
    joined = rows[["entity", *(FEATURE + n for n in names if n in logged)]].merge(built, on="entity", how="inner")
    out.figures["compared"] = len(joined)
    if not len(joined):
        out.skipped = "no logged entity is in the built dataset"
        return out
    batch = w.model.pipeline.transform_frame(joined)
    for j, name in enumerate(names):
        if name not in logged:
            continue
        served, expected = joined[FEATURE + name].to_numpy("float64"), batch[:, j]
        same = np.isclose(served, expected, rtol=0, atol=1e-9) | (np.isnan(served) & np.isnan(expected))
        share = float((~same).mean())
        out.figures[f"{name}: differ"] = share
        what = f"{name}: share of records whose served feature differs from the batch path's"
        out.judge(name, "share", share, bounds, what)
    return out


def _thresholds(cfg: DictConfig, name: str, measure: str) -> Any:
    own = cfg.features.get(name) or {}
    return own.get(measure) or cfg[measure]


def drift_check(w: Window, cfg: DictConfig, previous: pd.DataFrame) -> Result:
    """Per feature PSI, Jensen-Shannon distance, L-infinity (categorical) and missing share
    against the model's train-window profile; the importance-weighted share of drifted
    features; prediction drift of the answers against the validation window's.

    A feature expected to drift (`expected_drift`: seasonal weather) is not judged against
    the train window but against the window before this one (`previous`: the same model's
    logged features, binned as the profile is): a season moves slowly, a unit change (°F to
    °C) or a broken feed moves overnight."""
    out = Result("drift")
    features = w.features()
    names = [n for n in w.model.pipeline.names if n in features and n in w.profile]
    if len(features):
        gain = dict(zip(w.model.pipeline.names, w.model.booster.feature_importance("gain"), strict=True))
        drifted = 0.0
        for name in names:
            spec = w.profile[name]
            values = features[name].to_numpy("float64")
            d = drift.distances(spec, values)
            measures = ("psi", "js", "missing_change") + (("linf",) if spec["kind"] == "categorical" else ())
            out.figures[name] = {m: d[m] for m in measures}
            expected = any(fnmatch.fnmatch(name, p) for p in cfg.expected_drift)
            for m in measures:
                if expected and m != "missing_change":
                    continue  # expected to move from the train window (vanishing still alerts)
                out.judge(name, m, d[m], _thresholds(cfg, name, m), f"{name}: {m} against the train window")
            if expected and name in previous and previous[name].notna().any():
                before = {**spec, "shares": drift.shares(spec, previous[name].to_numpy("float64")).tolist()}
                moved = drift.distances(before, values)["psi"]
                out.figures[name]["psi_vs_previous_window"] = moved
                what = f"{name}: psi against the previous window (expected to drift, not overnight)"
                out.judge(name, "psi_vs_previous_window", moved, _thresholds(cfg, name, "psi"), what)
            warn = _thresholds(cfg, name, "psi").warn
            drifted += gain[name] if not expected and warn is not None and d["psi"] > warn else 0.0
        share = drifted / max(sum(gain.values()), 1e-12)
        out.figures["importance_share_drifted"] = share
        out.judge("features", "importance_share", share, cfg.share, "importance-weighted share of drifted features")
    answers = w.answers()
    for j, col in enumerate(w.model.task.columns):
        spec = w.profile.get(ANSWER + col)
        if spec is None:
            continue
        value = drift.distances(spec, answers[:, j])["psi"]
        out.figures[f"prediction:{col}"] = {"psi": value}
        out.judge(f"prediction:{col}", "psi", value, cfg.prediction, f"answers ({col}) against the validation window")
    return out


def _days(delta: pd.Timedelta) -> float:
    return delta.total_seconds() / 86400


def staleness(w: Window, online_built_at: dict[str, str], store_made_at: str | None, cfg: DictConfig) -> Result:
    """Model age at prediction time (prediction time - newest training event); the online
    table's and the batch store's age when the records were received."""
    out = Result("staleness")
    newest = w.card.get("timeline", {}).get("newest_training_event")
    if newest:
        age = _days(w.log["prediction_time"].max() - pd.Timestamp(newest))
        out.figures["model_age_days"] = age
        out.judge(
            "model",
            "age_days",
            age,
            cfg.model_age_days,
            f"model {w.version} age at prediction time (days)",
        )
    received = w.log["received_at"].max()
    versions = w.log["online_version"].dropna().unique()
    built = [pd.Timestamp(online_built_at[v]) for v in versions if v in online_built_at]
    if built:
        age = _days(received - min(built))
        out.figures["online_age_days"] = age
        out.judge("online table", "age_days", age, cfg.online_age_days, "online table age when served (days)")
    if store_made_at and (w.log["path"] == "static").any():
        age = _days(received - pd.Timestamp(store_made_at))
        out.figures["store_age_days"] = age
        out.judge(
            "lookup store",
            "age_days",
            age,
            cfg.store_age_days,
            "batch predictions' age when served (days)",
        )
    return out


def stability(w: Window, cfg: DictConfig) -> Result:
    """Served answers: NaN or infinite, all the same, outside the validation answers' range."""
    out = Result("stability")
    answers = w.answers()
    bad = ~np.isfinite(answers).all(axis=1)
    out.figures["nan_share"] = float(bad.mean())
    out.judge("answers", "nan_share", float(bad.mean()), cfg.nan, "share of answers NaN or infinite")
    good = answers[~bad]
    if cfg.constant and len(good) > 1 and np.all(good == good[0]):
        what = f"every one of {len(good)} answers is the same ({good[0].tolist()})"
        out.findings.append(Finding("stability", "answers", "constant", 1.0, 0.0, "fail", what, w.version))
    outside = np.zeros(len(good), dtype=bool)
    for j, col in enumerate(w.model.task.columns):
        spec = w.profile.get(ANSWER + col)
        if spec is None or spec.get("min") is None:
            continue
        lo, hi = widened_range(spec["min"], spec["max"], w.model.task, cfg.range_margin)
        outside |= (good[:, j] < lo) | (good[:, j] > hi)
    share = float(outside.mean()) if len(good) else 0.0
    out.figures["out_of_range_share"] = share
    out.judge("answers", "out_of_range", share, cfg.out_of_range, "share of answers outside the validation range")
    return out


def performance(w: Window, previous: pd.DataFrame, bounds: Any) -> Result:
    """Latency of the window (p50, p99), and its p99 against the window before's."""
    lat = w.log["latency_ms"].to_numpy("float64")
    out = Result("performance", {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))})
    out.figures["records"] = len(lat)
    if len(previous):
        ratio = out.figures["p99_ms"] / max(float(np.percentile(previous["latency_ms"], 99)), 1e-9)
        out.figures["p99_ratio_to_previous_window"] = ratio
        out.judge("latency", "p99_ratio_to_previous_window", ratio, bounds, "p99 latency against the window before")
    return out


def quality(w: Window, labelled: pd.DataFrame | None, cfg: DictConfig) -> Result:
    """The task's metrics on what was served, once labels land (the built dataset's label,
    joined by entity), per day and in all; the headline's drop from the release's test figure."""
    out = Result("quality")
    if labelled is None:
        out.skipped = "no labels to join yet"
        return out
    task = w.model.task
    joined = w.log.merge(labelled[["entity", LABEL]], on="entity", how="inner").dropna(subset=[LABEL])
    finite = np.isfinite(joined[[ANSWER + c for c in task.columns]].to_numpy("float64")).all(axis=1)
    joined = joined[finite]  # a NaN answer is stability's finding; quality judges the answers there are
    out.figures.update(labelled=len(joined), labelled_without_answer=int((~finite).sum()))
    if len(joined) < cfg.min_labelled:
        out.skipped = f"{len(joined)} labelled records < monitoring.quality.min_labelled={cfg.min_labelled}"
        return out
    answers = joined[[ANSWER + c for c in task.columns]].to_numpy("float64")
    answers = answers[:, 0] if answers.shape[1] == 1 else answers
    truth = task.truth(joined[LABEL])
    scores = task.scores(truth, answers, cfg.calibration_bins)
    headline = task.primary
    served = float(scores[headline])
    release = (w.card.get("metrics") or {}).get(headline)
    out.figures.update({f"served_{headline}": served, f"release_test_{headline}": release})
    days = joined["prediction_time"].dt.floor("D")
    out.figures["by_day"] = [
        {"day": str(day.date()), "rows": int(m.sum()), headline: float(task.scores(truth[m], answers[m])[headline])}
        for day in sorted(days.unique())
        if (m := (days == day).to_numpy()).sum() >= 20 and len(np.unique(truth[m])) > 1
    ]
    if release is not None:
        drop = (float(release) - served) * task.direction(headline)
        out.figures["drop"] = drop
        what = f"{headline} served {served:.4f} vs release test {float(release):.4f}"
        out.judge(headline, "drop", drop, cfg.drop, what)
    return out


def upstream(card: dict[str, Any], manifest: dict[str, Any] | None, bounds: Any) -> Result:
    """Sources whose fingerprint, row count or columns changed since the served model's snapshot."""
    out = Result("upstream")
    if manifest is None:
        out.skipped = "no snapshot manifest"
        return out
    trained = card.get("data") or {}
    changed = []
    for name, now in manifest.get("sources", {}).items():
        then = trained.get(name)
        if then is None or then["fingerprint"] != now["fingerprint"]:
            rows = f"{then['rows']:,} -> {now['rows']:,} rows" if then else "new source"
            changed.append(f"{name} ({rows})")
    out.figures["changed"] = changed
    out.judge(
        ", ".join(changed) or "sources",
        "changed",
        float(len(changed)),
        bounds,
        "sources changed since the model's snapshot",
    )
    return out
