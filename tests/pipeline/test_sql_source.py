"""A SQL source (`kind: sql`, SQLAlchemy) through every pipeline: the example's orders read
from a real SQLite file by a query, released, served and backtested like the CSV ones; a change in
the table is a new snapshot, no change a no-op; a broken query is a named error."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from mlsys.errors import ExitCode
from tests.conftest import registry_of, run
from tests.examples import orders_project

pytestmark = pytest.mark.slow


def test_orders_from_sqlite_run_end_to_end_and_changes_are_snapshots(tmp_path):
    p = orders_project(tmp_path / "sql", "refund_sql", release="orders_refund")
    orders = pd.read_csv(p / "upstream/orders.csv")
    (p / "upstream/orders.csv").unlink()  # the database is the only source of orders
    with sqlite3.connect(p / "upstream/shop.sqlite") as con:
        orders.to_sql("orders", con, index=False)
    run(["dvc", "repro", "--all-pipelines"], p)  # the main pipeline and the backtest study
    validation = json.loads((p / "reports/validation.json").read_text())["tables"]["orders"]
    assert validation["rows_in"] == len(orders) and validation["rows_quarantined"] == 1  # the 'moon' row
    assert registry_of(p).live() == json.loads((p / "models/bundle/card.json").read_text())["version"]
    infra = next(g for g in json.loads((p / "reports/blessing.json").read_text())["gates"] if g["gate"] == "infra")
    assert infra["passed"] and infra["value"] <= 1e-9  # the sandboxed server answers as the batch, over HTTP
    assert json.loads((p / "metrics/backtest.json").read_text())["periods"] == 2
    assert "upstream unchanged" in run(["mlsys", "snapshot"], p).stdout
    with sqlite3.connect(p / "upstream/shop.sqlite") as con:
        con.execute("UPDATE orders SET basket_value = basket_value + 1 WHERE order_id = 11")
    assert "upstream 'orders' changed" in run(["mlsys", "snapshot"], p).stdout
    snapshot = json.loads((p / "data/raw/snapshot.json").read_text())["sources"]["orders"]
    assert snapshot["rows"] == len(orders) and snapshot["fingerprint"]["origin"].endswith(":: SELECT * FROM orders")


def test_a_failing_query_names_the_source(tmp_path):
    p = orders_project(tmp_path / "sql", "refund_sql", release="orders_refund")
    (p / "upstream/shop.sqlite").write_bytes(b"")  # an empty database: no table
    proc = run(["mlsys", "snapshot"], p, check=False)
    assert proc.returncode == ExitCode.CONTRACT
    assert "data.sources.orders: the query on sqlite:///" in proc.stderr and "no such table: orders" in proc.stderr
