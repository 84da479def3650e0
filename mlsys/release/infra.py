"""Infra validation: the candidate answers sample requests in a separate process, loaded by
the same `load_model` the online server uses, within a timeout.

Child:  python -m mlsys.release.infra BUNDLE REQUESTS.parquet   (prints JSON to stdout)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsys.release.gates import Gate, make_gate


def _serve(bundle: str, requests: str) -> dict[str, Any]:
    from mlsys.model import load_model

    start = time.perf_counter()
    model = load_model(Path(bundle))
    load_ms = (time.perf_counter() - start) * 1e3
    records = pd.read_parquet(requests).to_dict("records")
    scores, latencies = [], []
    for record in records:
        t = time.perf_counter()
        scores.append(model.predict_record(record))
        latencies.append((time.perf_counter() - t) * 1e3)
    return {
        "version": model.version,
        "load_ms": load_ms,
        "scores": scores,
        "p50_ms": float(np.median(latencies)),
        "max_ms": float(np.max(latencies)),
    }


def infra_gate(bundle: Path, requests: pd.DataFrame, expected: np.ndarray, timeout: float) -> Gate:
    """Run the child on `requests`; pass if it answers all, in time, with the batch scores."""

    def failed(reason: str) -> Gate:
        return make_gate("infra", "answers_in_time", None, f"{timeout}s", False, reason)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.parquet"
        requests.to_parquet(path, index=False)
        cmd = [sys.executable, "-m", "mlsys.release.infra", str(bundle), str(path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return failed(f"no answer to {len(requests)} requests within {timeout}s")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return failed(f"the serving process failed (exit {proc.returncode}): {tail[0]}")
    out = json.loads(proc.stdout)
    scores = np.asarray(out["scores"], dtype=float)
    diff = float(np.max(np.abs(scores - expected))) if len(scores) == len(expected) else float("inf")
    passed = len(scores) == len(requests) and bool(np.isfinite(scores).all()) and diff <= 1e-9
    return make_gate(
        "infra",
        "answers_in_time",
        diff,
        "all answered, max |single - batch| <= 1e-9",
        passed,
        f"{len(scores)}/{len(requests)} requests answered in a separate process; load "
        f"{out['load_ms']:.0f} ms, p50 {out['p50_ms']:.3f} ms, max {out['max_ms']:.3f} ms; "
        f"max |single - batch| = {diff:.2e}",
    )


if __name__ == "__main__":
    print(json.dumps(_serve(sys.argv[1], sys.argv[2])))
