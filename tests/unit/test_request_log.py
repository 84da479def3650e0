"""The request log: Arrow IPC streams written off the request path; nothing lost on a
graceful stop, at most one flush on kill -9; bounded (drops counted); rotated by day, size
and feature set; each row has its prediction time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys.data.columns import EVENT_TIME
from mlsys.serving.log import Entry, LogSpec, RequestLog, read_log
from mlsys.serving.request import request_body, request_columns
from mlsys.tasks import Task
from tests.conftest import ENV, REPO

DAY = 86400.0


@pytest.fixture(scope="module")
def requests(parsed_tables, full_config) -> tuple[list[dict], pd.Series]:
    """200 flights as callers send them, and each one's event time (the validate stage's)."""
    from mlsys.data.build import event_times

    flights = parsed_tables["flights"].head(200)
    columns = request_columns(full_config)
    return [request_body(r, columns) for _, r in flights.iterrows()], event_times(flights, full_config.data.event_time)[
        0
    ]


def _entry(records: list[dict], at: float = 1.7e9, names: tuple = ("distance", "hour")) -> Entry:
    results = [{"entity": str(i), "score": i / len(records), "path": "dynamic"} for i in range(len(records))]
    features = [(list(names), np.arange(len(names)) + i) for i in range(len(records))]
    return Entry(at, 0.5, "v1", "t1", Task("binary"), records, results, features)


def test_a_graceful_stop_loses_nothing_and_rows_carry_their_prediction_time(full_config, requests, tmp_path):
    records, events = requests
    log = RequestLog(tmp_path, LogSpec.from_config(full_config), 1.0, flush_rows=64)
    for i in range(0, 200, 5):  # 40 requests of 5 records: several flushes
        assert log.put(_entry(records[i : i + 5]))
    log.close()
    read = read_log(tmp_path)
    frame = read.frame
    assert len(frame) == 200 and read.truncated == 0
    lead = pd.Timedelta(full_config.data.prediction_lead)
    assert (frame["prediction_time"] == (events - lead).reset_index(drop=True)).all()
    assert frame["input.carrier"].tolist() == [r["carrier"] for r in records]  # the request, as sent
    assert frame["input.flight"].dtype == "int64"  # read back with its declared dtype
    assert frame["answer.score"].iloc[7] == pytest.approx(2 / 5) and frame["feature.hour"].iloc[7] == 3.0
    assert set(frame["model_version"]) == {"v1"} and set(frame["online_version"]) == {"t1"}


def test_files_rotate_by_day_size_and_feature_set(full_config, requests, tmp_path):
    records = requests[0][:10]
    log = RequestLog(tmp_path, LogSpec.from_config(full_config), 1.0, flush_rows=1, rotate_bytes=1)
    log.put(_entry(records[:5], at=1.7e9))
    log.put(_entry(records[5:], at=1.7e9 + DAY))  # the next UTC day
    log.put(_entry(records[:5], at=1.7e9 + DAY, names=("distance", "dep_hour")))  # a new model's features
    log.close()
    days = sorted(p.name for p in tmp_path.iterdir())
    assert len(days) == 2 and len(list(tmp_path.rglob("*.arrows"))) == 3
    frame = read_log(tmp_path).frame
    assert len(frame) == 15 and frame["feature.dep_hour"].isna().sum() == 10  # other feature sets: NaN


def test_refused_requests_are_rows_of_their_own_beside_the_answers(full_config, requests, tmp_path):
    """A refusal (status, error kind, no records) interleaved with answers: one file each, not
    a new file per switch; the answers read back with status 200."""
    records = requests[0][:10]
    log = RequestLog(tmp_path, LogSpec.from_config(full_config), 1.0, flush_rows=1)
    for i in range(5):
        log.put(_entry(records[2 * i : 2 * i + 2], at=1.7e9 + i))
        log.put(Entry(1.7e9 + i + 0.5, 0.1, "v1", None, None, [], [], [], 422, "invalid"))
    log.put(Entry(1.7e9 + 6, 0.1, None, None, None, [], [], [], 503, "not_ready"))
    log.close()
    assert len(list(tmp_path.rglob("*.arrows"))) == 2
    read = read_log(tmp_path)
    frame, refused = read.frame, read.refused
    assert len(frame) == 10 and (frame["status"] == 200).all() and frame["entity"].notna().all()
    assert sorted(refused["error"]) == ["invalid"] * 5 + ["not_ready"] and refused["status"].tolist().count(422) == 5
    only = read_log(tmp_path, ["input.carrier"])  # a column selection keeps the split
    assert list(only.frame.columns) == ["input.carrier"] and len(only.frame) == 10 and len(only.refused) == 6


def test_a_full_queue_drops_requests_and_counts_them(full_config, requests, tmp_path):
    records = requests[0][:2]
    log = RequestLog(tmp_path, LogSpec.from_config(full_config), 1.0, max_queue=1)
    queued = sum(log.put(_entry(records)) for _ in range(20_000))
    log.close()
    dropped = log.dropped._value.get()
    assert dropped > 0 and queued + dropped == 20_000
    assert len(read_log(tmp_path).frame) == 2 * queued == log.written._value.get()  # whatever was queued is written


def test_a_cut_file_is_read_up_to_its_last_whole_batch(full_config, requests, tmp_path):
    records = requests[0]
    log = RequestLog(tmp_path, LogSpec.from_config(full_config), 1.0, flush_rows=50)
    for i in range(0, 200, 50):
        log.put(_entry(records[i : i + 50]))
    log.close()
    (path,) = tmp_path.rglob("*.arrows")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # a crash mid-write: the last batch is cut
    read = read_log(tmp_path)
    assert read.truncated == 1 and len(read.frame) == 150


def test_kill_9_loses_at_most_the_last_flush(tmp_path):
    """A writer killed while records are queued: every batch flushed before is readable."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from tests.conftest import REPO
        from mlsys.config import load_sections
        from omegaconf import OmegaConf
        from tests.unit.test_request_log import _entry
        from mlsys.serving.log import LogSpec, RequestLog
        raw = OmegaConf.load(REPO / "params.yaml")
        log = RequestLog({str(tmp_path)!r}, LogSpec.from_config(load_sections(raw, tuple(raw), "p")), 1.0,
                         flush_seconds=0.1)
        for _ in range(30):
            log.put(_entry([{{"carrier": "UA"}}] * 10))
        time.sleep(1.0)  # flushed
        print("flushed", flush=True)
        while True:
            log.put(_entry([{{"carrier": "AA"}}] * 10))
            time.sleep(0.001)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "flushed"
    time.sleep(0.35)  # a few more flushes, then a kill mid-stream
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    frame = read_log(tmp_path).frame
    assert (frame["input.carrier"] == "UA").sum() == 300  # every record flushed before is there
    assert (frame["input.carrier"] == "AA").sum() > 0  # and the batches after it, up to the kill
    assert EVENT_TIME not in frame  # a log row is a request, not a built row


def _edges(spec, real: object) -> list[object]:
    """Values a caller might send for a contract column: on and past its bounds, in and out of
    its set, its real value with a character before or after it (a pattern's match inside a
    longer text), a long text, nothing, a number as text, a boolean."""
    values: list[object] = [None, "5", True, real]
    for bound in (spec.min, spec.max):
        if bound is not None:
            values += [int(bound), int(bound) - 1, int(bound) + 1, bound - 0.5, bound + 0.5]
    if spec.isin is not None:
        values += [*spec.isin, *(f"x{v}" for v in spec.isin), *(str(v).lower() for v in spec.isin)]
    if str(spec.dtype).startswith("datetime"):  # other spellings of a time, and none
        values += ["2013-01-01T10:00:00", "2013-01-01 10:00:00+05:00", "2013-01-01", "2013-01-01T10:00:00.5Z"]
        values += ["20130101T100000Z", "2013-13-01T10:00:00Z", "yesterday", "1357034400", "", 1357034400]
        values += ["2013-01-01T24:00:00Z", "2013-02-30", "2013-1-1", " 2013-01-01", "2013-01-01T10:00:00Z\n"]
    elif isinstance(real, str):
        values += [f"{a}{real}{b}" for a, b in (("z", ""), ("", "z"), ("", "\n"), (" ", ""), ("N", "1"))]
        values.append(real * 100)
    return values


def _typed(value: object, dtype: str) -> bool:
    """`value` has the column's type (or is nothing): the batch path can hold it as it is."""
    if value is None:
        return True
    if dtype.startswith(("int", "Int")):
        return type(value) is int
    if dtype.startswith("float"):
        return type(value) in (int, float)
    return (dtype == "str" or dtype.startswith("datetime")) and type(value) is str


def test_the_server_and_check_requests_hold_a_value_to_the_same_contract(full_config, requests, tmp_path):
    """A value of the right type that the request model accepts passes the serving contract
    (`mlsys check-requests`, on the logged requests), and one it refuses is quarantined there:
    one contract, whichever path a value takes. Each column of a real request is changed, one
    at a time, to values around its rules."""
    from mlsys.serving.checks import logged_inputs, validate_inputs
    from mlsys.serving.request import lookup_specs, request_model, serving_table

    table, model = serving_table(full_config), request_model(full_config)
    kinds = {name: kind for name, (kind, _) in lookup_specs(full_config).items()}
    base = requests[0][0]
    real = {"wx_temp": 40.0, "plane_manufacturer": "BOEING"}  # looked up: not in the request
    taken, refused = [], []
    for column, spec in table.columns.items():
        dtype = "float64" if kinds.get(column) == "numeric" else str(spec.dtype or "str")
        for value in _edges(spec, base.get(column, real.get(column, 1.0))):
            record = {k: v for k, v in {**base, column: value}.items() if v is not None}
            try:
                taken.append(model.model_validate(record).model_dump(exclude_none=True))
            except ValueError:
                if _typed(value, dtype) and not spec.get("pii", False):  # masked in the log: not checked there
                    refused.append(record)
    assert taken and refused
    columns = [*request_columns(full_config), *lookup_specs(full_config)]
    for records, folder in ((taken, tmp_path / "taken"), (taken + refused, tmp_path / "all")):
        log = RequestLog(folder, LogSpec.from_config(full_config), 1.0)
        log.put(_entry(records))
        log.close()
        logged, _ = logged_inputs(folder, columns)
        report, _ = validate_inputs(full_config, logged)
        assert len(logged) == len(records)
        assert report["rows_quarantined"] == len(records) - len(taken), report["row_failures"]


TIMES = ["2013-01-01T10:00:00Z", "2013-01-01T10:00:00", "2013-01-01 10:00:00+05:00", "2013-01-01", "2013-1-1",
         "2013-11-03T01:30:00", "2013-03-10T02:30:00", "2013-03-10T02:30:00-05:00", "20130101T100000",
         "2013-01-01T10:00:00.123456", "2013-02-30", "2013-01-01T24:00:00", "1357034400", "5", "", "soon",
         "03/11/2013 01:30", "31/12/2013 23:59", "2013-01-01T10:00:00Z\n", "2013-W01-1"]  # fmt: skip


@pytest.mark.parametrize(("fmt", "tz"), [("ISO8601", "America/New_York"), ("ISO8601", "UTC"),
                                         ("%d/%m/%Y %H:%M", "America/New_York")])  # fmt: skip
def test_the_server_reads_a_time_as_the_validate_stage_does(fmt, tz):
    """The same text is the same instant (a local time in the source's zone; a repeated hour
    its first, a skipped one moved forward), or refused where validate quarantines it; where
    the source writes another format, plain ISO 8601 text too, read as ISO."""
    from mlsys.data.sources import parse_times
    from mlsys.serving.request import _PLAIN_ISO, _time_reader

    texts = pd.DataFrame({"t": TIMES}, dtype="str")
    spec = OmegaConf.create({"time_columns": {"t": {"format": fmt, "tz": tz}}})
    batch = parse_times(texts, spec)[0]["t"]
    as_iso = parse_times(texts, OmegaConf.merge(spec, {"time_columns": {"t": {"format": "ISO8601"}}}))[0]["t"]
    plain = pd.Series([_PLAIN_ISO.fullmatch(t) is not None for t in TIMES])
    expected_all = batch.where(batch.notna() | ~plain, as_iso)
    read = _time_reader(fmt, tz)
    for i, text in enumerate(TIMES):
        try:
            served = pd.Timestamp(read(text))
        except ValueError:
            served = pd.NaT
        expected = expected_all[i]
        assert served is expected or served == expected, (text, served, expected)


@pytest.mark.parametrize("text", ["NA", "null", "N/A", "None", ""])
def test_a_text_the_csv_reads_as_missing_is_missing_to_the_server_too(full_config, requests, tmp_path, text):
    """The flights CSV writes a missing value as `NA` (pandas reads its own spellings as
    missing): validate quarantines such a carrier (it may not be missing) and takes such a
    tailnum as missing; the server refuses the carrier and takes the tailnum as missing, not
    the text 'NA'. A Parquet source keeps the text as it is."""
    from mlsys.data.sliced import validate
    from mlsys.data.sources import read_source
    from mlsys.serving.request import request_model

    base = requests[0][0]
    rows = pd.DataFrame([{**base, "carrier": text}, {**base, "tailnum": text, "flight": base["flight"] + 1}])
    rows.to_csv(tmp_path / "f.csv", index=False)
    src = OmegaConf.merge(full_config.data.sources.flights, {"kind": "csv", "path": str(tmp_path / "f.csv")})
    raw = read_source("flights", src, tmp_path, ["carrier", "tailnum", "origin", "dest"])[0]
    cfg = OmegaConf.merge(full_config, {"contract": {"tables": {"flights": {"min_rows": None}}}})
    result, _ = validate("flights", raw, [], cfg)
    assert list(result.quarantined["_row"]) == [0] and result.passed["tailnum"].isna().all()
    model = request_model(full_config)
    with pytest.raises(ValueError, match="carrier"):
        model.model_validate({**base, "carrier": text})
    assert model.model_validate({**base, "tailnum": text}).tailnum is None
    parquet = OmegaConf.merge(full_config, {"data": {"sources": {"flights": {"kind": "parquet", "path": "f.parquet"}}}})
    kept = request_model(parquet).model_validate({**base, "tailnum": "NA"}) if text == "NA" else None
    assert kept is None or kept.tailnum == "NA"


def test_the_online_table_holds_the_looked_up_columns_only(full_config, built):
    """A column upstream added to the flights file passes validate (contracts are not strict)
    and reaches the built dataset; it is not a looked-up column, so not in the online table."""
    from mlsys.serving.request import lookup_columns

    columns = [*built.labelled.columns, "New Col"]
    looked = lookup_columns(columns, full_config)
    assert "New Col" not in looked and {"wx_temp", "plane_seats", "origin_dep_delay_3h"} <= set(looked)
    assert not set(looked) & set(full_config.contract.tables.flights.columns)


@pytest.mark.parametrize("text", ["0001-01-01T00:00+05:00", "9999-12-31T23:00-05:00", "9999-12-31T23:00", "2013-02-30"])
def test_a_time_out_of_range_is_refused_not_a_crash(text):
    """Past the calendar in the source's zone: a ValueError (the server's 422), never an
    OverflowError (its 500)."""
    from mlsys.serving.request import _time_reader

    with pytest.raises(ValueError, match="not a time"):
        _time_reader("ISO8601", "America/New_York")(text)
