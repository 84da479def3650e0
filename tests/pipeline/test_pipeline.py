"""The whole pipeline in real temporary DVC repos on a sample of the real flights."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from mlsys.config import SECTIONS, load_sections, read_params
from mlsys.errors import ExitCode
from mlsys.model import load_model
from mlsys.release.infra import infra_config, infra_gate
from tests.conftest import ENV, ran, registry_of, run


def test_repro_builds_a_validated_evaluated_bundle(sample_project):
    p = sample_project
    metrics = json.loads((p / "metrics/metrics.json").read_text())
    assert 0.6 < metrics["auc"] < 0.95 and metrics["auc"] > metrics["baseline_base_rate"]["auc"]
    card = json.loads((p / "models/bundle/card.json").read_text())
    model = load_model(p / "models/bundle")
    assert card["version"] == model.version and len(card["version"]) == 12
    assert card["snapshot_time"] and card["data"]["flights"]["fingerprint"]["sha256"]
    assert {f["name"] for f in card["features"]} == set(model.pipeline.names)
    assert card["metrics"]["auc"] == metrics["auc"]
    # reconciliation on disk: rows in = passed + quarantined, for every table
    validation = json.loads((p / "reports/validation.json").read_text())
    for name, t in validation["tables"].items():
        quarantined = pd.read_parquet(p / f"data/quarantine/{name}.parquet")
        passed = pd.read_parquet(p / f"data/validated/{name}.parquet")
        assert t["rows_in"] == len(passed) + len(quarantined) == t["rows_passed"] + t["rows_quarantined"]
    build = json.loads((p / "reports/build.json").read_text())
    accounted = build["rows_labelled"] + build["rows_excluded_no_label"] + build.get("rows_quarantined", 0)
    assert accounted == build["rows_in"] == validation["tables"]["flights"]["rows_passed"]
    assert {part: c["status"] for part, c in build["contract"].items()} == {
        "labelled": "passed",
        "unlabelled": "passed",
    }
    for plot in ("roc.csv", "calibration.csv", "importance.csv"):
        assert len(pd.read_csv(p / "plots" / plot)) > 3
    assert (p / "reports/train/plots/metrics/valid/binary_logloss.tsv").exists()
    assert "<img" in (p / "reports/evaluation.html").read_text()


def test_noop_repro_runs_nothing_but_the_snapshot_check(sample_copy):
    out = run(["dvc", "repro"], sample_copy).stdout
    assert ran(out) == {"snapshot"}, out
    assert "upstream unchanged" in out


def test_model_change_reruns_training_not_ingestion(sample_copy):
    p = sample_copy
    lgbm = p / "conf/model/lightgbm.yaml"
    lgbm.write_text(lgbm.read_text().replace("num_leaves: 63", "num_leaves: 15"))
    stale = run(["dvc", "repro"], p, check=False)
    assert stale.returncode != 0
    assert "params.yaml is stale" in stale.stdout + stale.stderr
    assert not (ran(stale.stdout) - {"guard"})
    run(["mlsys", "compose"], p)
    run(["dvc", "repro", "guard"], p)  # the failed run above removed the guard's mark
    # The backtest study trains models too: partition records the change for its stages (run on demand).
    status = {k.rsplit(":", 1)[-1] for k in json.loads(run(["dvc", "status", "--json"], p).stdout)}
    assert {"train", "partition"} <= status and not {"validate", "build", "featurize"} & status, status
    out = run(["dvc", "repro"], p).stdout  # the main pipeline: no study, no serving table rebuilt
    assert ran(out) == {"snapshot", "train", "evaluate", "package", "release", "predict"}, out
    run(["dvc", "repro", "studies/dvc.yaml:partition"], p)
    status = {k.rsplit(":", 1)[-1] for k in json.loads(run(["dvc", "status", "studies/dvc.yaml", "--json"], p).stdout)}
    assert {"backtest_static", *(f"backtest@{i}" for i in range(4))} <= status, status


def test_guard_exit_code_is_stale_params(sample_copy):
    p = sample_copy
    ev = p / "conf/evaluation/default.yaml"
    ev.write_text(ev.read_text().replace("min_slice_rows: 200", "min_slice_rows: 100"))
    proc = run(["mlsys", "guard"], p, check=False)
    assert proc.returncode == ExitCode.STALE_PARAMS
    assert "mlsys compose" in proc.stderr


def test_exp_run_composes_and_shows_metrics(sample_copy):
    p = sample_copy
    # Target `release`: the main chain (the backtest is exercised in test_backtest.py).
    run(
        [
            "dvc",
            "exp",
            "run",
            "release",
            "-n",
            "ref",
            "-S",
            "experiment=reference_features",
            "-S",
            "model.params.num_leaves=15",
            "-S",
            "release.change.auc.max_worsening=0.0",  # held to the live model: any loss of AUC fails
        ],
        p,
    )
    shown = json.loads(run(["dvc", "exp", "show", "--json"], p).stdout)
    rows = {
        exp["name"]: exp
        for entry in shown
        for exp in ([entry] + [e for r in entry.get("experiments") or [] for e in r["revs"]])
    }
    params = rows["ref"]["data"]["params"]["params.yaml"]["data"]
    assert params["model"]["params"]["num_leaves"] == 15 and params["features"]["name"] == "reference"
    metric = rows["ref"]["data"]["metrics"]["metrics/metrics.json"]["data"]["auc"]
    assert 0.5 < metric < 1
    # the weaker experiment is gated and recorded, not released, and does not fail the run
    assert rows["ref"]["data"]["metrics"]["metrics/release.json"]["data"]["blessed"] is False
    live = registry_of(p).live()
    assert registry_of(p).versions() == [live]


def test_misspelled_parameter_fails_exp_run_naming_it(sample_copy):
    proc = run(["dvc", "exp", "run", "-S", "+model.params.num_leves=15"], sample_copy, check=False)
    assert proc.returncode != 0
    assert "model.params.num_leves: not a LightGBM parameter" in proc.stdout + proc.stderr


def test_dvc_composition_uses_the_typed_schema(sample_copy):
    """DVC composes through hydra_plugins/: a wrong type fails before any stage runs."""
    proc = run(["dvc", "exp", "run", "-S", "model.num_boost_round=many"], sample_copy, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "model.num_boost_round" in out and "Running stage" not in out


def test_changed_upstream_is_detected_and_flows_downstream(sample_copy):
    p = sample_copy
    csv = p / "upstream/flights.csv"
    frame = pd.read_csv(csv)
    frame.loc[frame.index[:50], "arr_delay"] = 999.0
    frame.to_csv(csv, index=False)
    out = run(["dvc", "repro", "release"], p).stdout
    assert "upstream 'flights' changed" in out
    assert {"snapshot", "validate", "build", "featurize", "train"} <= ran(out)
    snap = json.loads((p / "data/raw/snapshot.json").read_text())
    assert snap["sources"]["flights"]["rows"] == len(frame)


def test_upstream_change_can_be_refused(sample_copy):
    p = sample_copy
    with open(p / "conf/data/flights_sample.yaml", "a") as fh:
        fh.write("on_upstream_change: fail\n")
    run(["mlsys", "compose"], p)
    run(["dvc", "repro", "sources/dvc.yaml:snapshot"], p)
    csv = p / "upstream/planes.csv"
    csv.write_text(csv.read_text().replace("EMBRAER", "EMBRAER2", 1))
    proc = run(["mlsys", "snapshot"], p, check=False)
    assert proc.returncode == ExitCode.UPSTREAM_CHANGED
    assert "planes" in proc.stderr


def test_contract_failure_exits_with_contract_code_and_writes_report(sample_copy):
    p = sample_copy
    csv = p / "upstream/flights.csv"
    frame = pd.read_csv(csv).drop(columns=["origin"])
    frame.to_csv(csv, index=False)
    run(["mlsys", "snapshot"], p)
    proc = run(["mlsys", "validate"], p, check=False)
    assert proc.returncode == ExitCode.CONTRACT
    assert "origin" in proc.stdout and "column_in_dataframe" in proc.stdout
    report = json.loads((p / "reports/validation.json").read_text())
    assert report["tables"]["flights"]["status"] == "failed"


def test_missing_input_names_the_file(sample_copy):
    p = sample_copy
    (p / "upstream/weather.csv").unlink()
    proc = run(["mlsys", "snapshot"], p, check=False)
    assert proc.returncode == ExitCode.MISSING_INPUT
    assert "upstream/weather.csv" in proc.stderr and "data.sources.weather.path" in proc.stderr


def test_each_stage_saved_exactly_the_params_dvc_tracks(sample_project):
    """dvc.lock records the params each stage depends on; the stage saved the same keys."""
    stages = {
        **yaml.safe_load((sample_project / "dvc.lock").read_text())["stages"],
        **yaml.safe_load((sample_project / "sources/dvc.lock").read_text())["stages"],
    }
    saved = {
        "snapshot": "reports/snapshot.json",
        "validate": "reports/validation.json",
        "build": "reports/build.json",
        "featurize": "data/features/windows.json",
        "train": "models/model/meta.json",
        "evaluate": "reports/evaluate.json",
    }
    for name, path in saved.items():
        tracked: dict = {}
        for key, value in stages[name]["params"]["params.yaml"].items():
            *parents, leaf = key.split(".")
            node = tracked
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        assert json.loads((sample_project / path).read_text())["config"] == tracked, name


def test_repro_released_the_blessed_candidate(sample_project):
    p = sample_project
    blessing = json.loads((p / "reports/blessing.json").read_text())
    card = json.loads((p / "models/bundle/card.json").read_text())
    assert blessing["blessed"] and blessing["candidate"] == card["version"]
    assert any(g["gate"] == "change" and "no model is released" in g["reason"] for g in blessing["gates"])
    infra = next(g for g in blessing["gates"] if g["gate"] == "infra")
    assert infra["passed"] and infra["value"] <= 1e-9
    assert 0 < infra["latency"]["p50_ms"] <= infra["latency"]["p99_ms"]  # what monitoring compares with
    (leak,) = [g for g in blessing["gates"] if g["gate"] == "leakage"]  # the flights default: no suspect
    assert leak["passed"] and leak["metric"] == "suspects" and card["leakage"]["measure"] == "auc"
    registry = registry_of(p)
    assert registry.live() == card["version"]
    kept = registry.verified(card["version"])
    model = load_model(p / "models/bundle")
    sample = pd.read_parquet(p / "data/dataset/labelled.parquet").head(20).drop(columns=["label"])
    serve = infra_config(load_sections(read_params(p), tuple(SECTIONS), "params.yaml"))
    wrong = infra_gate(p / "models/bundle", sample, model.task, model.predict_frame(sample) + 1e-6, serve, timeout=120)
    assert wrong["passed"] is False and "max |served - batch| = 1.00e-06" in wrong["reason"]
    assert "20/20 requests answered by a sandboxed `mlsys serve`" in wrong["reason"]
    assert {"model.txt", "feature_state.json", "card.json", "blessing.json", "params.yaml", "checksums.json"} <= {
        f.name for f in kept.iterdir()
    }


def _use(project, group: str, option: str) -> None:
    cfg = project / "conf/config.yaml"
    lines = [
        ln if not ln.strip().startswith(f"- {group}:") else f"  - {group}: {option}"
        for ln in cfg.read_text().splitlines()
    ]
    cfg.write_text("\n".join(lines) + "\n")
    run(["mlsys", "compose"], project)


def test_degraded_candidate_is_vetoed_and_live_model_stays(sample_copy):
    """Keep two weak features only (drop the aggregates and weather): the change gate blocks it."""
    p = sample_copy
    live = registry_of(p).live()
    (p / "conf/features/weak.yaml").write_text(
        "name: weak\ncolumns:\n  distance: {source: distance}\n  month: {source: event_local, transform: month}\n"
    )
    _use(p, "features", "weak")
    proc = run(["dvc", "repro", "release"], p, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "REJECTED" in out and f"live model stays {live}" in out
    blessing = json.loads((p / "reports/blessing.json").read_text())
    assert not blessing["blessed"] and any(f.startswith("change:auc") for f in blessing["failed"])
    assert registry_of(p).live() == live
    assert registry_of(p).versions() == [live]  # the rejected candidate is not kept
    by_hand = run(["mlsys", "release"], p, check=False)
    assert by_hand.returncode == ExitCode.GATE and "REJECTED" in by_hand.stdout


def test_release_then_rollback_through_the_cli(sample_copy):
    p = sample_copy
    first = registry_of(p).live()
    training = p / "conf/training/default.yaml"
    training.write_text(training.read_text().replace("seed: 42", "seed: 7"))
    run(["mlsys", "compose"], p)
    run(["dvc", "repro", "release"], p)
    second = registry_of(p).live()
    assert second != first
    env = {**ENV, "MLSYS_USER": "oncall"}
    out = run(["mlsys", "rollback", "--reason", "pager"], p, env=env).stdout
    assert f"{first} is live (was {second})" in out
    assert registry_of(p).live() == first
    listing = run(["mlsys", "release", "list"], p).stdout
    live_row = next(line for line in listing.splitlines() if "│ * │" in line)
    assert first in live_row and second in listing
    again = run(["mlsys", "release"], p, check=False)  # the blessed candidate was rolled away
    assert again.returncode == ExitCode.GATE and f"rollback --to {second}" in again.stderr
    run(["mlsys", "rollback", "--to", second], p, env=env)
    history = registry_of(p).history()
    assert [(e["action"], e["to"]) for e in history] == [
        ("release", first),
        ("release", second),
        ("rollback", first),
        ("rollback", second),
    ]
    assert history[2]["by"] == "oncall" and history[2]["reason"] == "pager"
    for bad in ("", ".", "..", "nope"):  # not a version id: a usage error, nothing revoked
        proc = run(["mlsys", "rollback", "--to", bad], p, check=False)
        assert proc.returncode == ExitCode.USAGE and "is not a model version" in proc.stderr, bad
    proc = run(["mlsys", "rollback", "--to", "0123456789ab"], p, check=False)
    assert proc.returncode == ExitCode.MISSING_INPUT and "no such released version" in proc.stderr
    assert registry_of(p).live() == second and not registry_of(p).revoked().get(second)
