"""What the request log, or a shadow model, costs `mlsys serve`, measured with wrk (a real
load generator).

    python bench/request_log.py [--seconds 20] [--runs 3] [--variant log|shadow]

Needs a reproduced workspace (`dvc repro`) and `wrk` (apt-get install wrk). The dynamic path
(every record computed: online lookup + features + Booster.predict), one record per request,
bodies cycled from 500 rows of the serving window. For concurrency 1 and 8, off and on,
alternating, `--runs` times each; prints the median requests/s and p50 of each and the ratio
on/off. `log`: the request log off (`sample_rate=0`) and on (`1.0`; target >= 0.90).
`shadow`: the log on in both, without and with `inference.shadow` set to the live version (a
model as large as the live one, scored again after each answer; target: p50 within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from timing import free_port, post_script, wrk

from mlsys.serving.log import read_log

ROOT = Path(__file__).resolve().parents[1]


def serve(log: Path, *overrides: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = ["mlsys", "serve", "--host", "127.0.0.1", "--port", str(port), "inference.mode=dynamic"]
    cmd += [f"paths.request_log={log}", *overrides]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mlsys serve did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variant", choices=("log", "shadow"), default="log")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="mlsys-logbench-"))
    proc, url = serve(work / "probe", "inference.request_log.sample_rate=0.0")
    try:
        from mlsys.config import SECTIONS, load_sections, read_params, select
        from mlsys.serving.request import request_body
        from mlsys.stages import SERVE

        cfg = select(load_sections(read_params(ROOT), tuple(SECTIONS), "params.yaml"), SERVE)
        import pandas as pd

        rows = pd.read_parquet(ROOT / cfg.paths.dataset / "labelled.parquet").tail(500)
        columns = list(httpx.get(f"{url}/model").json()["example_request"])
        live = httpx.get(f"{url}/model").json()["version"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    script = post_script(work, [json.dumps(request_body(r, columns), default=str) for _, r in rows.iterrows()])
    logged = "inference.request_log.sample_rate=1.0"
    variants = {
        "log": {"off": ["inference.request_log.sample_rate=0.0"], "on": [logged]},
        "shadow": {"off": [logged], "on": [logged, f"inference.shadow={live}"]},
    }[args.variant]
    results: dict[tuple[int, str], list[tuple[float, float, int]]] = {}
    missing = 0
    for connections in (1, 8):
        for run in range(args.runs):
            for mode, overrides in variants.items():
                log = work / f"log-{connections}-{run}-{mode}"
                proc, url = serve(log, *overrides)
                try:
                    sent = wrk(url, script, connections, 2)[2]  # warm up
                    result = wrk(url, script, connections, args.seconds)
                    results.setdefault((connections, mode), []).append(result)
                finally:
                    proc.send_signal(signal.SIGTERM)  # a graceful stop: the log drains
                    proc.wait()
                if logged in overrides:
                    missing += max(sent + result[2] - len(read_log(log).frame), 0)  # wrk leaves some uncounted
    what = {"log": "request log", "shadow": f"shadow {live}"}[args.variant]
    table = Table(title=f"{what} on vs off: mlsys serve, dynamic, wrk {args.runs} x {args.seconds}s alternating")
    for column in ("concurrency", "off req/s", "on req/s", "on/off", "p50 off", "p50 on", "p50 on/off"):
        table.add_column(column, justify="right")
    for connections in (1, 8):
        off, on = results[(connections, "off")], results[(connections, "on")]
        rps_off, rps_on = statistics.median(r[0] for r in off), statistics.median(r[0] for r in on)
        p50_off, p50_on = statistics.median(r[1] for r in off), statistics.median(r[1] for r in on)
        table.add_row(
            str(connections), f"{rps_off:,.0f}", f"{rps_on:,.0f}", f"{rps_on / rps_off:.2f}",
            f"{p50_off:.2f} ms", f"{p50_on:.2f} ms", f"{p50_on / p50_off:.2f}",
        )  # fmt: skip
    Console().print(table)
    print(f"requests wrk counted as answered but not in the log, every logged run: {missing} ({os.cpu_count()} cores)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
