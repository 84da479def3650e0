"""The request log: what the service saw and answered, one JSON line per scored record.

`put` only samples and enqueues (about a microsecond), so the request path never waits on
the disk; one writer thread serializes (a `features` entry given as (names, values) becomes
a name -> value mapping there, NaN for missing), appends and flushes. `close` drains the queue: nothing queued
is lost on a clean shutdown.

Personal fields (`pii`: names from `mlsys.contracts.pii_columns`) of the logged `input` are
written as `PII`, in the writer thread too: the request path pays nothing for it. The
`features` entry stays as the model saw it (a personal input as its encoded value, e.g. a
vocabulary code), so skew checks on features still work.
"""

from __future__ import annotations

import json
import queue
import random
import threading
from pathlib import Path
from typing import Any

from mlsys.contracts import mask

_STOP = object()


def _plain(entry: dict[str, Any], pii: frozenset[str]) -> dict[str, Any]:
    features = entry.get("features")
    if isinstance(features, tuple):
        names, values = features
        entry = {**entry, "features": dict(zip(names, values.tolist(), strict=True))}
    if pii and isinstance(entry.get("input"), dict):
        entry = {**entry, "input": mask(entry["input"], pii)}
    return entry


class RequestLog:
    def __init__(
        self, path: Path, sample_rate: float, seed: int | None = None, pii: frozenset[str] = frozenset()
    ) -> None:
        self.path, self.rate, self.pii = Path(path), sample_rate, frozenset(pii)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._random = random.Random(seed)
        self.written = 0
        self._thread = threading.Thread(target=self._write, name="request-log", daemon=True)
        self._thread.start()

    def put(self, entry: dict[str, Any]) -> bool:
        """Queue `entry` if sampled; True if it will be written."""
        if self.rate < 1.0 and self._random.random() >= self.rate:
            return False
        self._queue.put(entry)
        return True

    def _write(self) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            while True:
                item = self._queue.get()
                batch = [item]
                while not self._queue.empty() and len(batch) < 1000:
                    batch.append(self._queue.get())
                stop = any(b is _STOP for b in batch)
                lines = [json.dumps(_plain(b, self.pii), default=str, allow_nan=True) for b in batch if b is not _STOP]
                if lines:
                    fh.write("\n".join(lines) + "\n")
                    fh.flush()
                    self.written += len(lines)
                if stop:
                    return

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)
