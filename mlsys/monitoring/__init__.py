"""`mlsys monitor`: what happens after release, for a scheduler (cron, a Kubernetes CronJob)
or as a DVC stage whose window comes from params.

Over a window of the request log's prediction time (`monitoring.since/until`, local times
in `split.tz`; default the last day logged), each model that served records there is compared with its own registry
version (its profile, its card): data invariants on served inputs, training-serving skew,
drift, staleness, numerical stability, latency, quality once labels land, upstream changes
(`mlsys.monitoring.checks`). Findings past a `warn` bound are printed and recorded; past
`fail` the command exits 10 (`ExitCode.ALERT`). Every finding is appended to `paths.alerts`
(JSON lines) and POSTed to `monitoring.webhook.url` when one is set (a failed delivery is
recorded, never changes the exit code). Results: `paths.monitor_metrics` (DVC metrics) and
`paths.monitor_report` (HTML). Under `engine: dask` the log's files are read on the cluster and
only the window's records come back (`mlsys.monitoring.sliced`).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mlsys.cluster import engine_client
from mlsys.data.columns import LABEL
from mlsys.data.snapshot import MANIFEST
from mlsys.dynamic import PROFILE
from mlsys.errors import ConfigError, ExitCode, MlsysError
from mlsys.io import append_jsonl, read_json, read_jsonl, write_json
from mlsys.monitoring import checks as c

STATUS_ORDER = ("ok", "skipped", "warn", "fail")


def window_bounds(cfg: DictConfig, times: pd.Series, tz: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """[since, until): as configured (local times in `tz`, as every window of the project),
    else the last day up to the newest prediction time (None and None: nothing logged)."""
    newest = times.max() if len(times) else None
    until = pd.Timestamp(cfg.until, tz=tz) if cfg.until else None
    if until is None and newest is not None and pd.notna(newest):
        until = newest + pd.Timedelta(microseconds=1)
    since = pd.Timestamp(cfg.since, tz=tz) if cfg.since else until - pd.Timedelta(days=1) if until else None
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"monitoring.since ({since}) is not before monitoring.until ({until})")
    return since, until


def _split(
    log: pd.DataFrame, refused: pd.DataFrame, since: Any, until: Any
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The answered records in [since, until) and in the window as long before it; and the
    refused requests (no prediction time) received while the window's records were."""
    if not len(log) or since is None:
        return log.iloc[:0], log.iloc[:0], refused.iloc[:0]
    times = log["prediction_time"]
    window = log[(times >= since) & (times < until)]
    previous = log[(times >= since - (until - since)) & (times < since)]
    span, received = window["received_at"], refused["received_at"]
    during = refused[(received >= span.min()) & (received <= span.max())] if len(window) else refused.iloc[:0]
    return window, previous, during


def _release_figures(registry: Any, version: str) -> tuple[dict[str, Any] | None, float | None]:
    """The infra gate's latency at this version's release, and the training time of the
    version the registry holds before it."""
    from mlsys.release.registry import BLESSING

    blessing = registry.path(version) / BLESSING
    gates = read_json(blessing, "the blessing").get("gates", []) if blessing.exists() else []
    latency = next((g["latency"] for g in gates if g.get("gate") == "infra" and "latency" in g), None)
    versions = registry.versions()
    before = versions[versions.index(version) - 1] if version in versions and versions.index(version) else None
    previous = registry.card(before).get("training", {}).get("train_seconds") if before else None
    return latency, previous


def _built(cfg: DictConfig, root: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The built dataset keyed by entity (skew's batch rows), and its labelled rows (quality)."""
    from mlsys.serving.store import entities

    frames = []
    for path in (root / cfg.paths.labelled, root / cfg.paths.unlabelled):
        if path.exists():
            frames.append(pd.read_parquet(path))
    if not frames:
        return None, None
    built = pd.concat(frames, ignore_index=True)
    built.insert(0, "entity", entities(built, list(cfg.data.key)))
    built = built.drop_duplicates("entity", keep="last")
    return built, built[built[LABEL].notna()]


def _tables(cfg: DictConfig, root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The online table's version -> build time, and the lookup store's model version -> made."""
    import sqlite3

    from mlsys.serving.store import online_reader

    online, store = {}, {}
    try:
        _, _, _, stamp = online_reader(root / cfg.paths.online)
        if "version" in stamp:
            online[stamp["version"]] = stamp["built_at"]
    except sqlite3.Error:
        pass
    path = root / cfg.paths.store
    if path.exists():
        with sqlite3.connect(path) as con:
            try:
                rows = con.execute("SELECT name, value FROM meta WHERE name LIKE 'batch:%'").fetchall()
            except sqlite3.Error:
                rows = []
        store = {name.removeprefix("batch:"): json.loads(value).get("created_at") for name, value in rows}
    return online, store


def deliver(url: str, finding: dict[str, Any], timeout: float, retries: int) -> str | None:
    """POST one finding as JSON; None when delivered, else why not (after `retries` retries)."""
    body = json.dumps(finding, default=str).encode()
    error = None
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, body, {"content-type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return None
                error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < retries:
            time.sleep(0.2 * 2**attempt)
    return error


def run(cfg: DictConfig, root: Path) -> int:
    """The checks over the window; writes metrics, alerts, the report; returns the exit code."""
    from mlsys.model import load_model
    from mlsys.monitoring.sliced import read_window
    from mlsys.release.registry import Registry, locate
    from mlsys.serving.checks import validate_inputs
    from mlsys.serving.log import read_log

    m = cfg.monitoring

    def bounds(times: pd.Series) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        return window_bounds(m, times, cfg.split.tz)

    with engine_client(cfg.engine) as dask:
        if dask is None:
            read = read_log(root / cfg.paths.request_log)
            log = read.frame
            since, until = bounds(
                log["prediction_time"].dropna() if len(log) else pd.Series(dtype="datetime64[us, UTC]")
            )
        else:  # the files read on the workers, only the records judged below brought back
            read, since, until = read_window(dask, root / cfg.paths.request_log, bounds)
    window, previous, refused = _split(read.frame, read.refused, since, until)
    held = window[window["path"] == "holdout"] if len(window) else window  # data.feedback_loops: no answer
    window, previous = (w[w["path"] != "holdout"] if len(w) else w for w in (window, previous))
    registry = Registry(locate(root, cfg.paths.registry)[0], cfg.release.model_name)
    built, labelled = _built(cfg, root)
    online, store = _tables(cfg, root)
    manifest_path = root / cfg.paths.raw / MANIFEST
    manifest = read_json(manifest_path, "snapshot manifest") if manifest_path.exists() else None
    results: list[tuple[str, c.Result]] = [("", c.volume(window, previous, m.volume_drop))]
    windows: dict[str, c.Window] = {}

    def validate(inputs: pd.DataFrame) -> dict:
        return validate_inputs(cfg, inputs)[0]

    for version, rows in window.groupby("model_version", sort=True) if len(window) else ():
        version = str(version)
        mine = refused[refused["model_version"].isna() | (refused["model_version"] == version)]
        try:
            path = registry.path(version)
            model = load_model(path, version=version)
            profile = read_json(path / PROFILE, "the profile")
            latency, train_before = _release_figures(registry, version)
        except MlsysError as exc:  # a record served by a model monitoring cannot read: say so, judge the rest
            what = f"{len(rows):,} records were served by {version}, which cannot be read from the registry: {exc}"
            results.append(
                (
                    version,
                    c.Result(
                        "registry",
                        findings=[c.Finding("registry", version, "readable", 1.0, 0.0, "fail", what, version)],
                    ),
                )
            )
            continue
        w = c.Window(version, rows.reset_index(drop=True), model, profile, model.meta, built, mine)
        windows[version] = w
        before = c.Window(version, previous[previous["model_version"] == version], model, profile, w.card, built)
        train = ((w.card.get("training") or {}).get("train_seconds"), train_before)
        todo: dict[str, tuple] = {
            "upstream": (c.upstream, w.card, manifest, m.upstream),
            "staleness": (c.staleness, w, online, store.get(version), m.staleness),
            "performance": (c.performance, w, before, latency, train, m.performance),
        }
        if len(rows) >= m.min_rows:
            todo |= {
                "invariants": (c.invariants, w, validate, m.invariants),
                "skew": (c.skew, w, m.skew),
                "drift": (c.drift_check, w, m.drift),
                "stability": (c.stability, w, m.stability),
                "quality": (c.quality, w, labelled, m.quality, cfg.release, list(cfg.evaluation.slices)),
            }
        done = [_guarded(name, fn, *args) for name, (fn, *args) in todo.items()]
        if len(rows) < m.min_rows:
            why = f"{len(rows)} records < monitoring.min_rows: data checks not judged"
            done.append(c.Result("data", {"records": len(rows)}, skipped=why))
        for result in done:
            for f in result.findings:
                f.model_version = version
        results += [(version, r) for r in done]
    results += _rollout(registry, windows, labelled, m.rollout)
    if len(held) and windows:
        task = next(iter(windows.values())).model.task
        results.append(("", _guarded("feedback", c.feedback, held, window, labelled, task)))
    results += _shadows(registry, read.shadow, windows, since, until, built, labelled, m.rollout)
    findings = [f for _, r in results for f in r.findings]
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    span = {"since": str(since) if since is not None else None, "until": str(until) if until is not None else None}
    failures = _alert(root / cfg.paths.alerts, findings, span, stamp, m.webhook)
    status = max((r.status for _, r in results), key=STATUS_ORDER.index, default="skipped")
    summary = {
        "status": status,
        "window": span,
        "records": len(window),
        "models": sorted({v for v, _ in results} - {""}),
        "log_files": read.files,
        "log_files_cut": read.truncated,
        "findings": {s: sum(f.severity == s for f in findings) for s in ("warn", "fail")},
        "webhook_failures": failures,
        "checks": {
            f"{version}:{r.check}" if version else r.check: {
                "status": r.status,
                **({"skipped": r.skipped} if r.skipped else {}),
                **_flat(r.figures),
            }
            for version, r in results
        },
        "rollout": next((_advice(r) for _, r in results if r.check == "rollout"), None),
        "shadow": next((_advice(r) for _, r in results if r.check == "shadow"), None),
        "monitored_at": stamp,
    }
    write_json(root / cfg.paths.monitor_metrics, summary)
    from mlsys.reports import PAGE, monitor_html

    alerts = root / cfg.paths.alerts
    history, unreadable = read_jsonl(alerts)
    if unreadable:  # a line cut by a crash mid-append: the history plot goes without it
        print(f"monitor: {alerts}: {unreadable} unreadable line(s) skipped (cut by a crash mid-write?)")
    monitor_html(root / cfg.paths.monitor_report / PAGE, summary, results, window, history)
    _print(summary, findings)
    return int(ExitCode.ALERT) if summary["findings"]["fail"] else int(ExitCode.OK)


def _advice(result: c.Result) -> dict[str, Any]:
    return {k: result.figures.get(k) for k in ("candidate", "live", "recommendation", "advice")}


def _rollout(
    registry: Any, windows: dict[str, c.Window], labelled: pd.DataFrame | None, cfg: DictConfig
) -> list[tuple[str, c.Result]]:
    """The canary check when the window holds records of the registry's candidate and of
    the live model."""
    pointer = registry.pointer() or {}
    candidate, live = pointer.get("candidate"), pointer.get("live")
    if candidate not in windows or live not in windows:
        return []
    result = _guarded("rollout", c.rollout, windows[candidate], windows[live], labelled, cfg)
    for f in result.findings:
        f.model_version = candidate
    return [(candidate, result)]


def _shadows(
    registry: Any,
    shadow: pd.DataFrame,
    windows: dict[str, c.Window],
    since: Any,
    until: Any,
    built: pd.DataFrame | None,
    labelled: pd.DataFrame | None,
    cfg: DictConfig,
) -> list[tuple[str, c.Result]]:
    """Each shadow version against the live version it shadowed, on the window's records."""
    from mlsys.model import load_model

    if not len(shadow) or since is None:
        return []
    times = shadow["prediction_time"]
    shadow = shadow[(times >= since) & (times < until)]
    out = []
    for (version, live), rows in shadow.groupby(["model_version", "shadow_of"], sort=True):
        if live not in windows:
            continue
        try:
            model = load_model(registry.path(str(version)), version=str(version))
        except MlsysError as exc:
            what = f"shadow {version} cannot be read from the registry: {exc}"
            finding = c.Finding("shadow", str(version), "readable", 1.0, 0.0, "fail", what, str(version))
            out.append((str(version), c.Result("shadow", findings=[finding])))
            continue
        w = c.Window(str(version), rows.reset_index(drop=True), model, {}, model.meta, built)
        result = _guarded("shadow", c.rollout, w, windows[live], labelled, cfg, "shadow")
        for f in result.findings:
            f.model_version = str(version)
        out.append((str(version), result))
    return out


def _guarded(name: str, check: Callable[..., c.Result], *args: Any) -> c.Result:
    """A check's result; a check that crashes on what it was given is a `fail` finding (a
    monitor that dies on bad data is blind), never a traceback that hides the others."""
    try:
        return check(*args)
    except Exception as exc:  # reported as the check's finding
        what = f"the check could not run: {type(exc).__name__}: {exc}"
        return c.Result(name, findings=[c.Finding(name, "check", "error", 1.0, 0.0, "fail", what)])


def _flat(figures: dict[str, Any]) -> dict[str, Any]:
    """Numbers only (DVC metrics): nested dicts flattened, lists left out."""
    out: dict[str, Any] = {}
    for k, v in figures.items():
        if isinstance(v, dict):
            out.update({f"{k}:{kk}": vv for kk, vv in v.items() if isinstance(vv, int | float)})
        elif isinstance(v, int | float):
            out[k] = v
    return out


def _alert(path: Path, findings: list[c.Finding], span: dict, stamp: str, hook: DictConfig) -> int:
    """Append every finding to the alerts file (with its delivery, when a webhook is set)."""
    failures, records = 0, []
    for f in findings:
        record = {"at": stamp, "window": span, **f.record()}
        if hook.url:
            error = deliver(hook.url, record, hook.timeout_seconds, hook.retries)
            record["delivered"] = error is None
            if error:
                record["delivery_error"] = error
                failures += 1
        records.append(record)
    append_jsonl(path, records)
    return failures


def _print(summary: dict[str, Any], findings: list[c.Finding]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"mlsys monitor {summary['window']['since']} .. {summary['window']['until']}: {summary['status']}"
    )
    for col in ("model:check", "status", "note"):
        table.add_column(col, overflow="fold")
    for name, r in summary["checks"].items():
        table.add_row(name, r["status"], r.get("skipped", ""))
    Console().print(table)
    for f in sorted(findings, key=lambda f: f.severity != "fail"):
        print(f"monitor: {f.severity.upper()} {f.check}: {f.message} [{f.model_version}]")
    for kind in ("rollout", "shadow"):
        if summary[kind]:
            r = summary[kind]
            what = "canary" if kind == "rollout" else "shadow"
            print(f"monitor: {what} {r['candidate']} vs live {r['live']}: {r['recommendation']} ({r['advice']})")
    counts = summary["findings"]
    print(f"monitor: {summary['records']:,} records; {counts['fail']} fail, {counts['warn']} warn")
