"""The model registry: every released version kept, one `released` pointer, an event log.

    registry/
      versions/<version>/   model.txt, feature_state.json, card.json, blessing.json, params.yaml
      released.json         {"live": version, "stack": [...], "at", "by", "action"}
      history.jsonl         one line per release / rollback: who, what, when, why

A version folder is written under a temporary name and renamed into place; the pointer
is replaced atomically (`os.replace`) only after that. A crash at any point leaves the
previous pointer, and so the previous model, live.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsys.errors import ExitCode, MissingInputError, MlsysError
from mlsys.io import write_json

POINTER = "released.json"
HISTORY = "history.jsonl"


class RegistryError(MlsysError):
    """A registry operation that cannot be done (nothing to roll back to)."""

    code = ExitCode.MISSING_INPUT


def _who() -> str:
    return os.environ.get("MLSYS_USER") or f"{getpass.getuser()}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    # --- reading ---------------------------------------------------------------------
    def pointer(self) -> dict[str, Any] | None:
        path = self.root / POINTER
        return json.loads(path.read_text()) if path.exists() else None

    def live(self) -> str | None:
        pointer = self.pointer()
        return pointer["live"] if pointer else None

    def path(self, version: str) -> Path:
        path = self.versions_dir / version
        if not path.is_dir():
            known = ", ".join(self.versions()) or "none"
            raise MissingInputError(f"{path}: no such released version (known: {known})")
        return path

    def versions(self) -> list[str]:
        """Versions in the order they were first added."""
        if not self.versions_dir.is_dir():
            return []
        dirs = [d for d in self.versions_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
        return [d.name for d in sorted(dirs, key=lambda d: json.loads((d / "added.json").read_text())["at"])]

    def card(self, version: str) -> dict[str, Any]:
        return json.loads((self.path(version) / "card.json").read_text())

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    # --- writing ---------------------------------------------------------------------
    def add(self, bundle: Path, version: str, extra: dict[str, str]) -> Path:
        """Copy a bundle (+ extra text files, e.g. blessing, params) in as `version`."""
        target = self.versions_dir / version
        if target.is_dir():
            return target  # content-addressed: the same version is the same model
        tmp = self.versions_dir / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle, tmp)
        for name, text in extra.items():
            (tmp / name).write_text(text, encoding="utf-8")
        write_json(tmp / "added.json", {"at": datetime.now(UTC).isoformat(), "by": _who()})
        os.replace(tmp, target)
        return target

    def _switch(self, stack: list[str], action: str, reason: str) -> dict[str, Any]:
        before = self.live()
        event = {"action": action, "from": before, "to": stack[-1], "at": _now(), "by": _who(), "reason": reason}
        write_json(
            self.root / POINTER,
            {"live": stack[-1], "stack": stack, **{k: event[k] for k in ("at", "by")}, "action": action},
        )
        with open(self.root / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, sort_keys=True) + "\n")
        return event

    def release(self, version: str, reason: str = "") -> dict[str, Any]:
        self.path(version)
        pointer = self.pointer()
        stack = list(pointer["stack"]) if pointer else []
        if stack and stack[-1] == version:
            return {"action": "release", "from": version, "to": version, "noop": True}
        return self._switch([*stack, version], "release", reason)

    def rollback(self, to: str | None = None, reason: str = "") -> dict[str, Any]:
        """Make the previously live version live again, or `to` (any kept version)."""
        pointer = self.pointer()
        if pointer is None:
            raise RegistryError(f"{self.root}: nothing is released, nothing to roll back")
        stack = list(pointer["stack"])
        if to is None:
            if len(stack) < 2:
                raise RegistryError(f"{self.root}: {stack[-1]} is the only version ever live; use --to VERSION")
            stack.pop()
        else:
            self.path(to)
            stack.append(to)
        return self._switch(stack, "rollback", reason)
