"""What every bench times with: the best of a few runs of the same work, and wrk (a real
load generator, `apt-get install wrk`) against a server on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# wrk script: POST /predict with the bodies of a file (one JSON per line), in turn.
POST_LUA = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def best(fn: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of `repeat` runs of `fn`, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_script(folder: Path, bodies: list[str]) -> Path:
    """A wrk script POSTing `bodies` (JSON texts) to /predict in turn."""
    (folder / "bodies.jsonl").write_text("\n".join(bodies) + "\n")
    script = folder / "post.lua"
    script.write_text(POST_LUA % (folder / "bodies.jsonl"))
    return script


def wrk(url: str, script: Path, connections: int, seconds: int) -> tuple[float, float, int]:
    """(requests/s, p50 ms, requests) of one wrk run; any non-2xx answer is an error."""
    cmd = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    out = subprocess.run([*cmd, "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()
    sent = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], sent
