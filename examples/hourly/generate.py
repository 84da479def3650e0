"""Generated hourly counts at bike stations (one CSV, no other table) for the YAML-only
single-table example:

    python examples/hourly/generate.py DEST      # writes DEST/upstream/counts.csv

The day is a day of the year and an hour (the year, 2011, is not in the file: the config
says it), station ids have leading zeros (007), and `reported_at` is the report's local time
with its UTC offset. The label, a busy hour (30 rentals or more), follows the commute
peaks, the felt temperature and holidays. One row is out of contract (humidity 140).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def write(dest: Path, days: int = 181, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stations = ["007", "012", "104"]
    grid = pd.MultiIndex.from_product([stations, range(1, days + 1), range(24)], names=["station", "doy", "hr"])
    counts = grid.to_frame(index=False)
    n = len(counts)
    days, hours = pd.to_timedelta(counts["doy"] - 1, unit="D"), pd.to_timedelta(counts["hr"], unit="h")
    local = pd.Timestamp("2011-01-01") + days + hours
    aware = local.dt.tz_localize("America/Chicago", ambiguous=True, nonexistent="shift_forward")
    counts["reported_at"] = (aware + pd.Timedelta(minutes=5)).map(lambda t: t.isoformat())  # e.g. ...T08:05:00-06:00
    season = -np.cos(2 * np.pi * (counts["doy"] - 15) / 365)
    counts["temp"] = np.round(12 + 14 * season + 4 * np.sin(np.pi * (counts["hr"] - 9) / 12) + rng.normal(0, 3, n), 1)
    counts["humidity"] = np.round(np.clip(rng.normal(65, 15, n), 5, 100), 0)
    counts["holiday"] = counts["doy"].isin([1, 17, 45, 143, 185]).astype(int)
    weekday = ((counts["doy"] + 4) % 7 < 5).astype(float)  # 1 January 2011 was a Saturday
    commute = np.exp(-((counts["hr"] - 8) ** 2) / 3) + np.exp(-((counts["hr"] - 17.5) ** 2) / 4)
    feels = counts["temp"] - 0.55 * (1 - counts["humidity"] / 100) * (counts["temp"] - 14.5)
    workday = weekday * (1 - counts["holiday"])
    rate = np.exp(1.2 + 1.8 * commute * workday + 0.06 * feels + 0.3 * (counts["station"] == "007"))
    counts["rentals"] = rng.poisson(rate).astype(float)
    counts.loc[rng.random(n) < 0.02, "rentals"] = np.nan  # the counter was down: no label
    counts.loc[11, "humidity"] = 140  # one bad row: quarantined, not dropped
    up = Path(dest) / "upstream"
    up.mkdir(parents=True, exist_ok=True)
    counts.to_csv(up / "counts.csv", index=False)
    return counts


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
