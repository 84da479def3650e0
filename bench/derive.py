"""Derived columns (`data.derived`) against the same arithmetic written by hand, same run.

    python bench/derive.py [--rows 1000000] [--requests 100000]

1. Whole columns (validate stage): `Deriver.frame` vs pandas doing the same arithmetic on the
   same frame (the hourly example's `feels` and `night`).
2. One request (server): `Deriver.record` vs a Python function computing both values.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table
from timing import best  # bench/timing.py (this folder is on the path of a bench run)

from mlsys.config.schema import DataConfig
from mlsys.data.derive import Deriver

DERIVED = {
    "feels": {"expr": "temp - 0.55 * (1 - humidity / 100) * (temp - 14.5)"},
    "night": {"expr": "(hr < 6) | (hr >= 22)", "dtype": "bool"},
}


def by_hand_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["feels"] = frame.temp - 0.55 * (1 - frame.humidity / 100) * (frame.temp - 14.5)
    out["night"] = (frame.hr < 6) | (frame.hr >= 22)
    return out


def by_hand_record(record: dict) -> dict:
    t, h, hr = record["temp"], record["humidity"], record["hr"]
    return {**record, "feels": t - 0.55 * (1 - h / 100) * (t - 14.5), "night": hr < 6 or hr >= 22}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "temp": rng.normal(15, 10, args.rows),
            "humidity": rng.uniform(0, 100, args.rows),
            "hr": rng.integers(0, 24, args.rows),
        }
    )
    deriver = Deriver(OmegaConf.merge(OmegaConf.structured(DataConfig), {"derived": DERIVED}).derived)
    np.testing.assert_allclose(deriver.frame(frame)["feels"], by_hand_frame(frame)["feels"])
    records = frame.head(args.requests).to_dict("records")
    col = best(lambda: deriver.frame(frame)), best(lambda: by_hand_frame(frame))
    one = best(lambda: [deriver.record(r) for r in records]), best(lambda: [by_hand_record(r) for r in records])
    table = Table(title="derived columns (2: feels, night)")
    for column in ("path", "mlsys", "by hand", "ratio"):
        table.add_column(column)
    table.add_row(
        f"{args.rows:,} rows, whole columns",
        f"{col[0] * 1e3:.1f} ms",
        f"{col[1] * 1e3:.1f} ms",
        f"{col[0] / col[1]:.2f}x",
    )
    per = [t / len(records) * 1e6 for t in one]
    table.add_row("one request", f"{per[0]:.2f} µs", f"{per[1]:.2f} µs", f"{per[0] / per[1]:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
