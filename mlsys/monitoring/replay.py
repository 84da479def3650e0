"""`mlsys replay`: send a window of the built dataset (default the serving window) to a
running server, in prediction-time order, as callers would (the request fields only; the
server looks the rest up). With the labels the snapshot holds, `mlsys monitor` then judges
the replayed traffic in its own time (prediction time, not the wall clock)."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

from omegaconf import DictConfig

from mlsys.data.columns import PREDICTION_TIME
from mlsys.errors import ContractError, MissingInputError, UsageError
from mlsys.io import read_parquet


def run(cfg: DictConfig, root: Path, url: str, batch: int, limit: int | None) -> dict[str, int]:
    """POST the window's rows in prediction-time order, `batch` records a request; returns
    what the server answered (records answered, records refused: a 422 request's records are
    sent again one by one). A refused record exits 6 (the contract passed its row, the server
    did not); a server that cannot answer (not there, 401, 503) exits 5."""
    from rich.progress import Progress

    from mlsys.serving.batch import serving_rows
    from mlsys.serving.request import request_body, request_columns

    labelled = read_parquet(root / cfg.paths.labelled, "built dataset: run build")
    unlabelled = read_parquet(root / cfg.paths.unlabelled, "built dataset: run build")
    rows = serving_rows(labelled, unlabelled, cfg.inference.window, cfg.split.tz)
    rows = rows.sort_values(PREDICTION_TIME, kind="stable").head(limit)
    columns = request_columns(cfg)
    bodies = [request_body(r, columns) for r in rows.to_dict("records")]
    parts = urlsplit(url)
    con = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)

    def post(records: list[dict]) -> tuple[int, dict]:
        try:
            con.request("POST", "/predict", json.dumps(records, default=str), {"content-type": "application/json"})
            response = con.getresponse()
            payload = json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException) as exc:
            raise MissingInputError(f"replay: no answer from {url} ({exc}): is `mlsys serve` running?") from exc
        if response.status == 413:
            raise UsageError(f"replay: {url} takes fewer records a request (413: {payload}); lower --batch")
        if response.status not in (200, 422):
            raise MissingInputError(f"replay: {url} answered {response.status}: {payload}")
        return response.status, payload

    answered = refused = 0
    first: dict | None = None
    start = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task("replay", total=len(bodies))
        for i in range(0, len(bodies), batch):
            chunk = bodies[i : i + batch]
            status, payload = post(chunk)
            # a refused request: its records one by one, so one bad record costs only itself
            answers = [(status, payload)] if status == 200 or len(chunk) == 1 else [post([r]) for r in chunk]
            for status, payload in answers:
                if status == 200:
                    answered += sum("error" not in p for p in payload["predictions"])
                else:
                    refused, first = refused + 1, payload if first is None else first
            progress.advance(task, len(chunk))
    con.close()
    seconds = time.perf_counter() - start
    print(f"replay: {len(bodies):,} records to {url} in {seconds:.1f}s: {answered:,} answered, {refused:,} refused")
    if refused:  # rows the contract passed, refused by the server's request model: they disagree
        raise ContractError(f"replay: the server refused {refused:,} of {len(bodies):,} records; the first: {first}")
    return {"records": len(bodies), "answered": answered, "refused": refused}
