"""`mlsys explain`: one record through the server's own path (request model, derived columns,
online lookups, fitted features), with each feature's contribution to the score. The record is
given as JSON, or found by its entity key in the built dataset (the request fields of that row)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pydantic import ValidationError

from mlsys.errors import ContractError, MissingInputError, UsageError
from mlsys.io import read_parquet


def record_of(cfg: DictConfig, root: Path, given: str | None, key: str | None) -> dict[str, Any]:
    """The record to explain: `given` (JSON text, or @file), or the built row of entity `key`."""
    from mlsys.serving.request import request_body, request_columns
    from mlsys.serving.store import entities

    if (given is None) == (key is None):
        raise UsageError("mlsys explain: give one of --record JSON (or @file.json) and --entity KEY")
    if given is not None:
        text = Path(given[1:]).read_text() if given.startswith("@") else given
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"mlsys explain --record: not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise UsageError("mlsys explain --record: one JSON object (one record)")
        return record
    for path in (cfg.paths.unlabelled, cfg.paths.labelled):
        frame = read_parquet(root / path, "built dataset: run `dvc repro build`")
        hit = [i for i, k in enumerate(entities(frame, list(cfg.data.key))) if k == key]
        if hit:
            return request_body(frame.iloc[hit[0]], request_columns(cfg))
    raise MissingInputError(f"entity {key!r} is in neither {cfg.paths.unlabelled} nor {cfg.paths.labelled}")


def run(cfg: DictConfig, root: Path, given: str | None, key: str | None, version: str | None) -> dict[str, Any]:
    """The explanation of one record by the live model (or `version`), as /explain gives it."""
    from mlsys.serving.app import Service, Unavailable

    record = record_of(cfg, root, given, key)
    service = Service(cfg, root)
    try:
        try:
            parsed = service.adapter.validate_python([record])[0]
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
            raise ContractError(f"mlsys explain: the record breaks the serving contract: {problems}") from exc
        state = service.state
        try:
            return service.explain(state, parsed.model_dump(exclude_none=True), service.served(state, version))
        except Unavailable as exc:
            raise MissingInputError(f"mlsys explain: {exc.detail}") from exc
    finally:
        service.log.close()


def show(result: dict[str, Any]) -> None:
    """The explanation as tables: lookups, then features by |contribution|, then the scores."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"entity {result['entity']}, model {result['model_version']}; online table: {result['online']}")
    if result["looked_up"]:
        table = Table(title="looked up (online table)")
        table.add_column("column")
        table.add_column("value")
        for name, value in result["looked_up"].items():
            table.add_row(name, str(value))
        console.print(table)
    per_class = result.get("classes") or {"": result}
    for cls, part in per_class.items():
        table = Table(title=f"features and contributions{f' to class {cls}' if cls else ''} (raw score)")
        for col in ("feature", "input", "encoded", "contribution"):
            table.add_column(col, justify="right" if col == "contribution" else "left")
        contrib = part["contributions"]
        for f in sorted(result["features"], key=lambda f: -abs(contrib[f["name"]])):
            table.add_row(f["name"], str(f["input"]), str(f["encoded"]), f"{contrib[f['name']]:+.4f}")
        table.add_row("(bias)", "", "", f"{part['bias']:+.4f}")
        table.add_row("= raw score", "", "", f"{part['raw_score']:+.4f}")
        console.print(table)
    if "probability_uncalibrated" in result:
        console.print(f"sigmoid of the raw score: {result['probability_uncalibrated']:.4f}")
    console.print(f"answer: {json.dumps(result['answer'])}" + (" (calibrated)" if result["calibrated"] else ""))
    if "stored_answer" in result:
        console.print(f"batch store answers: {json.dumps(result['stored_answer'])}")
