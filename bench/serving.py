"""Serving overhead against the raw libraries, measured in the same run.

    python bench/serving.py [--requests 3000] [--seconds 10] [--runs 3]

Needs a reproduced workspace (`dvc repro`: a released model, the online table, the store).
1. One record in process: the service's path (online lookup + request merge + event time +
   feature pipeline + Booster.predict, one thread) vs raw Booster.predict on a one-row array,
   both over the same 2,000 records in turn (best of 3 passes; the first pass, every record
   new to the service's caches, is shown too), and raw on one same row each call.
2. Batch: Model.predict_frame (features + predict) vs raw Booster.predict on the same matrix.
3. HTTP on 127.0.0.1, loaded by wrk (`apt-get install wrk`; an in-process Python client
   saturates before the server does): `mlsys serve` (dynamic and hybrid, request log off) vs a
   bare FastAPI endpoint on the same uvicorn that parses the same JSON body and answers a
   constant (the HTTP floor); median of `--runs` alternating runs of p50 and requests/s at
   concurrency 1 and 8.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table
from timing import free_port, post_script, wrk  # bench/timing.py (this folder is on the path of a bench run)

from mlsys.config import SECTIONS, load_sections, read_params, select
from mlsys.serving.app import Service
from mlsys.serving.request import request_body
from mlsys.stages import SERVE

ROOT = Path(__file__).resolve().parents[1]
BARE = """
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
import json, uvicorn, sys
app = FastAPI()
@app.post("/predict")
async def predict(request: Request):
    json.loads(await request.body())
    return JSONResponse({"score": 0.5, "model_version": "bare", "path": "bare"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def per_call(fn, n: int, repeat: int = 1) -> float:
    """Seconds a call of `fn(k)`, k = 0 .. n-1: the best of `repeat` passes."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for k in range(n):
            fn(k)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def _start(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            httpx.post(f"http://127.0.0.1:{port}/predict", json={}, timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{cmd} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="one-record calls timed in process")
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="alternating wrk runs per server")
    args = parser.parse_args()
    os.chdir(ROOT)
    cfg = select(load_sections(read_params(ROOT), tuple(SECTIONS), "params.yaml"), SERVE)
    cfg.inference.request_log.sample_rate = 0.0
    service = Service(cfg, ROOT)
    state = service.state
    served = state.served
    assert served is not None, "no released model: run dvc repro"
    rows = pd.concat([pd.read_parquet(ROOT / cfg.paths.dataset / f"{n}.parquet") for n in ("labelled", "unlabelled")])
    columns = list(state.online.example)
    sample = rows[rows["event_time"] >= rows["event_time"].max() - pd.Timedelta(days=14)].sample(
        2000, random_state=0
    )  # the serving window: online hits
    bodies = [request_body(r, columns) for _, r in sample.iterrows()]
    records = [service.request_type(**b).model_dump(exclude_none=True) for b in bodies]
    booster, pipe = served.model.booster, served.model.pipeline
    table = Table(title="mlsys serving vs raw (same run)")
    for col in ("work", "mlsys", "raw", "ratio"):
        table.add_column(col, justify="right" if col != "work" else "left")

    # 1. one record, in process: both sides take the same records in turn (a new row each call)
    matrix = served.model.pipeline.transform_frame(sample)
    rows_1 = [matrix[j : j + 1].copy() for j in range(len(matrix))]
    service.mode = "dynamic"
    n = len(records)
    t_cold = per_call(lambda k: service.score(state, [records[k]]), n)  # each record seen for the first time
    t_ml = per_call(lambda k: service.score(state, [records[k % n]]), args.requests, 3)
    t_raw = per_call(lambda k: booster.predict(rows_1[k % n], num_threads=1), args.requests, 3)
    t_same = per_call(lambda k: booster.predict(rows_1[0], num_threads=1), args.requests, 3)
    table.add_row(
        f"one record, in process (µs; best of 3 passes over {n:,} records)",
        f"{t_ml * 1e6:.0f}",
        f"{t_raw * 1e6:.0f}",
        f"{t_ml / t_raw:.2f}x",
    )
    table.add_row("  vs raw on one same row each call", "", f"{t_same * 1e6:.0f}", f"{t_ml / t_same:.2f}x")
    table.add_row("  first pass (every record new: cold caches)", f"{t_cold * 1e6:.0f}", "", f"{t_cold / t_raw:.2f}x")
    t_feat = per_call(lambda k: pipe.transform_record(service.features(state, records[k % n], "x")), args.requests, 3)
    table.add_row("  of which lookup + features (µs)", f"{t_feat * 1e6:.0f}", "", "")

    # 2. batch
    full = rows.sample(min(len(rows), 100_000), random_state=1)
    big = pipe.transform_frame(full)
    best_ml = per_call(lambda _: served.model.predict_frame(full), 1, 3)
    best_raw = per_call(lambda _: booster.predict(big), 1, 3)
    table.add_row(
        f"batch, {len(full):,} rows (rows/s)",
        f"{len(full) / best_ml:,.0f}",
        f"{len(full) / best_raw:,.0f}",
        f"{best_raw / best_ml:.2f}x of raw",
    )

    # 3. HTTP, with wrk
    work = Path(tempfile.mkdtemp(prefix="mlsys-servebench-"))
    script = post_script(work, [json.dumps(b, default=str) for b in bodies])
    commands = {
        "bare endpoint (floor)": [sys.executable, "-c", BARE],
        "mlsys dynamic": ["mlsys", "serve", "--host", "127.0.0.1", "inference.mode=dynamic",
                          "inference.request_log.sample_rate=0"],
        "mlsys hybrid (store hits and misses)": ["mlsys", "serve", "--host", "127.0.0.1",
                                                 "inference.request_log.sample_rate=0"],
    }  # fmt: skip
    results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            port = free_port()
            full_cmd = [*cmd, str(port)] if name.startswith("bare") else [*cmd[:4], "--port", str(port), *cmd[4:]]
            proc = _start(full_cmd, port)
            try:
                for concurrency in (1, 8):
                    wrk(f"http://127.0.0.1:{port}", script, concurrency, 2)  # warm up
                    results.setdefault((name, concurrency), []).append(
                        wrk(f"http://127.0.0.1:{port}", script, concurrency, args.seconds)
                    )
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(10)
    for concurrency in (1, 8):
        floor = statistics.median(r[1] for r in results[(next(iter(commands)), concurrency)])
        for name in commands:
            runs = results[(name, concurrency)]
            p50, rps = statistics.median(r[1] for r in runs), statistics.median(r[0] for r in runs)
            extra = "" if name.startswith("bare") else f"+{(p50 - floor) * 1000:.0f} µs p50 over the floor"
            table.add_row(f"HTTP c={concurrency} {name}", f"p50 {p50:.3f} ms", f"{rps:,.0f} req/s", extra)
    shutil.rmtree(work)
    Console().print(table)


if __name__ == "__main__":
    main()
