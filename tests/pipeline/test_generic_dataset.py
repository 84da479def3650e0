"""A different dataset with YAML only: generated orders (CSV) and customers (Parquet), no code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import init_project, registry_of, run

CONF = {
    "data/orders.yaml": """
name: orders
primary: orders
key: [order_id]
sources:
  orders:
    kind: csv
    path: upstream/orders.csv
    available: at_prediction
    time_columns:
      ts: {tz: UTC, format: ISO8601}
    after_outcome: {refund_amount: {}}
  customers:
    kind: parquet
    path: upstream/customers.parquet
    available: static
event_time:
  column: ts
  tz: Europe/Paris
prediction_lead: 0h
label: {column: refund_amount, op: gt, threshold: 0, missing: exclude}
lookup_joins:
  - {source: customers, key: customer_id, columns: [segment, tenure_years], prefix: cust_}
aggregates:
  region_orders_2h: {by: [region], stat: count, window: 2h, known: schedule}
""",
    "contract/orders.yaml": """
tables:
  orders:
    policy: quarantine
    min_rows: 100
    unique: [order_id]
    columns:
      order_id: {dtype: int64, nullable: false}
      ts: {dtype: 'datetime64[us, UTC]', nullable: false}
      region: {dtype: str, nullable: false, isin: [north, south, east, west]}
      basket_value: {dtype: float64, nullable: false, min: 0, max: 10000}
      items: {dtype: int64, min: 1, max: 100}
      promo: {dtype: int64, isin: [0, 1]}
      customer_id: {dtype: int64, nullable: false}
      refund_amount: {dtype: float64, min: 0, max_missing: 0.2}
  customers:
    policy: fail
    columns:
      customer_id: {dtype: int64, nullable: false, unique: true}
      segment: {dtype: str, isin: [gold, silver, bronze]}
      tenure_years: {dtype: float64, min: 0, max: 50}
""",
    "features/orders.yaml": """
name: orders
columns:
  hour: {source: event_local, transform: hour}
  day_of_week: {source: event_local, transform: day_of_week}
  region: {source: region, type: categorical, transform: vocab}
  basket_value: {source: basket_value, transform: clip}
  items: {source: items}
  promo: {source: promo}
  segment: {source: cust_segment, type: categorical, transform: vocab}
  tenure: {source: cust_tenure_years, impute: median}
  region_orders_2h: {source: region_orders_2h}
""",
    "split/orders2024.yaml": """
tz: Europe/Paris
periods:
  - {name: train, start: 2024-01-01, end: 2024-07-01}
  - {name: valid, start: 2024-07-01, end: 2024-08-01}
  - {name: test, start: 2024-08-01, end: 2024-10-01}
""",
    "model/orders.yaml": """
defaults: [lightgbm, _self_]
params: {learning_rate: 0.1, num_leaves: 7, min_data_in_leaf: 50}
early_stopping_rounds: 100
""",
    # The refunds are logistic by construction: the logistic baseline is the true model family.
    "release/orders.yaml": """
defaults: [default, _self_]
absolute: {auc: {min: 0.7}, logloss: {max: 0.6}, ece: {max: 0.08}}
slices: {bounds: {auc: {min: 0.65}, logloss: {max: 0.7}}, min_rows: 200}
baseline: {margin: -0.02}
infra: {requests: 50}
""",
    "backtest/orders.yaml": """
tz: Europe/Paris
initial: {name: initial, start: 2024-01-01, end: 2024-06-01}
periods:
  - {name: '2024-06', start: 2024-06-01, end: 2024-08-01, prev: initial}
  - {name: '2024-08', start: 2024-08-01, end: 2024-10-01, prev: '2024-06'}
""",
    "inference/orders.yaml": """
defaults: [default, _self_]
window: {start: 2024-08-01, end: 2024-10-01}
""",
    "evaluation/orders.yaml": """
slices: [region, promo]
min_slice_rows: 50
baseline: {features: [basket_value, items, promo]}
""",
}


def _generate(up: Path, n: int = 6000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(500),
            "segment": rng.choice(["gold", "silver", "bronze"], 500),
            "tenure_years": np.round(rng.uniform(0, 10, 500), 1),
        }
    )
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 273 * 86400, n)), unit="s")
    orders = pd.DataFrame(
        {
            "order_id": np.arange(n),
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": rng.choice(["north", "south", "east", "west"], n),
            "basket_value": np.round(rng.gamma(2, 40, n), 2),
            "items": rng.integers(1, 12, n),
            "promo": rng.integers(0, 2, n),
            "customer_id": rng.integers(0, 500, n),
        }
    )
    logit = orders["basket_value"] / 60 - 2.5 + 1.2 * orders["promo"] + (orders["region"] == "west") * 0.8
    refunded = rng.random(n) < 1 / (1 + np.exp(-logit))
    orders["refund_amount"] = np.where(refunded, np.round(orders["basket_value"] * 0.5, 2), 0.0)
    orders.loc[rng.random(n) < 0.05, "refund_amount"] = np.nan  # still open: no label yet
    orders.loc[7, "region"] = "moon"  # one bad row: quarantined, not dropped
    up.mkdir(parents=True, exist_ok=True)
    orders.to_csv(up / "orders.csv", index=False)
    customers.to_parquet(up / "customers.parquet", index=False)
    return orders


def test_pipeline_runs_on_a_yaml_only_dataset(tmp_path):
    p = tmp_path / "orders_project"
    for rel, text in CONF.items():
        (p / "conf" / rel).parent.mkdir(parents=True, exist_ok=True)
        (p / "conf" / rel).write_text(text.lstrip())
    orders = _generate(p / "upstream")
    init_project(
        p,
        {
            "data": "orders",
            "contract": "orders",
            "features": "orders",
            "split": "orders2024",
            "evaluation": "orders",
            "model": "orders",
            "release": "orders",
            "backtest": "orders",
            "inference": "orders",
        },
    )
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
