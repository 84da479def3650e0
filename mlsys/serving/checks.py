"""`mlsys check-requests`: Pandera on what the service was sent, the request log's inputs, in
one batch, against the serving contract (`mlsys.serving.request.serving_table`: per request, a pydantic model
generated from the same table already refused what it could; this catches what only a batch
shows: missing fractions, a share of rows, rules the request model does not carry).

Personal columns (`pii: true`) are logged as `mlsys.contracts.PII`, not their values, so they
are not checked here (the request model checked each one when it came in); the report lists
them under `pii_skipped`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.config import provenance
from mlsys.contracts import pii_columns, summary, validate_table
from mlsys.data.columns import INPUT
from mlsys.data.sources import failure_cases, parse_times
from mlsys.errors import ContractError
from mlsys.io import require, write_json
from mlsys.serving.log import read_log
from mlsys.serving.request import lookup_specs, request_columns, serving_table


def logged_inputs(path: Path, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """The logged requests' fields (`columns` the log has), and how many log files were cut
    by a crash mid-write (read up to their last whole batch, counted, not fatal)."""
    read = read_log(path, [INPUT + c for c in columns])
    return read.frame.rename(columns=lambda c: c.removeprefix(INPUT)), read.truncated


def validate_inputs(cfg: DictConfig, logged: pd.DataFrame) -> tuple[dict, list[str]]:
    """The serving contract on logged request fields, in one batch: its report, and the
    personal columns not checked (logged masked)."""
    pii = pii_columns(cfg)
    lookups = {name: spec for name, spec in lookup_specs(cfg).items() if name not in pii}
    carried = [c for c in lookups if c in logged and logged[c].notna().any()]
    frame = logged.reindex(columns=[c for c in request_columns(cfg) if c not in pii] + carried)
    frame, failures, _ = parse_times(frame, cfg.data.sources[cfg.data.primary])
    cases = [failures]
    for name in carried:  # JSON numbers of looked-up columns a request carried
        if lookups[name][0] == "numeric":
            numbers = pd.to_numeric(frame[name], errors="coerce").astype("float64")
            bad = frame[name].notna() & numbers.isna()
            cases.append(failure_cases(name, "is_number", frame.loc[bad, name]))
            frame[name] = numbers
    found = [c for c in cases if len(c)]
    extra = pd.concat(found, ignore_index=True) if found else None
    table = serving_table(cfg)
    skipped = sorted(pii & set(table.columns))
    table.columns = {c: spec for c, spec in table.columns.items() if c not in pii}
    return validate_table("requests", table, frame, extra).report, skipped


def run(cfg: DictConfig, root: Path) -> None:
    """paths.request_log -> reports/requests.json (exit 6 if a logged input breaks the contract)."""
    path = require(root / cfg.paths.request_log, "the request log: run `mlsys serve` and send requests")
    columns = [*request_columns(cfg), *lookup_specs(cfg)]
    logged, unreadable = logged_inputs(path, [c for c in columns if c not in pii_columns(cfg)])
    result, skipped = validate_inputs(cfg, logged)
    report = {
        **result,
        "truncated_files": unreadable,
        "pii_skipped": skipped,
        **provenance("check_requests", cfg),
    }
    write_json(root / cfg.paths.requests_report, report)
    notes = [f"  {unreadable} log files were cut mid-write (read up to their last whole batch)"] if unreadable else []
    if skipped:
        notes.append(f"  not checked (pii: logged masked): {', '.join(skipped)}")
    print("\n".join([summary(result), *notes]))
    if result["status"] != "passed":
        raise ContractError(f"logged requests break the serving contract; report in {cfg.paths.requests_report}")
