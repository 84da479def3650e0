"""`mlsys release list` and `mlsys rollback`: the registry for people."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlsys.release.registry import Registry


def show(root: Path) -> None:
    registry = Registry(root)
    live = registry.live()
    table = Table(title=f"released models in {root} (* = live)")
    for col in ("", "version", "data up to", "created", "test auc", "log loss", "brier", "made live"):
        table.add_column(col, no_wrap=col != "made live")
    events: dict[str, list[str]] = {}
    for e in registry.history():
        events.setdefault(e["to"], []).append(f"{e['action']} {e['at'][:16]} {e['by']}")
    for version in registry.versions():
        card = registry.card(version)
        m = card["metrics"]
        table.add_row(
            "*" if version == live else "",
            version,
            str(card.get("timeline", {}).get("newest_training_event", "?"))[:16],
            card["created_at"][:16],
            f"{m['auc']:.4f}",
            f"{m['logloss']:.4f}",
            f"{m['brier']:.4f}",
            "\n".join(events.get(version, [])),
        )
    Console(width=max(Console().width, 130)).print(table)
    if live is None:
        print("no model is released yet: `dvc repro` releases a blessed candidate")


def rollback(root: Path, to: str | None, reason: str) -> None:
    event = Registry(root).rollback(to, reason)
    if event.get("noop"):
        print(f"rollback: {event['to']} is already live; nothing changed")
    else:
        print(f"rollback: {event['to']} is live (was {event['from']}); by {event['by']} at {event['at']}")
