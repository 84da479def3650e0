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

import fcntl
import getpass
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsys.errors import ExitCode, MissingInputError, MlsysError
from mlsys.io import write_json

POINTER = "released.json"
HISTORY = "history.jsonl"


class RegistryError(MlsysError):
    """A registry operation that cannot be done (nothing to roll back to, a race)."""

    code = ExitCode.MISSING_INPUT


class RevokedError(MlsysError):
    """A blessed candidate that a rollback took away: not re-released automatically."""

    code = ExitCode.GATE


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

    def timeline(self, version: str) -> dict[str, Any]:
        """How old a version's knowledge is: its card's stage times, and when it was last made live."""
        made_live = [e["at"] for e in self.history() if e["to"] == version and e["action"] in ("release", "rollback")]
        return {**self.card(version).get("timeline", {}), "released_at": made_live[-1] if made_live else None}

    def history(self) -> list[dict[str, Any]]:
        """Every release / rollback, oldest first (the pointer's own event if its line is missing)."""
        path = self.root / HISTORY
        events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        pointer = self.pointer()
        if pointer and pointer.get("event") and pointer["event"] not in events:
            events.append(pointer["event"])
        return events

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

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock for a read-check-switch of the pointer (releases, rollbacks)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def revoked(self) -> dict[str, str]:
        """Versions rolled away from -> when; they are not released again automatically."""
        pointer = self.pointer()
        return dict(pointer.get("revoked", {})) if pointer else {}

    def _switch(self, stack: list[str], action: str, reason: str, revoked: dict[str, str]) -> dict[str, Any]:
        before = self.live()
        event = {"action": action, "from": before, "to": stack[-1], "at": _now(), "by": _who(), "reason": reason}
        # The pointer carries its own event: if the process dies before the history line
        # is appended, history() still reports who made the live version live.
        write_json(self.root / POINTER, {"live": stack[-1], "stack": stack, "revoked": revoked, "event": event})
        with open(self.root / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, sort_keys=True) + "\n")
        return event

    def release(self, version: str, reason: str = "", expected_live: str | None = None) -> dict[str, Any]:
        """Make a blessed `version` live. Refuses a version a rollback took away (release
        it again on purpose with `rollback --to`) and, if the live version changed since the
        candidate was gated against it (`expected_live`), asks for a rerun."""
        self.path(version)
        with self.lock():
            pointer = self.pointer()
            live = pointer["live"] if pointer else None
            if expected_live != live:
                raise RegistryError(
                    f"the live version changed from {expected_live} to {live} while the "
                    "candidate was gated; rerun the release"
                )
            if live == version:
                return {"action": "release", "from": version, "to": version, "noop": True}
            revoked = self.revoked()
            if version in revoked:
                raise RevokedError(
                    f"{version} was rolled back at {revoked[version]}; it is not released again "
                    f"automatically: `mlsys rollback --to {version}` makes it live on purpose"
                )
            stack = [*(pointer["stack"] if pointer else []), version]
            return self._switch(stack, "release", reason, revoked)

    def rollback(self, to: str | None = None, reason: str = "") -> dict[str, Any]:
        """Make the previously live version live again, or `to` (any kept version).
        The version rolled away from is revoked: the release stage will not re-release it."""
        with self.lock():
            pointer = self.pointer()
            if pointer is None:
                raise RegistryError(f"{self.root}: nothing is released, nothing to roll back")
            stack, live = list(pointer["stack"]), pointer["live"]
            revoked = self.revoked()
            if to is None:
                if len(stack) < 2:
                    raise RegistryError(f"{self.root}: {live} is the only version ever live; use --to VERSION")
                stack.pop()
            else:
                self.path(to)
                if to == live:
                    return {"action": "rollback", "from": live, "to": live, "noop": True, "at": _now(), "by": _who()}
                stack = [v for v in stack if v != to] + [to]
                revoked.pop(to, None)  # chosen by a person: no longer revoked
            revoked[live] = _now()
            return self._switch(stack, "rollback", reason, revoked)
