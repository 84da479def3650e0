"""`mlsys monitor` on a real LocalCluster (2 worker processes): the request log's files read on
the workers, only the window's records brought back, gives monitoring the very records, window
and file counts the local read does (answers over many days and files, refusals between them,
shadow answers, a file cut mid-write)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys.monitoring import _split, window_bounds
from mlsys.monitoring.sliced import read_window
from mlsys.serving.log import Entry, LogSpec, RequestLog, read_log
from mlsys.serving.request import request_body, request_columns
from mlsys.tasks import Task


def _entry(records: list[dict], at: float, shadow_of: str | None = None) -> Entry:
    results = [{"entity": str(i), "score": i / len(records), "path": "dynamic"} for i in range(len(records))]
    features = [(["distance", "hour"], np.array([1.0, 2.0]) + i) for i in range(len(records))]
    return Entry(at, 0.5, "v2" if shadow_of else "v1", "t1", Task("binary"), records, results, features,
                 shadow_of=shadow_of)  # fmt: skip


@pytest.fixture(scope="module")
def log_root(parsed_tables, full_config, tmp_path_factory):
    """300 flights of March (one a day's worth of prediction times, ten files), logged as
    answered in order, a refusal after every second request, a shadow answer after every third;
    the last file cut."""
    root = tmp_path_factory.mktemp("log")
    flights = parsed_tables["flights"]
    march = flights[flights["month"] == 3].sort_values(["day", "hour", "minute"]).iloc[::90].head(300)
    columns = request_columns(full_config)
    records = [request_body(r, columns) for _, r in march.iterrows()]
    log = RequestLog(root, LogSpec.from_config(full_config), 1.0, flush_rows=8, rotate_bytes=20_000)
    for i in range(0, len(records), 3):
        at = 1.7e9 + i
        log.put(_entry(records[i : i + 3], at))
        if i % 6 == 0:
            log.put(Entry(at + 0.5, 0.1, "v1", None, None, [], [], [], 422, "invalid"))
        if i % 9 == 0:
            log.put(_entry(records[i : i + 3], at + 0.6, shadow_of="v1"))
    log.close()
    files = sorted(root.rglob("*.arrows"))
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) - 50])  # a crash mid-write
    return root


@pytest.mark.parametrize("window", [{}, {"since": "2013-03-10", "until": "2013-03-17"}], ids=["last day", "a week"])
def test_the_window_read_on_the_cluster_is_the_local_one(dask_client, full_config, log_root, window):
    m = OmegaConf.merge(full_config.monitoring, window)

    def bounds(times):
        return window_bounds(m, times, full_config.split.tz)

    local = read_log(log_root)
    since, until = bounds(local.frame["prediction_time"].dropna())
    spread, s_since, s_until = read_window(dask_client, log_root, bounds)
    assert (s_since, s_until) == (since, until) and since is not None
    assert (spread.files, spread.truncated) == (local.files, local.truncated) and local.truncated == 1
    assert local.files >= 10 and len(spread.frame) < len(local.frame)  # only what monitoring reads came back
    here, there = (_split(r.frame, r.refused, since, until) for r in (local, spread))
    for a, b in zip(here, there, strict=True):  # window, the window before it, refusals during the window
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)
    window_rows, previous, refused = here
    assert len(window_rows) >= 9 and len(previous) >= 9 and len(refused) >= 1
    shadow = local.shadow[(local.shadow["prediction_time"] >= since) & (local.shadow["prediction_time"] < until)]
    got = spread.shadow[(spread.shadow["prediction_time"] >= since) & (spread.shadow["prediction_time"] < until)]
    pd.testing.assert_frame_equal(shadow.reset_index(drop=True), got.reset_index(drop=True), check_exact=True)
    assert len(shadow) >= 1


def test_an_empty_log_has_no_window_on_the_cluster_either(dask_client, full_config, tmp_path):
    read, since, until = read_window(dask_client, tmp_path, lambda t: window_bounds(full_config.monitoring, t, "UTC"))
    assert (since, until) == (None, None) and read.files == 0 and read.frame.empty
