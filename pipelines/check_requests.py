"""Pandera on what the service was sent: the request log's inputs, in one batch, against the
serving form of the primary table's contract (per request, a generated pydantic model
already refused what it could; this catches what only a batch shows: missing fractions,
row-level rules the request model does not carry)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.contracts import summary, validate_table, without_column
from mlsys.data.sources import parse_times
from mlsys.errors import ContractError
from mlsys.io import require, write_json
from mlsys.serving.request import request_columns
from mlsys.stages import provenance


def serving_contract(cfg: DictConfig) -> DictConfig:
    """The primary table's contract without the columns known only after the outcome."""
    table = cfg.contract.tables[cfg.data.primary]
    for column in [c for c in table.columns if c not in request_columns(cfg)]:
        table = without_column(table, column)
    table.unique = []  # the same flight may well be asked about twice
    return table


def run(cfg: DictConfig, root: Path) -> None:
    """paths.request_log -> reports/requests.json (exit 6 if a logged input breaks the contract)."""
    path = require(root / cfg.paths.request_log, "the request log: run `mlsys serve` and send requests")
    inputs = [json.loads(line)["input"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    frame = pd.DataFrame(inputs, columns=request_columns(cfg))
    source = cfg.data.sources[cfg.data.primary]
    frame, _ = parse_times(frame, source)
    result = validate_table("requests", serving_contract(cfg), frame)
    write_json(root / cfg.paths.reports / "requests.json", {**result.report, **provenance("check_requests", cfg)})
    print(summary(result.report))
    if result.report["status"] != "passed":
        raise ContractError(f"logged requests break the serving contract; report in {cfg.paths.reports}/requests.json")
