"""The checks of `mlsys monitor`, each over the window's logged records of one served model.

Each returns its figures (what the report shows) and findings (figures past a bound). A
finding's severity is `fail` past `fail`, else `warn` past `warn`; higher is worse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys import drift
from mlsys.data.columns import ANSWER, FEATURE, INPUT, LABEL
from mlsys.features import CALENDAR
from mlsys.serving.batch import widened_range
from mlsys.tasks import calibration_table, top_label_table

WHEN = "prediction_time"
DRIFT_BY_DAY = 6  # the most drifted features drawn day by day in the report


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
    refused: pd.DataFrame | None = None  # refused and failed requests received while these were served

    def features(self) -> pd.DataFrame:
        """The features each record was answered with (and its prediction time): logged on
        the dynamic path; for a static (lookup store) answer, the batch path's on the entity's
        built row, which is what the store's prediction was computed from."""
        names = self.model.pipeline.names
        cols = [FEATURE + n for n in names if FEATURE + n in self.log]
        dynamic = self.log[self.log["path"] == "dynamic"][[*cols, WHEN]]
        dynamic = dynamic.rename(columns=lambda c: c.removeprefix(FEATURE)).reset_index(drop=True)
        static = self.log[self.log["path"] == "static"]
        if not len(static) or self.built is None:
            return dynamic
        rows = static[["entity", WHEN]].merge(self.built.drop(columns=[WHEN], errors="ignore"), on="entity")
        batch = pd.DataFrame(self.model.pipeline.transform_frame(rows), columns=names).assign(**{WHEN: rows[WHEN]})
        return pd.concat([dynamic, batch], ignore_index=True)

    @cached_property
    def recomputed(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The dynamic-path records whose entity is in the built dataset (their logged
        features, and the built row), and the features the batch path computes from that row."""
        rows = self.log[self.log["path"] == "dynamic"]
        if self.built is None or not len(rows):
            return rows.iloc[:0], np.empty((0, len(self.model.pipeline.names)))
        logged = [c for c in rows if c.startswith(FEATURE)]
        joined = rows[["entity", *logged]].merge(self.built, on="entity", how="inner")
        names = self.model.pipeline.names
        return joined, self.model.pipeline.transform_frame(joined) if len(joined) else np.empty((0, len(names)))

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
    joined, batch = w.recomputed
    out.figures["compared"] = len(joined)
    if not len(joined):
        out.skipped = "no logged entity is in the built dataset"
        return out
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


def drift_check(w: Window, cfg: DictConfig) -> Result:
    """Per feature PSI, Jensen-Shannon distance (both beyond the sampling noise of the
    window's size), L-infinity (categorical) and missing share against the model's
    train-window profile; the importance-weighted share of drifted
    features; prediction drift of the answers against the validation window's.

    A feature expected to drift (`expected_drift`: seasonal weather), or a calendar field
    (a day's window holds one day of the week), is not judged against the train window: its
    served values are judged against the batch path's on the same records' built rows
    (binned as the profile is), which moved with the same season. A
    week-over-week comparison cannot tell a season from a unit change on this data: the
    weather's PSI between consecutive weeks of Oct-Dec 2013 reaches 10.7, a °C feed 4.6."""
    out = Result("drift")
    features = w.features()
    names = [n for n in w.model.pipeline.names if n in features and n in w.profile]
    if len(features):
        gain = dict(zip(w.model.pipeline.names, w.model.booster.feature_importance("gain"), strict=True))
        joined, batch = w.recomputed
        calendar = {s["name"] for s in w.model.pipeline.specs if s["transform"] in CALENDAR}  # set by the window
        drifted = 0.0
        for name in names:
            spec = w.profile[name]
            values = features[name].to_numpy("float64")
            d = drift.beyond_noise(spec, values)
            measures = ("psi", "js", "missing_change") + (("linf",) if spec["kind"] == "categorical" else ())
            out.figures[name] = {m: d[m] for m in measures}
            expected = drift.expected(name, cfg.expected_drift) or name in calendar
            for m in measures:
                if expected and m != "missing_change":
                    continue  # expected to move from the train window (vanishing still alerts)
                out.judge(name, m, d[m], _thresholds(cfg, name, m), f"{name}: {m} against the train window")
            if expected and len(joined) and FEATURE + name in joined:
                j = w.model.pipeline.names.index(name)
                same_days = {**spec, "shares": drift.shares(spec, batch[:, j]).tolist()}
                moved = drift.beyond_noise(same_days, joined[FEATURE + name].to_numpy("float64"))["psi"]
                out.figures[name]["psi_vs_built"] = moved
                what = f"{name}: psi against the batch path on the same records (expected to drift, with the season)"
                out.judge(name, "psi_vs_built", moved, _thresholds(cfg, name, "psi"), what)
            warn = _thresholds(cfg, name, "psi").warn
            drifted += gain[name] if not expected and warn is not None and d["psi"] > warn else 0.0
        share = drifted / max(sum(gain.values()), 1e-12)
        out.figures["importance_share_drifted"] = share
        out.judge("features", "importance_share", share, cfg.share, "importance-weighted share of drifted features")
        top = sorted(names, key=lambda n: out.figures[n]["psi"])[-DRIFT_BY_DAY:]
        days = features[WHEN].dt.floor("D")
        out.figures["psi_by_day"] = [
            {
                "day": str(day.date()),
                **{n: drift.beyond_noise(w.profile[n], group[n].to_numpy("float64"))["psi"] for n in top},
            }
            for day, group in features.groupby(days, sort=True)
        ]
    answers = w.answers()
    for j, col in enumerate(w.model.task.columns):
        spec = w.profile.get(ANSWER + col)
        if spec is None:
            continue
        value = drift.beyond_noise(spec, answers[:, j])["psi"]
        out.figures[f"prediction:{col}"] = {"psi": value}
        out.figures.setdefault("answer_shares", {})[col] = {
            "edges": spec.get("edges", spec.get("codes")),
            "reference": spec["shares"],
            "served": drift.shares(spec, answers[:, j]).tolist(),
        }
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
        age = _days(w.log[WHEN].max() - pd.Timestamp(newest))
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


def requests(log: pd.DataFrame) -> pd.DataFrame:
    """One row per answered request (its records share `received_at`): latency, records."""
    return log.groupby("received_at", sort=False).agg(latency_ms=("latency_ms", "first"), records=("path", "size"))


def _refused(refused: pd.DataFrame | None, server: bool) -> pd.DataFrame:
    """The requests the service failed (5xx, `server`), or refused as bad input (4xx)."""
    if refused is None or not len(refused):
        return pd.DataFrame({"status": [], "error": []})
    status = refused["status"]
    return refused[(status >= 500) if server else ((status >= 400) & (status < 500))]


def performance(w: Window, before: Window, release: dict[str, Any] | None, train: tuple, cfg: DictConfig) -> Result:
    """Per request: p50/p99 latency (against the window before's and, for one-record requests,
    the infra gate's at release), error (5xx) and refusal (4xx) rates; the model's training
    time against the registry's version before (`train`: this one's seconds, the one before's)."""
    now, then = requests(w.log), requests(before.log) if len(before.log) else None
    lat = now["latency_ms"].to_numpy("float64")
    out = Result("performance", {"requests": len(now), "p50_ms": float(np.median(lat))})
    out.figures["p99_ms"] = float(np.percentile(lat, 99))
    if then is not None:
        ratio = out.figures["p99_ms"] / max(float(np.percentile(then["latency_ms"], 99)), 1e-9)
        out.figures["p99_ratio_to_previous_window"] = ratio
        out.judge("latency", "p99_vs_previous", ratio, cfg.p99_vs_previous, "p99 latency against the window before")
    single = now.loc[now["records"] == 1, "latency_ms"].to_numpy("float64")
    if release and len(single):
        for q, key in ((50, "p50"), (99, "p99")):
            at_release = release[f"{key}_ms"]
            ratio = float(np.percentile(single, q)) / max(at_release, 1e-9)
            out.figures[f"{key}_ratio_to_release"] = ratio
            what = f"{key} latency of one-record requests against the infra gate's at release ({at_release:.2f} ms)"
            out.judge("latency", f"{key}_vs_release", ratio, cfg[f"{key}_vs_release"], what)
    for name, server in (("error_rate", True), ("rejected_rate", False)):
        hit, every = _refused(w.refused, server), len(now) + (len(w.refused) if w.refused is not None else 0)
        rate = len(hit) / max(every, 1)
        out.figures[name] = rate
        kinds = ", ".join(f"{k}: {n}" for k, n in hit["error"].value_counts().items())
        what = f"share of requests {'failed by the service (5xx)' if server else 'refused (4xx)'} ({kinds})"
        out.judge("requests", name, rate, cfg[name], what)
    seconds, previous = train
    if seconds is not None and previous:
        ratio = seconds / previous
        out.figures.update(train_seconds=seconds, train_seconds_previous_version=previous)
        out.judge("training", "train_seconds_vs_previous", ratio, cfg.train_seconds_vs_previous,
                  f"training time {seconds:.1f}s against the version before's {previous:.1f}s")  # fmt: skip
    return out


def volume(window: pd.DataFrame, previous: pd.DataFrame, bounds: Any) -> Result:
    """Requests answered in the window against the window before (traffic that stops is a
    broken caller or feed); an empty window is a finding, not a crash."""
    now, then = len(requests(window)) if len(window) else 0, len(requests(previous)) if len(previous) else 0
    out = Result("volume", {"requests": now, "records": len(window), "requests_previous_window": then})
    if not now and not then:
        what = "no records in the window, nor in the window before: is anything served and logged?"
        out.findings.append(Finding("volume", "requests", "records", 0.0, 0.0, "warn", what))
    elif then:
        drop = 1 - now / then
        out.figures["drop"] = drop
        out.judge("requests", "drop", drop, bounds, f"requests {now:,} against the window before's {then:,}")
    return out


def quality(w: Window, labelled: pd.DataFrame | None, cfg: DictConfig, release: DictConfig, slices: list) -> Result:
    """The task's metrics on what was served, once labels land (the built dataset's label,
    joined by entity), in all, per day and per slice (`evaluation.slices`, judged by the
    release's slice gates); the headline's drop and calibration's rise from the release's
    test figures."""
    from mlsys.model.evaluate import slice_metrics
    from mlsys.release.gates import slice_gates

    out = Result("quality")
    if labelled is None:
        out.skipped = "no labels to join yet"
        return out
    task = w.model.task
    columns = [c for c in slices if c in labelled and c != "entity"]
    joined = w.log.merge(labelled[["entity", LABEL, *columns]], on="entity", how="inner").dropna(subset=[LABEL])
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
    card = w.card.get("metrics") or {}
    for metric in (task.primary, "ece"):
        if metric not in scores:
            continue
        served, then = float(scores[metric]), card.get(metric)
        out.figures.update({f"served_{metric}": served, f"release_test_{metric}": then})
        if then is None:
            continue
        change = (float(then) - served) * task.direction(metric)
        name, bounds = ("drop", cfg.drop) if metric == task.primary else ("ece_rise", cfg.ece_rise)
        out.figures[name] = change
        out.judge(metric, name, change, bounds, f"{metric} served {served:.4f} vs release test {float(then):.4f}")
        gate = release.absolute.get(metric) if "absolute" in release else None
        if gate is not None:
            out.figures[f"release_gate_{metric}"] = gate.min if gate.get("min") is not None else gate.get("max")
    if task.kind != "regression":  # served answers by predicted probability: mean predicted vs observed
        table = (calibration_table if task.kind == "binary" else top_label_table)(truth, answers, cfg.calibration_bins)
        out.figures["calibration"] = table.to_dict("records")
    headline = task.primary
    days = joined[WHEN].dt.floor("D")
    out.figures["by_day"] = [
        {"day": str(day.date()), "rows": int(m.sum()), headline: float(task.scores(truth[m], answers[m])[headline])}
        for day in sorted(days.unique())
        if (m := (days == day).to_numpy()).sum() >= 20 and len(np.unique(truth[m])) > 1
    ]
    if columns:
        spec = OmegaConf.merge(release, {"slices": {"min_rows": cfg.slice_min_rows}})
        gates = slice_gates(slice_metrics(task, joined, truth, answers, columns, cfg.slice_min_rows), spec)
        out.figures["slices"] = [{k: g[k] for k in ("metric", "value", "threshold", "passed")} for g in gates]
        failing = [g for g in gates if g["passed"] is False]
        judged = sum(g["passed"] is not None for g in gates)
        out.figures["slices_judged"] = judged
        what = f"slice gates failing on served records: {[g['reason'] for g in failing][:5]}"
        out.judge("slices", "failing", float(len(failing)), cfg.slices_failing, what)
    return out


def upstream(card: dict[str, Any], manifest: dict[str, Any] | None, cfg: DictConfig) -> Result:
    """The sources now (the snapshot manifest) against the served model's snapshot: content
    changed, rows lost (a source that shrinks), columns gone or new."""
    out = Result("upstream")
    if manifest is None:
        out.skipped = "no snapshot manifest"
        return out
    trained = card.get("data") or {}
    changed = []
    for name, now in manifest.get("sources", {}).items():
        then = trained.get(name)
        if then is None or then["fingerprint"] != now["fingerprint"]:
            changed.append(f"{name} ({then['rows']:,} -> {now['rows']:,} rows)" if then else f"{name} (new)")
        if then is None:
            continue
        lost = max(0.0, 1 - now["rows"] / max(then["rows"], 1))
        out.figures[f"{name}: rows_lost"] = lost
        out.judge(
            name,
            "rows_lost",
            lost,
            cfg.rows_lost,
            f"{name}: share of its rows gone ({then['rows']:,} -> {now['rows']:,})",
        )
        if "columns" in then:  # cards from before columns were recorded: not judged
            gone, new = (
                sorted(set(then["columns"]) - set(now["columns"])),
                sorted(set(now["columns"]) - set(then["columns"])),
            )
            out.figures[f"{name}: columns_changed"] = len(gone) + len(new)
            what = f"{name}: columns changed since the model's snapshot: gone {gone}, new {new}"
            out.judge(name, "columns_changed", float(len(gone) + len(new)), cfg.columns_changed, what)
    out.figures["changed"] = changed
    out.judge(", ".join(changed) or "sources", "changed", float(len(changed)), cfg.changed,
              "sources changed since the model's snapshot")  # fmt: skip
    return out


def rollout(
    candidate: Window, live: Window, labelled: pd.DataFrame | None, cfg: DictConfig, kind: str = "canary"
) -> Result:
    """A canary (or a shadow) against the live model on the same traffic: the candidate's
    records, scored by the live model too (the batch path on each entity's built row).
    Answers apart, quality once labels land (both on the same records), a canary's latency
    against the live model's own requests; and a recommendation: promote, roll back, or wait."""
    task = candidate.model.task
    figures = {"kind": kind, "candidate": candidate.version, "live": live.version, "records": len(candidate.log)}
    out = Result("rollout" if kind == "canary" else "shadow", figures)
    if len(candidate.log) < cfg.min_records or candidate.built is None:
        out.figures["recommendation"] = "wait"
        out.skipped = f"{len(candidate.log)} canary records < monitoring.rollout.min_records={cfg.min_records}"
        return out
    rows = candidate.log.merge(candidate.built.drop(columns=[WHEN], errors="ignore"), on="entity", how="inner")
    served = rows[[ANSWER + c for c in task.columns]].to_numpy("float64")
    other = task.matrix(live.model.predict_frame(rows, num_threads=1))
    diff = float(np.nanmean(np.abs(served - other).max(axis=1))) if len(rows) else float("nan")
    out.figures.update(compared=len(rows), score_diff=diff)
    out.judge("answers", "score_diff", diff, cfg.score_diff, "mean |candidate - live| answer on the canary's records")
    p99 = {w.version: float(np.percentile(requests(w.log)["latency_ms"], 99)) for w in (candidate, live) if len(w.log)}
    if len(p99) == 2 and kind == "canary":  # a shadow's time is its own scoring, not a request's
        ratio = p99[candidate.version] / max(p99[live.version], 1e-9)
        out.figures.update(p99_ms_candidate=p99[candidate.version], p99_ms_live=p99[live.version], p99_ratio=ratio)
        out.judge("latency", "p99_ratio", ratio, cfg.p99_ratio, "canary p99 latency over the live model's")
    judged = labelled is not None
    if judged:
        truth = rows[["entity"]].merge(labelled[["entity", LABEL]], on="entity", how="left")[LABEL].to_numpy()
        known = ~pd.isna(truth)
        out.figures["labelled"] = int(known.sum())
        judged = known.sum() >= cfg.min_records and len(np.unique(truth[known])) > 1
    if judged:
        y = task.truth(truth[known])
        pick = (lambda p: p[:, 0]) if task.kind != "multiclass" else (lambda p: p)
        mine, theirs = (float(task.scores(y, pick(p[known]))[task.primary]) for p in (served, other))
        drop = (theirs - mine) * task.direction(task.primary)
        out.figures.update({f"candidate_{task.primary}": mine, f"live_{task.primary}": theirs, "drop": drop})
        what = f"{task.primary} of the candidate {mine:.4f} vs the live model {theirs:.4f} on the same records"
        out.judge(task.primary, "drop", drop, cfg.drop, what)
    worse = [f for f in out.findings if f.severity == "fail"]
    out.figures["recommendation"] = "roll back" if worse else "promote" if judged and not out.findings else "wait"
    canary = kind == "canary"
    advice = {
        "roll back": f"`mlsys rollback` drops candidate {candidate.version}" if canary else "do not release it",
        "promote": f"`mlsys release --promote` makes {candidate.version} live" if canary else "it may be released",
        "wait": "not enough labelled canary records yet" if not judged else "warnings to review first",
    }
    out.figures["advice"] = advice[out.figures["recommendation"]]
    for f in worse:
        f.message += f"; recommended: {advice['roll back']}"
    return out


def feedback(held: pd.DataFrame, served: pd.DataFrame, labelled: pd.DataFrame | None, task: Any) -> Result:
    """Declared feedback loops (`data.feedback_loops`): the outcomes of the entities held out
    (answered with no score) against the served ones', once labels land: the label rate
    (binary), mean (regression) or class shares (multiclass), and their difference."""
    out = Result("feedback", {"held_out": len(held), "served": len(served)})
    if labelled is None or not len(held):
        out.skipped = "no held-out records" if labelled is not None else "no labels to join yet"
        return out
    outcome = {}
    for name, rows in (("held_out", held), ("served", served)):
        y = rows[["entity"]].merge(labelled[["entity", LABEL]], on="entity")[LABEL].dropna()
        out.figures[f"{name}_labelled"] = len(y)
        if task.kind == "multiclass":
            shares = y.value_counts(normalize=True)
            outcome[name] = np.array([float(shares.get(k, 0.0)) for k in range(len(task.classes))])
        else:
            outcome[name] = np.array([float(y.mean())]) if len(y) else np.array([np.nan])
    measure = "class shares" if task.kind == "multiclass" else "label rate" if task.kind == "binary" else "mean"
    out.figures.update(measure=measure, **{f"{k}_outcome": v.tolist() for k, v in outcome.items()})
    out.figures["difference"] = float(np.max(np.abs(outcome["served"] - outcome["held_out"])))
    return out
