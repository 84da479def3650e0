"""Generated orders (CSV) and customers (Parquet) for the YAML-only example project:

    python examples/orders/generate.py DEST      # writes DEST/upstream/{orders.csv,customers.parquet}

Three labels on the same orders, one per task: `refund_amount` (> 0: binary, logistic in the
basket value, promo and region), `delivery_hours` (regression, log-normal, with an evening
effect a linear model on the raw columns cannot see) and `satisfaction` (multiclass: low, mid,
high). About 5% of the labels are still open (missing) and one row is out of contract.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def write(dest: Path, n: int = 5000, seed: int = 3) -> pd.DataFrame:
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
    west = (orders["region"] == "west").to_numpy()
    logit = orders["basket_value"] / 60 - 2.5 + 1.2 * orders["promo"] + west * 0.8
    refunded = rng.random(n) < 1 / (1 + np.exp(-logit))
    orders["refund_amount"] = np.where(refunded, np.round(orders["basket_value"] * 0.5, 2), 0.0)
    evening = np.asarray(ts.tz_convert("Europe/Paris").hour >= 18)
    log_hours = 2.5 + 0.06 * orders["items"] + 0.5 * evening + 0.3 * west + rng.normal(0, 0.25, n)
    orders["delivery_hours"] = np.round(np.exp(log_hours), 2)
    gold = orders["customer_id"].map(customers.set_index("customer_id")["segment"]).eq("gold").to_numpy()
    mood = 0.9 * orders["promo"] + 0.8 * gold - 0.7 * evening - 0.01 * orders["basket_value"] + rng.logistic(0, 0.6, n)
    orders["satisfaction"] = pd.cut(mood, [-np.inf, -0.9, 0.2, np.inf], labels=["low", "mid", "high"]).astype(str)
    for column in ("refund_amount", "delivery_hours", "satisfaction"):  # still open: no label yet
        orders.loc[rng.random(n) < 0.05, column] = np.nan
    orders.loc[7, "region"] = "moon"  # one bad row: quarantined, not dropped
    up = Path(dest) / "upstream"
    up.mkdir(parents=True, exist_ok=True)
    orders.to_csv(up / "orders.csv", index=False)
    customers.to_parquet(up / "customers.parquet", index=False)
    return orders


if __name__ == "__main__":
    write(Path(sys.argv[1]))
