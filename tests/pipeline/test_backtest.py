"""Static vs dynamic backtest in a real DVC repo on the flights sample."""

from __future__ import annotations

import json

import pandas as pd

from mlsys.model import load_model
from tests.conftest import run


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


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
    out = run(["dvc", "repro"], p).stdout
    assert _ran(out) == {"guard", "snapshot", "partition", "backtest@4", "backtest_report"}, out
    assert json.loads((p / "metrics/backtest.json").read_text())["periods"] == 5


def test_warm_start_continues_the_previous_model(sample_copy):
    p = sample_copy
    before = load_model(p / "models/backtest/2013-08").booster
    run(["mlsys", "backtest", "2013-09", "2013-09-01", "2013-10-01", "2013-08", "training.warm_start=true"], p)
    after = load_model(p / "models/backtest/2013-09").booster
    assert after.num_trees() == before.num_trees() + 50
    trees_before = before.dump_model()["tree_info"]
    assert after.dump_model()["tree_info"][: len(trees_before)] == trees_before
    scores = json.loads((p / "models/backtest/2013-09/scores.json").read_text())
    assert scores["dynamic_training"] == "warm start (+50 rounds)"
    assert scores["train_rows"] < json.loads((p / "models/backtest/2013-08/scores.json").read_text())["train_rows"]


def test_sliding_window_reads_only_the_recent_periods(sample_copy):
    p = sample_copy
    args = ["2013-10", "2013-10-01", "2013-11-01", "2013-09", "training.window=sliding", "training.sliding_periods=2"]
    run(["mlsys", "backtest", *args], p)
    scores = json.loads((p / "models/backtest/2013-10/scores.json").read_text())
    parts = [pd.read_parquet(p / f"data/periods/{n}.parquet") for n in ("2013-08", "2013-09")]
    assert scores["train_rows"] == sum(len(f) for f in parts)
