"""The real server in a subprocess on 127.0.0.1, and versions to switch it between."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa

from mlsys.model import load_model
from mlsys.model.integrity import listed, write_checksums
from mlsys.serving.log import read_log
from tests.conftest import ENV, registry_of


class Server:
    """`mlsys serve` on a free port; ready when /readyz says so (or `ready=False`: when it answers)."""

    def __init__(self, project: Path, *overrides: str, env: dict | None = None, ready: bool = True) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = ["mlsys", "serve", "--host", "127.0.0.1", "--port", str(self.port), *overrides]
        self.output = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # never a full pipe
        self.proc = subprocess.Popen(cmd, cwd=project, env=env or ENV, stdout=self.output, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code in ((200,) if ready else (200, 503)):
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"server not ready within 60 s: {self.log()}")

    def log(self) -> str:
        return Path(self.output.name).read_text()

    def metric(self, name: str) -> float | None:
        """A sample's value from /metrics (`name` with its labels, as exposed)."""
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: drains the request log
        self.proc.wait(timeout=30)
        return self.log()


def another_version(project: Path, trees: int | None = None) -> str:
    """Another release-able version of the live model (its first `trees` trees; half by
    default), added to the registry with its checksums."""
    registry = registry_of(project)
    tmp = project / "tmp_bundle"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(registry.path(registry.live()), tmp)
    booster = load_model(tmp).booster
    (tmp / "model.txt").write_text(booster.model_to_string(num_iteration=trees or booster.current_iteration() // 2))
    write_checksums(tmp, listed(tmp))
    version = load_model(tmp).version
    registry.add(tmp, version, {})
    shutil.rmtree(tmp)
    return version


def wait_until(condition, seconds: float = 15.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def logged(log: Path) -> pd.DataFrame:
    """Every row of the request log under `log`."""
    return read_log(log).frame


def append_logged(log: Path, rows: pd.DataFrame) -> None:
    """Rows written into the log as a new stream file: what could reach it around the service."""
    table = pa.Table.from_pandas(rows, preserve_index=False)
    folder = log / "9999-12-31"
    folder.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(folder / f"tampered-{len(list(folder.iterdir()))}.arrows"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
