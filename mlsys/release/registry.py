"""The model registry: every released version kept, one pointer per model, an event log.

    registry/                        (paths.registry: point it at shared storage for a team)
      <model_name>/                  (release.model_name, default the data set's name)
        versions/<version>/          model.txt, feature_state.json, profile.json, card.json,
                                     blessing.json, params.yaml, added.json, checksums.json
        released.json                {"format", "model", "live", "stack", "revoked",
                                      "candidate", "shadow", "canary", "event"}
        history.jsonl                one line per release / rollback: who, what, when, why
        .lock                        `filelock`: one writer at a time, across processes

A version folder is written under a unique temporary name, fsynced, verified against its
checksums and renamed into place; the pointer is replaced atomically (`os.replace`) only
after that, and only to a version that verifies. A crash at any point leaves the previous
pointer, and so the previous model, live. A registry written before model names (flat:
`registry/versions/`, `registry/released.json`) is read as is and moved into its model's
folder on the first write.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsys.errors import ConcurrentChangeError, ExitCode, IntegrityError, MissingInputError, MlsysError, UsageError
from mlsys.io import append_jsonl, fsync_dir, read_json, read_jsonl, storage, write_json
from mlsys.model.integrity import CARD_FILE, listed, probe, verify, write_checksums

POINTER = "released.json"
HISTORY = "history.jsonl"
ADDED = "added.json"
BLESSING = "blessing.json"  # the release stage's record, kept with the version
FORMAT = 2  # of released.json; 1: the flat registry before model names
VERSION = re.compile(r"[0-9a-f]{12}")  # bundle_version: the content address of a model
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
LOCK_SECONDS = 60.0


class RegistryError(MlsysError):
    """A registry operation that cannot be done (nothing to roll back to)."""

    code = ExitCode.MISSING_INPUT


class RevokedError(MlsysError):
    """A blessed candidate that a rollback took away: not re-released automatically."""

    code = ExitCode.GATE


def locate(root: Path, configured: str) -> tuple[Path, str]:
    """The registry folder for a project at `root`: `paths.registry` as configured, or, for
    a relative one inside a DVC experiment workspace (`dvc exp run --temp` and queued runs
    work in a copy under `.dvc/tmp/exps/`, without the git-ignored registry), the project's
    own. Returns the folder and where it came from (recorded with the gates)."""
    path = Path(configured)
    if path.is_absolute():
        return path, f"paths.registry {path}"
    parts = Path(root).resolve().parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            project = Path(*parts[:i])
            return project / path, f"the project's registry {project / path}, seen from the experiment workspace {root}"
    return Path(root) / path, f"paths.registry {configured}"


def check_version(version: Any, where: str = "version") -> str:
    """`version` if it has the form of a model version (12 hex digits), else a UsageError."""
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise UsageError(f"{where}: {version!r} is not a model version (12 hex digits, e.g. 0e243f3e5051)")
    return version


def check_name(name: Any, where: str = "release.model_name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == "versions":
        raise UsageError(f"{where}: {name!r} is not a model name (letters, digits, '.', '_', '-'; not 'versions')")
    return name


def _who() -> str:
    return os.environ.get("MLSYS_USER") or f"{getpass.getuser()}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


class Registry:
    def __init__(self, root: Path, name: str) -> None:
        self.root = Path(root)
        self.name = check_name(name)
        self.dir = self.root / self.name

    # --- layout (a flat registry of format 1 is read in place until the first write) ---
    @property
    def versions_dir(self) -> Path:
        new, old = self.dir / "versions", self.root / "versions"
        return old if not new.is_dir() and old.is_dir() else new

    @property
    def pointer_path(self) -> Path:
        new, old = self.dir / POINTER, self.root / POINTER
        return old if not new.exists() and old.exists() else new

    # --- reading ---------------------------------------------------------------------
    def pointer(self) -> dict[str, Any] | None:
        path = self.pointer_path
        if not path.exists():
            return None
        pointer = read_json(path, "the registry's pointer")
        if not isinstance(pointer, dict) or not VERSION.fullmatch(str(pointer.get("live"))):
            raise IntegrityError(f"{path}: not a registry pointer (its 'live' is not a model version)")
        defaults = {"candidate": None, "shadow": None, "canary": None, "revoked": {}, "stack": [pointer["live"]]}
        return {**defaults, **pointer, "format": FORMAT, "model": self.name}

    def live(self) -> str | None:
        pointer = self.pointer()
        return pointer["live"] if pointer else None

    def path(self, version: str) -> Path:
        """The folder of a kept version (its form and existence checked)."""
        path = self.versions_dir / check_version(version)
        if not path.is_dir():
            known = ", ".join(self.versions()) or "none"
            raise MissingInputError(f"{path}: no such released version (known: {known})")
        return path

    def verified(self, version: str) -> Path:
        """The folder of a kept version whose files all match their checksums."""
        path = self.path(version)
        verify(path, version)
        return path

    def versions(self) -> list[str]:
        """Versions in the order they were first added."""
        folder = self.versions_dir
        if not folder.is_dir():
            return []

        def added(d: Path) -> str:
            try:
                return str(json.loads((d / ADDED).read_text())["at"])
            except (OSError, ValueError, KeyError):
                return datetime.fromtimestamp(d.stat().st_mtime, UTC).isoformat()

        dirs = [d for d in folder.iterdir() if d.is_dir() and VERSION.fullmatch(d.name)]
        return [d.name for d in sorted(dirs, key=added)]

    def card(self, version: str) -> dict[str, Any]:
        return read_json(self.path(version) / CARD_FILE, f"the card of version {version}")

    def timeline(self, version: str) -> dict[str, Any]:
        """How old a version's knowledge is: its card's stage times, and when it was last made live."""
        made_live = [
            e["at"] for e in self.history() if e["to"] == version and e["action"] in ("release", "rollback", "promote")
        ]
        return {**self.card(version).get("timeline", {}), "released_at": made_live[-1] if made_live else None}

    def history(self) -> list[dict[str, Any]]:
        """Every release / rollback, oldest first (the pointer's own event if its line is missing)."""
        events, _ = read_jsonl(self.pointer_path.parent / HISTORY)  # a line cut mid-append is skipped
        pointer = self.pointer()
        if pointer and pointer.get("event") and pointer["event"] not in events:
            events.append(pointer["event"])
        return events

    def revoked(self) -> dict[str, str]:
        """Versions rolled away from -> when; they are not released again automatically."""
        pointer = self.pointer()
        return dict(pointer.get("revoked", {})) if pointer else {}

    # --- writing ---------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock for a write (add, release, rollback), across processes and hosts
        that share the registry folder; a flat registry is migrated under it first."""
        from filelock import FileLock, Timeout

        lock = FileLock(self.dir / ".lock")
        with storage(self.dir / ".lock", "take the registry lock"):
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire(timeout=LOCK_SECONDS)
            except Timeout as exc:  # a TimeoutError, so an OSError: told apart here
                raise ConcurrentChangeError(
                    f"{self.dir}: the registry lock is held by another release or rollback for over "
                    f"{LOCK_SECONDS:.0f}s; rerun when it is done"
                ) from exc
        try:
            self._migrate()
            yield
        finally:
            lock.release()

    def _migrate(self) -> None:
        """Move a flat (format 1) registry into its model's folder; idempotent, crash-safe:
        versions get checksums first, then move, then the pointer, then the old pointer goes."""
        old_versions, old_pointer = self.root / "versions", self.root / POINTER
        if not old_versions.is_dir() and not old_pointer.exists():
            return
        with storage(self.root, "migrate the flat registry"):
            if old_versions.is_dir():
                for folder in old_versions.iterdir():
                    if folder.is_dir() and VERSION.fullmatch(folder.name) and not listed(folder):
                        verify(folder, folder.name)
                        write_checksums(folder, [f.name for f in folder.iterdir() if f.is_file()])
                if not (self.dir / "versions").exists():
                    os.rename(old_versions, self.dir / "versions")
            if old_pointer.exists():
                if not (self.dir / POINTER).exists():
                    pointer = read_json(old_pointer, "the flat registry's pointer")
                    write_json(self.dir / POINTER, {**self._defaults(), **pointer})
                if (self.root / HISTORY).exists() and not (self.dir / HISTORY).exists():
                    os.rename(self.root / HISTORY, self.dir / HISTORY)
                old_pointer.unlink()
            print(f"registry: moved the flat registry {self.root} into {self.dir} (format {FORMAT})")

    def _defaults(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.name, "candidate": None, "shadow": None, "canary": None}

    def add(self, bundle: Path, version: str, extra: dict[str, str]) -> Path:
        """Copy a bundle (+ extra text files, e.g. blessing, params) in as `version`.

        The copy is written under a unique temporary name, fsynced and verified against its
        checksums before the rename makes it visible; a refused write leaves nothing behind."""
        check_version(version)
        verify(bundle, None)
        with self.lock():
            versions = self.versions_dir
            target = versions / version
            if target.is_dir():
                verify(target, version)
                return target  # content-addressed: the same version is the same model
            tmp: Path | None = None
            try:
                with storage(versions, f"add version {version}"):
                    versions.mkdir(parents=True, exist_ok=True)
                    tmp = Path(tempfile.mkdtemp(dir=versions, prefix=f".{version}."))
                    shutil.copytree(bundle, tmp, dirs_exist_ok=True)
                    for name, text in extra.items():
                        (tmp / name).write_text(text, encoding="utf-8")
                    write_json(tmp / ADDED, {"at": datetime.now(UTC).isoformat(), "by": _who()})
                    write_checksums(tmp, [*listed(tmp), *extra, ADDED])
                    _fsync_tree(tmp)
                    verify(tmp, version)
                    os.chmod(tmp, 0o755)
                    os.rename(tmp, target)
                    fsync_dir(versions)
                    tmp = None
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
            return target

    def _switch(self, stack: list[str], action: str, reason: str, revoked: dict[str, str]) -> dict[str, Any]:
        before = self.live()
        event = {"action": action, "from": before, "to": stack[-1], "at": _now(), "by": _who(), "reason": reason}
        # The pointer carries its own event: if the process dies before the history line
        # is appended, history() still reports who made the live version live.
        current = self.pointer() or {}
        pointer = {**self._defaults(), **current, "live": stack[-1], "stack": stack, "revoked": revoked, "event": event}
        write_json(self.dir / POINTER, pointer)
        with storage(self.dir / HISTORY, "append to"):
            append_jsonl(self.dir / HISTORY, [event])
        return event

    def release(self, version: str, reason: str = "", expected_live: str | None = None) -> dict[str, Any]:
        """Make a blessed `version` live. Refuses a version a rollback took away (release
        it again on purpose with `rollback --to`) and, if the live version changed since the
        candidate was gated against it (`expected_live`), asks for a rerun (exit 9)."""
        self.verified(version)
        with self.lock():
            pointer = self.pointer()
            live = pointer["live"] if pointer else None
            if expected_live != live:
                raise ConcurrentChangeError(
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

    def candidate(self) -> str | None:
        """The version a canary rollout answers a share of traffic with (not live yet)."""
        pointer = self.pointer()
        return pointer["candidate"] if pointer else None

    def _set_candidate(self, version: str | None, action: str, reason: str) -> dict[str, Any]:
        pointer = self.pointer()
        if pointer is None:
            raise RegistryError(f"{self.dir}: nothing is live; a first release goes live directly")
        event = {
            "action": action, "from": pointer["candidate"], "to": version, "live": pointer["live"],
            "at": _now(), "by": _who(), "reason": reason,
        }  # fmt: skip
        write_json(self.dir / POINTER, {**pointer, "candidate": version, "event": event})
        with storage(self.dir / HISTORY, "append to"):
            append_jsonl(self.dir / HISTORY, [event])
        return event

    def propose(self, version: str, reason: str = "", expected_live: str | None = None) -> dict[str, Any]:
        """Make a blessed `version` the candidate (release.rollout: canary): the live model
        stays live; servers answer a share of entities with the candidate."""
        self.verified(version)
        with self.lock():
            live = self.live()
            if expected_live != live:
                raise ConcurrentChangeError(
                    f"the live version changed from {expected_live} to {live} while the candidate was gated; rerun"
                )
            if live is None:
                return self._switch([version], "release", f"{reason} (nothing live: released directly)", {})
            if version in (live, self.candidate()):
                return {"action": "candidate", "from": live, "to": version, "noop": True}
            if version in self.revoked():
                raise RevokedError(f"{version} was rolled back or dropped; it is not proposed again automatically")
            return self._set_candidate(version, "candidate", reason)

    def promote(self, reason: str = "") -> dict[str, Any]:
        """The candidate becomes live (its canary was judged good)."""
        with self.lock():
            pointer = self.pointer()
            version = pointer["candidate"] if pointer else None
            if version is None:
                raise RegistryError(f"{self.dir}: there is no candidate to promote (release.rollout: canary)")
            self.verified(version)
            event = self._switch([*pointer["stack"], version], "promote", reason, self.revoked())
            write_json(self.dir / POINTER, {**self.pointer(), "candidate": None})
            return event

    def drop(self, reason: str = "") -> dict[str, Any]:
        """The candidate is taken away (its canary was judged bad) and revoked."""
        with self.lock():
            version = self.candidate()
            if version is None:
                raise RegistryError(f"{self.dir}: there is no candidate to drop")
            event = self._set_candidate(None, "drop", reason)
            write_json(self.dir / POINTER, {**self.pointer(), "revoked": {**self.revoked(), version: _now()}})
            return {**event, "dropped": version}

    def rollback(
        self, to: str | None = None, reason: str = "", check: Callable[[Path, str], str | None] | None = probe
    ) -> dict[str, Any]:
        """Make the previously live version live again, or `to` (any kept version).

        The target is verified and loaded in a child process (`check`) before the pointer
        moves, so a corrupt version is refused with the live one untouched. The version
        rolled away from is revoked: the release stage will not re-release it."""
        pointer = self.pointer()
        if pointer is None:
            raise RegistryError(f"{self.dir}: nothing is released, nothing to roll back")
        stack, live = list(pointer["stack"]), pointer["live"]
        if to is None:
            if len(stack) < 2:
                raise RegistryError(f"{self.dir}: {live} is the only version ever live; use --to VERSION")
            target = stack[-2]
        else:
            target = check_version(to, "rollback --to")
        path = self.path(target)
        if target == live:
            return {"action": "rollback", "from": live, "to": live, "noop": True, "at": _now(), "by": _who()}
        try:
            verify(path, target)
        except IntegrityError as exc:
            raise IntegrityError(f"rollback refused, {live} stays live: {exc}") from exc
        failure = check(path, target) if check else None
        if failure:
            raise IntegrityError(f"rollback refused, {live} stays live: {failure}")
        with self.lock():
            now = self.pointer()
            if now is None or now["live"] != live or now["stack"] != pointer["stack"]:
                raise ConcurrentChangeError(
                    f"the registry changed while {target} was being checked "
                    f"(live {live} -> {now and now['live']}); rerun the rollback"
                )
            revoked = self.revoked()
            stack = [v for v in stack if v != target] + [target] if to is not None else stack[:-1]
            if to is not None:
                revoked.pop(target, None)  # chosen by a person: no longer revoked
            revoked[live] = _now()
            return self._switch(stack, "rollback", reason, revoked)
