"""A different dataset with YAML only: the example project (examples/orders: generated orders
CSV and customers Parquet, no code) with its binary label, through every pipeline."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import registry_of, run
from tests.examples import orders_project


def test_pipeline_runs_on_a_yaml_only_dataset(tmp_path):
    p = orders_project(tmp_path / "orders_project", "refund")
    orders = pd.read_csv(p / "upstream/orders.csv")
    run(["dvc", "repro", "--all-pipelines"], p)  # the main pipeline and the backtest study
    validation = json.loads((p / "reports/validation.json").read_text())["tables"]["orders"]
    assert validation["rows_quarantined"] == 1 and validation["rows_in"] == len(orders)
    build = json.loads((p / "reports/build.json").read_text())
    assert build["rows_excluded_no_label"] == int(orders["refund_amount"].drop(7).isna().sum())
    metrics = json.loads((p / "metrics/metrics.json").read_text())
    assert metrics["auc"] > 0.7
    card = json.loads((p / "models/bundle/card.json").read_text())
    assert {f["name"] for f in card["features"]} >= {"segment", "region_orders_2h"}
    assert registry_of(p).live() == card["version"]
    assert json.loads((p / "metrics/backtest.json").read_text())["periods"] == 2
    predicted = json.loads((p / "reports/predict.json").read_text())
    assert predicted["passed"] and predicted["rows"] == predicted["checks"][-1]["value"] * predicted["rows"] > 1000
    slices = json.loads((p / "metrics/slices.json").read_text())
    assert set(slices["region"]) == {"north", "south", "east", "west"}
