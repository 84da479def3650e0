"""Static vs dynamic backtest in a real DVC repo on the flights sample."""

from __future__ import annotations

import json

import pandas as pd

from mlsys.data.columns import EVENT_TIME
from mlsys.errors import ExitCode
from mlsys.model import load_model
from tests.conftest import ran, registry_of, run


def test_backtest_scores_static_and_dynamic_each_period(sample_project):
    p = sample_project
    summary = json.loads((p / "metrics/backtest.json").read_text())
    periods = [json.loads((p / f"models/backtest/2013-{m:02d}/scores.json").read_text()) for m in range(7, 11)]
    assert summary["periods"] == len(periods) == 4
    first, later = periods[0], periods[1:]
    assert first["static"] == first["dynamic"]  # nothing new before the first period
    for r in later:
        assert r["dynamic"]["model_age_days_mean"] < r["static"]["model_age_days_mean"]
        assert r["train_rows"] > 0 and r["dynamic_training"] == "from scratch"
    assert [r["seen"][-1] for r in later] == [f"2013-{m:02d}" for m in range(7, 10)]  # expanding window
    assert len(later[-1]["seen"]) == 1 + len(later)  # initial + every earlier period
    table = pd.read_csv(p / "reports/backtest/backtest.csv")
    assert set(table["model"]) == {"static", "dynamic"} and len(table) == 8
    assert (
        abs(
            summary["auc_gain_mean"]
            - (table[table.model == "dynamic"].auc.mean() - table[table.model == "static"].auc.mean())
        )
        < 1e-9
    )
    assert "<img" in (p / "reports/backtest/index.html").read_text()


def test_adding_a_period_reruns_only_that_period(sample_copy):
    p = sample_copy
    conf = p / "conf/backtest/sample.yaml"
    conf.write_text(conf.read_text() + "  - {name: '2013-11', start: 2013-11-01, end: 2013-12-01, prev: '2013-10'}\n")
    run(["mlsys", "compose"], p)
    out = run(["dvc", "repro", "studies/dvc.yaml"], p).stdout
    assert ran(out) == {"guard", "snapshot", "partition", "backtest@4", "backtest_report"}, out
    assert json.loads((p / "metrics/backtest.json").read_text())["periods"] == 5


def test_warm_start_continues_the_previous_model(sample_copy):
    p = sample_copy
    before = load_model(p / "models/backtest/2013-08").booster
    # About the mechanics, not the gates: on the sample's ~400 held-out rows they are mostly noise.
    loose = [
        "release.change.auc.max_worsening=1",
        "release.change.logloss.max_worsening=1",
        "release.baseline.margin=-1",
    ]
    run(["mlsys", "backtest", "2013-09", "2013-09-01", "2013-10-01", "2013-08", "training.warm_start=true", *loose], p)
    after = load_model(p / "models/backtest/2013-09").booster
    added = after.num_trees() - before.num_trees()
    assert 0 < added <= 50  # training.warm_rounds, early stopped on the valid days
    trees_before = before.dump_model()["tree_info"]
    assert after.dump_model()["tree_info"][: len(trees_before)] == trees_before
    scores = json.loads((p / "models/backtest/2013-09/scores.json").read_text())
    assert scores["dynamic_training"] == f"warm start (+{added} rounds)"
    assert scores["train_rows"] < json.loads((p / "models/backtest/2013-08/scores.json").read_text())["train_rows"]


def test_sliding_window_reads_only_the_recent_periods(sample_copy):
    p = sample_copy
    args = ["2013-10", "2013-10-01", "2013-11-01", "2013-09", "training.window=sliding", "training.sliding_periods=2"]
    run(["mlsys", "backtest", *args], p)
    scores = json.loads((p / "models/backtest/2013-10/scores.json").read_text())
    parts = pd.concat([pd.read_parquet(p / f"data/periods/{n}.parquet") for n in ("2013-08", "2013-09")])
    # The last 2 periods (August, September) minus the valid and test weeks (Sep 17-30).
    t = parts[EVENT_TIME].dt.tz_convert("America/New_York")
    expected = ((t >= pd.Timestamp("2013-08-01", tz=t.dt.tz)) & (t < pd.Timestamp("2013-09-17", tz=t.dt.tz))).sum()
    assert scores["train_rows"] == expected < len(parts)
    assert scores["retrain"]["windows"]["train"]["start"].startswith("2013-08-01")


def test_a_failing_retrain_keeps_the_previous_model_and_says_so(sample_copy):
    p = sample_copy
    args = ["mlsys", "backtest", "2013-10", "2013-10-01", "2013-11-01", "2013-09"]
    live = (p / "models/backtest/2013-09/model.txt").read_bytes()
    cases = {
        "release.change.auc.max_worsening=-1": "change:auc",  # must beat the live model by a whole AUC
        "training.data_check.min_rows=1000000": "rows: ",  # the new period is too small to adopt
        "training.data_check.max_psi=0": "PSI",  # any shift in a checked feature
    }
    for override, reason in cases.items():
        out = run([*args, override], p).stdout
        scores = json.loads((p / "models/backtest/2013-10/scores.json").read_text())
        assert "KEPT the previous model" in out and reason in out, out
        assert not scores["retrain"]["adopted"] and any(reason in r for r in scores["retrain"]["reasons"])
        assert (p / "models/backtest/2013-10/model.txt").read_bytes() == live  # the previous model serves on
        assert scores["dynamic_training"] == "kept the previous model" and scores["train_rows"] == 0
    run(args, p)  # defaults: the retrain is checked, gated against the live model, and adopted
    adopted = json.loads((p / "models/backtest/2013-10/scores.json").read_text())["retrain"]
    assert adopted["adopted"] and adopted["data_check"]["adopted"]
    gates = adopted["gates"]["gates"]
    assert {g["gate"] for g in gates} == {"leakage", "absolute", "slice", "change", "baseline", "stability", "infra"}
    (leak,) = [g for g in gates if g["gate"] == "leakage"]  # every retrain is held to the leakage rules too
    assert leak["passed"] and leak["metric"] == "suspects"
    infra = next(g for g in gates if g["gate"] == "infra")  # the release stage's rules, but the server
    assert infra["passed"] is None and "backtest.skip_gates" in infra["reason"]
    assert (p / "models/backtest/2013-10/model.txt").read_bytes() != live


def test_dynamic_mode_rolls_the_windows_and_gates_the_retrain_against_the_live_model(sample_copy):
    p = sample_copy
    live = registry_of(p).live()
    steps = [
        run(["mlsys", stage, "training.mode=dynamic"], p) for stage in ("featurize", "train", "evaluate", "package")
    ]
    assert "passed the data check" in steps[0].stdout
    windows = json.loads((p / "data/features/windows.json").read_text())
    assert windows["mode"] == "dynamic"
    assert [(w["start"], w["end"]) for w in windows["split"]["periods"]] == [
        ("2013-01-01", "2013-12-18"),
        ("2013-12-18", "2013-12-25"),
        ("2013-12-25", "2014-01-01"),
    ]
    card = json.loads((p / "models/bundle/card.json").read_text())
    assert card["training_mode"] == "dynamic" and card["windows"]["test"]["start"].startswith("2013-12-25")
    assert set(card["timeline"]) == {
        "snapshot_time",
        "newest_training_event",
        "featurized_at",
        "trained_at",
        "packaged_at",
    }
    # Held to the live model on the same newest rows: refused when it must beat it by a whole AUC...
    strict = run(["mlsys", "release", "training.mode=dynamic", "release.change.auc.max_worsening=-1"], p, check=False)
    blessing = json.loads((p / "reports/blessing.json").read_text())
    change = [g for g in blessing["gates"] if g["gate"] == "change"]
    assert change and all(f"vs live {live}" in g["reason"] for g in change)  # judged on the same newest rows
    assert strict.returncode == ExitCode.GATE and "live model stays" in strict.stderr
    assert registry_of(p).live() == live
    # ...and released when every bound is loose: the rolling candidate goes live.
    loose = [
        "release.change.auc.max_worsening=1",
        "release.change.logloss.max_worsening=10",
        "release.absolute.auc.min=0",
        "release.absolute.logloss.max=10",
        "release.absolute.ece.max=1",
        "release.baseline.margin=-1",
        "release.slices.bounds.auc.min=0",
        "release.slices.bounds.logloss.max=10",
    ]
    run(["mlsys", "release", "training.mode=dynamic", *loose], p)
    now_live = registry_of(p).live()
    assert now_live == card["version"] != live
    assert registry_of(p).timeline(now_live)["released_at"] is not None


def test_dynamic_mode_does_not_adopt_new_data_that_fails_its_check(sample_copy):
    p = sample_copy
    before = (p / "data/features/windows.json").read_bytes()
    proc = run(["mlsys", "featurize", "training.mode=dynamic", "training.data_check.min_rows=1000000"], p, check=False)
    assert proc.returncode == ExitCode.CONTRACT
    assert "new data 2013-12-01..2014-01-01 not adopted" in proc.stderr and "live model stays" in proc.stderr
    assert not json.loads((p / "reports/data_check.json").read_text())["adopted"]
    assert (p / "data/features/windows.json").read_bytes() == before  # nothing downstream moved
