"""Infra validation: the candidate is served by a sandboxed copy of the real server (the
FastAPI app of `mlsys serve`, under uvicorn, on a free port of 127.0.0.1, in a separate
process, pinned to the candidate bundle, with an online table built from the sample rows)
and must answer every sample request over HTTP, within a timeout, with the batch answer
(the task's numbers: a score, a prediction, or every class's probability).

Child:  python -m mlsys.release.infra BUNDLE ROWS.parquet CONFIG.json   (prints JSON)
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsys.release.gates import Gate, make_gate
from mlsys.stages import REQUEST
from mlsys.tasks import Task

# What the sandboxed server reads of the release stage's config; the rest is fixed for it.
INFRA = (*REQUEST, "data.event_time", "data.prediction_lead", "inference.server", "release.model_name", "paths")


def infra_config(cfg: Any) -> dict[str, Any]:
    """The sandbox's serve config: the candidate's request contract and server limits, always
    the dynamic path, no request log, no token (the sender is the gate itself), no canary,
    shadow or holdout (every sample must be answered by the candidate)."""
    from omegaconf import OmegaConf

    from mlsys.config import select
    from mlsys.config.schema import FeedbackLoops, RequestLogConfig

    out = OmegaConf.to_container(select(cfg, INFRA), resolve=True)
    log = OmegaConf.to_container(OmegaConf.structured(RequestLogConfig(sample_rate=0.0)))
    out["inference"].update(mode="dynamic", request_log=log, canary={"share": 0.0}, shadow=None)  # pinned: no candidate
    out["data"]["feedback_loops"] = OmegaConf.to_container(OmegaConf.structured(FeedbackLoops()))  # no holdout
    out["inference"]["server"]["auth_token_env"] = None
    return out


def _serve(bundle: str, rows_path: str, config_path: str) -> dict[str, Any]:
    import uvicorn
    from omegaconf import OmegaConf

    from mlsys.contracts import PII, pii_columns
    from mlsys.serving.app import create_app
    from mlsys.serving.request import lookup_columns, request_body, request_columns
    from mlsys.serving.store import write_online

    cfg = OmegaConf.create(json.loads(Path(config_path).read_text()))
    rows = pd.read_parquet(rows_path)
    sandbox = Path(rows_path).parent
    for key in ("online", "store", "registry", "request_log"):  # the sandbox's own, never the project's
        cfg.paths[key] = str(sandbox / Path(cfg.paths[key]).name)
    columns, pii = request_columns(cfg), pii_columns(cfg)
    write_online(Path(cfg.paths.online), rows, list(cfg.data.key), lookup_columns(list(rows.columns), cfg), {})
    start = time.perf_counter()
    app = create_app(cfg, sandbox, pinned=Path(bundle))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    ready_ms = (time.perf_counter() - start) * 1e3
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answers, latencies, failures = [], [], []
    for _, row in rows.iterrows():
        body = json.dumps(request_body(row, columns)).encode()
        t = time.perf_counter()
        con.request("POST", "/predict", body=body, headers={"content-type": "application/json"})
        response = con.getresponse()
        answer = json.loads(response.read())
        latencies.append((time.perf_counter() - t) * 1e3)
        answers.append(answer)
        if response.status != 200:  # a refusal echoes the field's input: not a personal one into the report
            for error in answer.get("detail") if isinstance(answer.get("detail"), list) else []:
                if isinstance(error, dict) and error.get("field") in pii:
                    error["input"] = PII
            failures.append(f"{response.status}: {answer}")
    server.should_exit = True
    return {
        "ready_ms": ready_ms,
        "answers": answers,
        "failures": failures[:3],
        "p50_ms": float(np.median(latencies)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "max_ms": float(np.max(latencies)),
    }


def infra_gate(
    bundle: Path, rows: pd.DataFrame, task: Task, expected: np.ndarray, config: dict, timeout: float
) -> Gate:
    """Serve `rows` (built dataset rows) through the sandboxed server; pass if every request
    is answered in time with its batch answer (`expected`: every number, |diff| <= 1e-9)."""

    def failed(reason: str) -> Gate:
        return make_gate("infra", "answers_in_time", None, f"{timeout}s", False, reason)

    with tempfile.TemporaryDirectory() as tmp:
        path, cfg_path = Path(tmp) / "rows.parquet", Path(tmp) / "config.json"
        rows.to_parquet(path, index=False)
        cfg_path.write_text(json.dumps(config, default=str))
        cmd = [sys.executable, "-m", "mlsys.release.infra", str(bundle), str(path), str(cfg_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return failed(f"no answer to {len(rows)} requests within {timeout}s")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return failed(f"the sandboxed server failed (exit {proc.returncode}): {tail[0]}")
    out = json.loads(proc.stdout)
    if out["failures"]:
        return failed(f"the sandboxed server refused requests: {out['failures']}")
    scores = np.asarray([task.numbers(a) for a in out["answers"]], dtype=float)
    expected = task.matrix(np.asarray(expected))
    diff = float(np.max(np.abs(scores - expected))) if scores.shape == expected.shape else float("inf")
    passed = len(scores) == len(rows) and bool(np.isfinite(scores).all()) and diff <= 1e-9
    gate = make_gate(
        "infra",
        "answers_in_time",
        diff,
        "all answered over HTTP, max |served - batch| <= 1e-9",
        passed,
        f"{len(scores)}/{len(rows)} requests answered by a sandboxed `mlsys serve` (ready in "
        f"{out['ready_ms']:.0f} ms; p50 {out['p50_ms']:.2f} ms, max {out['max_ms']:.2f} ms per request); "
        f"max |served - batch| = {diff:.2e}",
    )
    # the release-time figures monitoring compares the served latency with (one client, in turn)
    return {**gate, "latency": {k: out[k] for k in ("p50_ms", "p99_ms", "max_ms")} | {"requests": len(rows)}}


if __name__ == "__main__":
    print(json.dumps(_serve(sys.argv[1], sys.argv[2], sys.argv[3])))
