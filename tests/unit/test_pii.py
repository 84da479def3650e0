"""Personal data (`pii: true` in a contract) is never written raw to a report, the request log
or an example; a personal model input is still logged as its encoded feature value."""

from __future__ import annotations

import copy
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys import config
from mlsys.contracts import PII, pii_columns, summary, validate_table
from mlsys.data.columns import EVENT_TIME
from mlsys.errors import ContractError
from mlsys.serving import checks
from mlsys.serving.log import Entry, LogSpec, RequestLog, read_log
from mlsys.serving.request import request_body, request_columns
from mlsys.serving.store import online_reader
from mlsys.tasks import Task
from tests.conftest import REPO

SECRET = "NSECRET1"  # a registration number that must not leak (matches the tailnum regex)


@pytest.fixture
def cfg(full_config):
    """The committed config with the flights' tailnum marked personal."""
    out = copy.deepcopy(full_config)  # the fixture is the session's: never changed
    out.contract.tables.flights.columns.tailnum.pii = True
    return out


def test_pii_is_declared_in_yaml_and_follows_a_joined_column_under_its_joined_name():
    overrides = [
        "contract.tables.flights.columns.tailnum.pii=true",
        "contract.tables.planes.columns.manufacturer.pii=true",  # joined as plane_manufacturer
        "contract.tables.planes.columns.year.pii=true",  # plane_year: never the flights' own year
    ]
    raw = OmegaConf.create(config.compose_yaml(REPO, overrides))
    full = config.load_sections(raw, tuple(config.SECTIONS), "test")
    assert pii_columns(full) == {"tailnum", "plane_manufacturer", "plane_year"}
    assert pii_columns(full.contract) == {"tailnum", "manufacturer", "year"}  # no joins known: by name
    default = config.load_sections(OmegaConf.create(config.compose_yaml(REPO)), tuple(config.SECTIONS), "test")
    assert pii_columns(default) == set()


def test_a_contract_report_masks_a_pii_columns_examples_and_keeps_the_others(cfg, parsed_tables):
    flights = parsed_tables["flights"].head(2000).copy()
    flights.loc[flights.index[:3], "tailnum"] = ["XSECRET1", "XSECRET2", "XSECRET3"]  # break the regex
    flights.loc[flights.index[3:5], "distance"] = -5  # below min
    result = validate_table("flights", cfg.contract.tables.flights, flights)
    failures = {f["column"]: f for f in result.report["row_failures"]}
    assert failures["tailnum"]["rows"] == 3
    assert [e["value"] for e in failures["tailnum"]["examples"]] == [PII] * 3
    assert [e["row"] for e in failures["tailnum"]["examples"]] == [0, 1, 2]  # where to look stays
    assert {e["value"] for e in failures["distance"]["examples"]} == {-5}  # not personal: as found
    text = json.dumps(result.report, default=str) + summary(result.report)
    assert "XSECRET" not in text
    # The quarantine file is data (kept for repair, like data/validated/), not a report: raw.
    assert "XSECRET1" in set(result.quarantined["tailnum"])


def test_a_frame_failure_of_a_pii_column_is_masked_but_a_schema_fact_is_not(cfg, parsed_tables):
    table = copy.deepcopy(cfg.contract.tables.flights)
    table.columns.tailnum.max_missing = 0.0  # a frame-level check on the personal column
    flights = parsed_tables["flights"].head(500).copy()
    flights.loc[flights.index[:2], "tailnum"] = None
    report = validate_table("flights", table, flights).report
    cases = {f["check"]: f["failure_case"] for f in report["frame_failures"] if f["column"] == "tailnum"}
    assert cases == {"max_missing(max_fraction=0.0)": PII}, report["frame_failures"]
    report = validate_table("flights", table, flights.assign(tailnum=1)).report  # wrong dtype
    dtype = [f["failure_case"] for f in report["frame_failures"] if f["check"].startswith("dtype(")]
    assert dtype and PII not in dtype, report["frame_failures"]  # the dtype found: a fact, not data


def _logged(cfg, root, pii: bool) -> pd.Series:
    """One logged record whose tailnum is the secret, its feature the vocabulary code 7."""
    if not pii:
        cfg = copy.deepcopy(cfg)
        cfg.contract.tables.flights.columns.tailnum.pii = False
    log = RequestLog(root, LogSpec.from_config(cfg), 1.0)
    record = {"tailnum": SECRET, "distance": 1089}
    result = {"entity": "e", "score": 0.25, "path": "dynamic"}
    features = (["tailnum", "distance"], np.array([7.0, 1089.0]))  # tailnum's vocabulary code: 7
    assert log.put(Entry(0.0, 1.0, "v1", None, Task("binary"), [record], [result], [features]))
    log.close()
    assert record["tailnum"] == SECRET  # the caller's record is not changed under it
    return read_log(root).frame.iloc[0]


def test_the_request_log_masks_a_pii_field_and_keeps_its_encoded_feature(cfg, tmp_path):
    row = _logged(cfg, tmp_path / "log", pii=True)
    assert row["input.tailnum"] == PII and row["input.distance"] == 1089
    assert row["feature.tailnum"] == 7.0 and row["feature.distance"] == 1089.0  # skew checks still see the input
    assert not any(SECRET.encode() in f.read_bytes() for f in (tmp_path / "log").rglob("*.arrows"))
    assert _logged(cfg, tmp_path / "raw", pii=False)["input.tailnum"] == SECRET  # without pii: as sent


def test_the_service_masks_the_contracts_pii_columns_in_its_log(cfg, tmp_path):
    from mlsys.serving.app import Service

    service = Service(cfg, tmp_path)  # no model yet: enough to see how its log was set up
    service.log.close()
    assert service.log.spec.pii == {"tailnum"}


def _log_requests(cfg, root, flights: pd.DataFrame) -> None:
    """Requests as a caller sends them, logged by the service's writer with cfg's pii."""
    log = RequestLog(root / cfg.paths.request_log, LogSpec.from_config(cfg), 1.0)
    columns = request_columns(cfg)
    records = [request_body(row, columns) for _, row in flights.iterrows()]
    results = [{"entity": str(i), "score": 0.5, "path": "static"} for i in range(len(records))]
    log.put(Entry(0.0, 1.0, "v1", None, Task("binary"), records, results, [None] * len(records)))
    log.close()


def test_check_requests_skips_masked_pii_columns_and_says_so(cfg, full_config, parsed_tables, tmp_path, capsys):
    flights = parsed_tables["flights"].dropna(subset=["tailnum"]).head(50)
    _log_requests(cfg, tmp_path, flights)
    assert (read_log(tmp_path / cfg.paths.request_log).frame["input.tailnum"] == PII).all()
    checks.run(cfg, tmp_path)
    report = json.loads((tmp_path / cfg.paths.requests_report).read_text())
    assert report["status"] == "passed" and report["pii_skipped"] == ["tailnum"]
    assert "tailnum" not in report["contract"]["columns"]
    assert "not checked (pii" in capsys.readouterr().out
    with pytest.raises(ContractError):  # the same masked log, checked as if tailnum were not personal
        checks.run(full_config, tmp_path)


def test_the_online_tables_example_request_masks_pii(cfg, parsed_tables, tmp_path):
    from pipelines import online

    flights = parsed_tables["flights"]
    rows = flights[(flights["month"] == 11) & flights["tailnum"].notna()].head(20)
    rows = rows.assign(**{EVENT_TIME: rows["time_hour"]})  # inside inference.window (Oct-Dec 2013)
    for key in ("labelled", "unlabelled"):
        (tmp_path / cfg.paths[key]).parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(tmp_path / cfg.paths.labelled)
    rows.head(0).to_parquet(tmp_path / cfg.paths.unlabelled)
    online.run(cfg, tmp_path)
    _, _, example, _ = online_reader(tmp_path / cfg.paths.online)
    first = rows.sort_values(EVENT_TIME, kind="stable").iloc[0]
    assert example["tailnum"] == PII
    assert example["carrier"] == first["carrier"] and example["distance"] == first["distance"]
    with sqlite3.connect(tmp_path / cfg.paths.online) as con:  # the meta row holds no raw value
        meta = dict(con.execute("SELECT name, value FROM meta"))
    assert first["tailnum"] not in meta["example"]
