"""`mlsys release list`, `mlsys release --promote` and `mlsys rollback`: the registry for people."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from mlsys.errors import MlsysError
from mlsys.release.registry import Registry
from mlsys.tasks import Task


def show(registry: Registry) -> None:
    live, candidate = registry.live(), registry.candidate()
    table = Table(title=f"released versions of {registry.name} in {registry.root} (* = live, c = candidate)")
    for col in ("", "version", "files", "task", "data up to", "created", "test metrics", "made live"):
        table.add_column(col, no_wrap=col not in ("made live", "files"))
    events: dict[str, list[str]] = {}
    for e in registry.history():
        events.setdefault(e["to"], []).append(f"{e['action']} {e['at'][:16]} {e['by']}")
    for version in registry.versions():
        try:
            registry.verified(version)
            files = "ok"
        except MlsysError as exc:  # a damaged version is shown, named, not fatal to the listing
            files = f"DAMAGED: {exc}"
        try:
            card = registry.card(version)
        except MlsysError:
            table.add_row(_mark(version, live, candidate), version, files, "?", "?", "?", "?", "")
            continue
        m, task = card["metrics"], Task.from_spec(card)
        table.add_row(
            _mark(version, live, candidate),
            version,
            files,
            task.kind,
            str(card.get("timeline", {}).get("newest_training_event", "?"))[:16],
            card["created_at"][:16],
            "\n".join(f"{k} {m[k]:.4f}" for k in list(task.metrics)[:3] if isinstance(m.get(k), float)),
            "\n".join(events.get(version, [])),
        )
    Console(width=max(Console().width, 130)).print(table)
    if live is None:
        print("no model is released yet: `dvc repro` releases a blessed candidate")


def _mark(version: str, live: str | None, candidate: str | None) -> str:
    return "*" if version == live else "c" if version == candidate else ""


def promote(registry: Registry, reason: str) -> None:
    event = registry.promote(reason or "promoted by hand after its canary")
    print(f"release: {event['to']} is live (was {event['from']}); the candidate slot is empty")


def rollback(registry: Registry, to: str | None, reason: str) -> None:
    """Drop the candidate if there is one (and no --to), else make the version before live."""
    if to is None and registry.candidate() is not None:
        event = registry.drop(reason or "dropped by hand after its canary")
        print(f"rollback: candidate {event['dropped']} dropped (revoked); {event['live']} stays live")
        return
    start = time.perf_counter()
    event = registry.rollback(to, reason)
    took = f"{time.perf_counter() - start:.1f}s, target verified and loaded in a child process first"
    if event.get("noop"):
        print(f"rollback: {event['to']} is already live; nothing changed")
    else:
        print(f"rollback: {event['to']} is live (was {event['from']}); by {event['by']} at {event['at']} ({took})")
