"""`mlsys monitor` on traffic the real server answered: `mlsys replay` sends the sample
project's serving window (Oct-Dec 2013) over HTTP; labels land from the snapshot. A clean
replay raises no fail; each injected fault fires the check the README's table names."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsys.data.columns import ANSWER, FEATURE, LABEL
from mlsys.errors import ExitCode
from mlsys.serving.request import request_body
from tests.conftest import project_copy, registry_of, run
from tests.serving.harness import Server, another_version, append_logged, logged

pytestmark = pytest.mark.slow
ALL = ["monitoring.since=2013-10-01", "monitoring.until=2014-01-01"]
WEEK = ["monitoring.since=2013-12-01", "monitoring.until=2013-12-08"]  # previous window: Nov 24-30
LOG = "logs/requests"


@pytest.fixture(scope="module")
def replayed(sample_project, tmp_path_factory) -> Path:
    project = project_copy(sample_project, tmp_path_factory.mktemp("monitor"))
    server = Server(project, "inference.mode=dynamic")
    try:
        out = run(["mlsys", "replay", "--url", server.url], project).stdout
    finally:
        server.stop()
    assert " 0 refused" in out, out
    return project


@pytest.fixture
def project(replayed, tmp_path) -> Path:
    """A private copy of the replayed project, to inject a fault into."""
    return project_copy(replayed, tmp_path)


def monitor(project: Path, *overrides: str) -> tuple[int, dict, list[dict]]:
    """Exit code, metrics/monitor.json and this run's alerts."""
    alerts = project / "logs/alerts.jsonl"
    before = len(alerts.read_text().splitlines()) if alerts.exists() else 0
    proc = run(["mlsys", "monitor", *overrides], project, check=False)
    assert proc.returncode in (0, ExitCode.ALERT), proc.stdout + proc.stderr
    found = [json.loads(line) for line in alerts.read_text().splitlines()[before:]] if alerts.exists() else []
    return proc.returncode, json.loads((project / "metrics/monitor.json").read_text()), found


def fired(alerts: list[dict], check: str, severity: str = "fail") -> set[str]:
    return {a["subject"] for a in alerts if a["check"] == check and a["severity"] == severity}


def test_a_clean_replay_raises_no_fail_and_shows_quality_and_age(replayed):
    log = logged(replayed / LOG)
    code, summary, alerts = monitor(replayed, *ALL)
    assert code == 0 and summary["findings"]["fail"] == 0, alerts
    assert summary["records"] == len(log) > 1000
    (version,) = summary["models"]
    checks = summary["checks"]
    assert {f"{version}:{c}" for c in ("invariants", "skew", "drift", "staleness", "stability", "quality")} <= set(
        checks
    )
    assert checks[f"{version}:skew"]["compared"] == len(log)  # every served record recomputed by the batch path
    assert max(v for k, v in checks[f"{version}:skew"].items() if k.endswith(": differ")) == 0.0
    assert checks[f"{version}:quality"]["labelled"] > 1000 and abs(checks[f"{version}:quality"]["drop"]) < 0.02
    assert 60 < checks[f"{version}:staleness"]["model_age_days"] < 180  # Dec traffic, a model of Jan-Sep data
    page = (replayed / "reports/monitor/index.html").read_text()
    assert "Quality once labels landed" in page and "Answers against the reference" in page
    assert "Alerts over time" in page and page.count("<img") >= 7  # drift, by day, answers, quality, calibration...
    assert checks[f"{version}:quality"]["slices_judged"] > 0 and checks["volume"]["requests"] > 100
    assert len(alerts) == summary["findings"]["warn"]  # every finding recorded


def test_a_worse_canary_is_flagged_dropped_and_a_candidate_can_be_promoted(project):
    """A candidate of two trees answers 30% of entities (always computed, one entity one
    model); the monitor scores its records with the live model too and recommends rolling
    back; `mlsys rollback` drops it; another candidate is promoted by the CLI."""
    registry = registry_of(project)
    live = registry.live()
    worse = another_version(project, trees=2)
    registry.propose(worse, "test: a worse canary", expected_live=live)
    shutil.rmtree(project / LOG)
    server = Server(project, "inference.mode=dynamic", "inference.canary.share=0.3")
    try:
        assert httpx.get(f"{server.url}/model").json()["candidate"] == worse
        run(["mlsys", "replay", "--url", server.url], project)
    finally:
        server.stop()
    rows = logged(project / LOG)
    canary = rows[rows["model_version"] == worse]
    assert 0.25 < len(canary) / len(rows) < 0.35 and set(rows["model_version"]) == {live, worse}
    assert rows.groupby("entity")["model_version"].nunique().max() == 1 and set(canary["path"]) == {"dynamic"}
    code, summary, alerts = monitor(project, *ALL)
    rollout = summary["checks"][f"{worse}:rollout"]
    assert code == ExitCode.ALERT and summary["rollout"]["recommendation"] == "roll back", summary["rollout"]
    assert "auc" in fired(alerts, "rollout") and rollout["drop"] > 0.01 and rollout["compared"] == len(canary)
    assert rollout["candidate_auc"] < rollout["live_auc"]
    assert "mlsys rollback" in run(["mlsys", "monitor", *ALL], project, check=False).stdout
    assert "dropped" in run(["mlsys", "rollback"], project).stdout
    assert registry.live() == live and registry.candidate() is None and worse in registry.revoked()
    other = another_version(project, trees=3)
    assert registry.propose(other, "test: promote by hand", expected_live=live)["action"] == "candidate"
    listed = [line for line in run(["mlsys", "release", "list"], project).stdout.splitlines() if other in line]
    assert listed and listed[0].split("│")[1].strip() == "c"  # marked as the candidate
    run(["mlsys", "release", "--promote", "--reason", "test"], project)
    assert registry.live() == other and registry.candidate() is None


def test_a_declared_feedback_loop_holds_out_entities_and_the_monitor_compares_their_outcomes(project):
    """`data.feedback_loops.own_inputs: true`: a fixed share of entities (by key) is answered
    `{score: null, holdout: true}`, the same entity every time; the monitor reports the label
    rate of the held-out entities beside the served ones', and judges quality on served only."""
    shutil.rmtree(project / LOG)
    loop = ["data.feedback_loops.own_inputs=true", "data.feedback_loops.holdout=0.2"]
    server = Server(project, "inference.mode=dynamic", *loop)
    try:
        run(["mlsys", "replay", "--url", server.url, "--limit", "4000"], project)
        columns = list(httpx.get(f"{server.url}/model").json()["example_request"])
        built = pd.read_parquet(project / "data/dataset/labelled.parquet")
        built = built[built["event_time"] >= "2013-12-02"].head(200)  # inside the monitored window
        bodies = [request_body(r, columns) for _, r in built.iterrows()]
        first, second = ([httpx.post(f"{server.url}/predict", json=b).json() for b in bodies] for _ in range(2))
    finally:
        server.stop()
    assert first == second  # one entity, one answer: held out every time or scored every time
    assert all(a["score"] is None for a in first if a.get("holdout")) and 20 < sum("holdout" in a for a in first) < 60
    rows = logged(project / LOG)
    held = rows[rows["path"] == "holdout"]
    assert 0.17 < len(held) / len(rows) < 0.23 and held[ANSWER + "score"].isna().all()
    assert rows.groupby("entity")["path"].nunique().max() == 1
    code, summary, alerts = monitor(project, *ALL)
    assert code == 0, alerts  # answers withheld on purpose are no instability, skew or quality loss
    feedback = summary["checks"]["feedback"]
    assert feedback["held_out"] == len(held) and feedback["served"] == len(rows) - len(held)
    assert feedback["held_out_labelled"] > 500 and 0 <= feedback["difference"] < 0.1
    (version,) = summary["models"]
    assert summary["checks"][f"{version}:quality"]["labelled"] <= len(rows) - len(held)
    assert registry_of(project).card(version)["feedback_loops"]["own_inputs"] is False  # as the model was built


def test_a_shadow_scores_every_answered_record_apart_and_is_judged_on_them(project):
    """`inference.shadow`: every answered record scored again after its answer, logged in the
    shadow's own files (no check counts them as served); the monitor compares the shadow with
    the live model on those records. A version the registry lacks is a config error."""
    registry = registry_of(project)
    live, shadow = registry.live(), another_version(project, trees=3)
    shutil.rmtree(project / LOG)
    server = Server(project, "inference.mode=dynamic", f"inference.shadow={shadow}")
    try:
        run(["mlsys", "replay", "--url", server.url, "--limit", "3000"], project)
    finally:
        server.stop()
    from mlsys.serving.log import read_log

    read = read_log(project / LOG)
    assert set(read.frame["model_version"]) == {live} and len(read.frame) == 3000
    assert len(read.shadow) == 3000 and set(read.shadow["shadow_of"]) == {live}
    assert set(read.shadow["entity"]) == set(read.frame["entity"])
    code, summary, alerts = monitor(project, *ALL)
    assert code == ExitCode.ALERT and summary["records"] == 3000 and summary["models"] == sorted({live, shadow})
    judged = summary["checks"][f"{shadow}:shadow"]
    assert judged["compared"] == 3000 and judged["live_auc"] > judged["candidate_auc"]
    assert summary["shadow"]["recommendation"] == "roll back" and "auc" in fired(alerts, "shadow")
    missing = run(["mlsys", "serve", "inference.shadow=" + "0" * 12], project, check=False)
    assert missing.returncode == ExitCode.CONFIG and "inference.shadow" in missing.stderr


def test_a_unit_change_in_a_carried_lookup_is_drift_and_skew(project):
    """Requests start carrying wx_temp in °C: weather is expected to drift from the train
    window (season), but not overnight against the window before."""
    rows = pd.read_parquet(project / "data/dataset/labelled.parquet")
    local = rows["event_time"].dt.tz_convert("America/New_York")
    week = rows[(local >= "2013-12-01") & (local < "2013-12-08")]
    server = Server(project, "inference.mode=dynamic")
    try:
        columns = list(httpx.get(f"{server.url}/model").json()["example_request"])
        bodies = [{**request_body(r, columns), "wx_temp": round((r.wx_temp - 32) / 1.8, 2)} for _, r in week.iterrows()]
        assert httpx.post(f"{server.url}/predict", json=[b for b in bodies if b["wx_temp"] == b["wx_temp"]]).is_success
        assert server.metric("mlsys_model_age_seconds") > 10 * 365 * 86400  # 2013 data, served today
        assert 0 <= server.metric('mlsys_table_age_seconds{table="online"}') < 86400  # built by this session
    finally:
        server.stop()
    code, _, alerts = monitor(project, *WEEK)
    assert code == ExitCode.ALERT
    assert "wx_temp" in fired(alerts, "drift") and "wx_temp" in fired(alerts, "skew"), alerts


def test_an_input_out_of_bounds_breaks_the_serving_invariants(project):
    rows = logged(project / LOG)
    append_logged(project / LOG, rows.head(100).assign(**{"input.distance": -5}))  # sent around the service
    code, _, alerts = monitor(project, *ALL)
    assert code == ExitCode.ALERT and any(s.startswith("distance:") for s in fired(alerts, "invariants")), alerts


def test_a_serving_side_vocabulary_bug_is_feature_skew(project):
    rows = logged(project / LOG)
    broken = rows.assign(**{FEATURE + "carrier": rows[FEATURE + "carrier"] + 1})  # codes shifted by one
    shutil.rmtree(project / LOG)
    append_logged(project / LOG, broken)
    code, _, alerts = monitor(project, *ALL)
    assert code == ExitCode.ALERT and fired(alerts, "skew") == {"carrier"}, alerts


def test_latency_tenfold_the_window_before_is_a_performance_warning(project):
    rows = logged(project / LOG)
    local = rows["prediction_time"].dt.tz_convert("America/New_York")
    # Ten times the slowest request of the log: a p99 over ~400 replayed records can hold a
    # spike of a loaded machine, so "ten times each record's own" is not surely ten times p99.
    slow = rows.assign(latency_ms=rows["latency_ms"].where(local < "2013-12-01", rows["latency_ms"].max() * 10))
    shutil.rmtree(project / LOG)
    append_logged(project / LOG, slow)
    with (project / "logs/alerts.jsonl").open("a") as cut:  # a run killed mid-append: read past, not a crash
        cut.write('{"at": "2013-12-0')
    _, summary, alerts = monitor(project, *WEEK)
    (version,) = summary["models"]
    assert summary["checks"][f"{version}:performance"]["p99_ratio_to_previous_window"] > 5
    assert fired(alerts, "performance", "warn") == {"latency"}


def test_a_model_older_than_the_limit_is_stale(project):
    code, _, alerts = monitor(project, *ALL, "monitoring.staleness.model_age_days.fail=30")
    assert code == ExitCode.ALERT and fired(alerts, "staleness") == {"model"}


def test_a_shift_in_the_label_rate_is_quality(project):
    path = project / "data/dataset/labelled.parquet"
    rows = pd.read_parquet(path)
    flip = np.random.default_rng(0).random(len(rows)) < 0.4
    rows.loc[flip, LABEL] = 1.0  # 40% more late flights once the labels land
    rows.to_parquet(path)
    code, _, alerts = monitor(project, *ALL)
    assert code == ExitCode.ALERT and fired(alerts, "quality") == {"auc", "ece"}, alerts  # ranking and calibration


def test_nan_scores_are_instability(project):
    rows = logged(project / LOG)
    append_logged(project / LOG, rows.head(50).assign(**{ANSWER + "score": np.nan}))
    code, _, alerts = monitor(project, *ALL)
    assert code == ExitCode.ALERT and fired(alerts, "stability") == {"answers"}


def test_a_changed_upstream_file_is_an_upstream_warning_and_goes_to_the_webhook(project):
    manifest = project / "data/raw/snapshot.json"
    snapshot = json.loads(manifest.read_text())
    snapshot["sources"]["weather"]["fingerprint"] = "0" * 64  # the weather file changed since the model's snapshot
    manifest.write_text(json.dumps(snapshot))
    received: list[dict] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"monitoring.webhook.url=http://127.0.0.1:{receiver.server_port}/hook"
        code, summary, alerts = monitor(project, *ALL, url)
    finally:
        receiver.shutdown()
    assert code == 0  # a warning is printed and recorded, not a failure
    (upstream,) = [a for a in alerts if a["check"] == "upstream"]
    assert upstream["severity"] == "warn" and "weather" in upstream["subject"]
    assert upstream["delivered"] and any(r["check"] == "upstream" for r in received)
    assert len(received) == len(alerts) and summary["webhook_failures"] == 0


def test_a_failed_webhook_delivery_is_recorded_and_changes_no_exit_code(project):
    closed = "monitoring.webhook.url=http://127.0.0.1:9/hook"  # discard port: nothing listens
    code, summary, alerts = monitor(
        project, *ALL, closed, "monitoring.webhook.retries=1", "monitoring.staleness.model_age_days.warn=1"
    )
    assert code == 0 and alerts and all(a["delivered"] is False and a["delivery_error"] for a in alerts)
    assert summary["webhook_failures"] == len(alerts)


def test_refused_requests_are_a_rejected_rate_and_one_record_latency_is_held_to_the_release(project):
    """Requests refused by the real server (422, 415) are logged as refusals; one-record
    requests are compared with the latency the infra gate measured at release."""
    rows = pd.read_parquet(project / "data/dataset/labelled.parquet")
    local = rows["event_time"].dt.tz_convert("America/New_York")
    week = rows[(local >= "2013-12-02") & (local < "2013-12-07")].head(60)
    server = Server(project, "inference.mode=dynamic")
    try:
        columns = list(httpx.get(f"{server.url}/model").json()["example_request"])
        with httpx.Client(base_url=server.url) as client:
            for i, (_, r) in enumerate(week.iterrows()):
                assert client.post("/predict", json=request_body(r, columns)).is_success
                if i % 6 == 0:  # 10 refusals among the answers: a field of the wrong type, then no JSON
                    bad = client.post("/predict", json={**request_body(r, columns), "distance": "far"})
                    text = client.post("/predict", content=b"x", headers={"content-type": "text/plain"})
                    assert (bad.status_code, text.status_code) == (422, 415)
    finally:
        server.stop()
    code, summary, alerts = monitor(project, *WEEK)
    (version,) = summary["models"]
    perf = summary["checks"][f"{version}:performance"]
    assert perf["rejected_rate"] == pytest.approx(20 / (perf["requests"] + 20)) and perf["error_rate"] == 0.0
    assert code == ExitCode.ALERT and "requests" in fired(alerts, "performance")
    (message,) = [a["message"] for a in alerts if a["check"] == "performance" and a["subject"] == "requests"]
    assert "invalid: 10" in message and "unsupported_media_type: 10" in message
    assert perf["p50_ratio_to_release"] > 0 and perf["p99_ratio_to_release"] > 0  # against the blessing's infra gate


def test_records_of_a_version_the_registry_lacks_are_a_finding_and_the_rest_is_judged(project):
    rows = logged(project / LOG)
    append_logged(project / LOG, rows.head(300).assign(model_version="0123456789ab"))
    code, summary, alerts = monitor(project, *ALL)
    assert code == ExitCode.ALERT and fired(alerts, "registry") == {"0123456789ab"}
    (version,) = set(summary["models"]) - {"0123456789ab"}
    assert summary["checks"][f"{version}:quality"]["status"] == "ok"  # the served model is still judged


def test_an_empty_window_is_a_volume_warning_not_a_crash(project):
    code, summary, alerts = monitor(project, "monitoring.since=2014-01-01", "monitoring.until=2014-02-01")
    assert code == 0 and summary["records"] == 0 and summary["models"] == []
    assert summary["checks"]["volume"]["drop"] == 1.0 and fired(alerts, "volume", "warn") == {"requests"}
    assert (project / "reports/monitor/index.html").exists()


def test_the_monitor_as_a_dvc_stage_reads_its_window_from_params_and_fails_on_a_fail(project):
    conf = project / "conf/monitoring/default.yaml"
    text = conf.read_text().replace("since: null", "since: 2013-12-01").replace("until: null", "until: 2013-12-08")
    conf.write_text(text)
    run(["mlsys", "compose"], project)
    out = run(["dvc", "repro", "monitor/dvc.yaml"], project).stdout
    summary = json.loads((project / "metrics/monitor.json").read_text())
    assert "Running stage 'monitor" in out and summary["window"]["since"].startswith("2013-12-01 00:00:00")
    assert "monitor.json" in run(["dvc", "metrics", "show"], project).stdout
    conf.write_text(text.replace("model_age_days: {warn: 60, fail: 180}", "model_age_days: {warn: 60, fail: 30}"))
    run(["mlsys", "compose"], project)
    failed = run(["dvc", "repro", "monitor/dvc.yaml"], project, check=False)
    assert failed.returncode != 0 and json.loads((project / "metrics/monitor.json").read_text())["status"] == "fail"


def test_replay_counts_refused_records_and_answers_the_rest_of_their_request(project):
    """Two bad records in one request of 50: the other 48 are answered (sent again one by
    one), the two are counted, and replay exits 6 (the contract passed rows the server refuses)."""
    labelled = project / "data/dataset/labelled.parquet"
    rows = pd.read_parquet(labelled)
    first = rows[rows["event_time"] >= pd.Timestamp("2013-10-01", tz="America/New_York")].sort_values("prediction_time")
    rows.loc[first.index[:2], "carrier"] = "zz9"  # breaks the carrier pattern: the window's first two
    rows.to_parquet(labelled)
    server = Server(project, "inference.mode=dynamic")
    try:
        proc = run(["mlsys", "replay", "--url", server.url, "--limit", "100"], project, check=False)
    finally:
        server.stop()
    assert proc.returncode == ExitCode.CONTRACT, proc.stdout + proc.stderr
    assert "100 records" in proc.stdout and "98 answered, 2 refused" in proc.stdout, proc.stdout
    assert "carrier" in proc.stderr
