"""A no-op `dvc repro` against DVC's own floor: the same stage graph, same files, but every
command `true`. Run in a reproduced project (after `dvc repro -P`):

    python bench/noop.py            # best of 3 each, seconds

Prints mlsys's no-op time for the main pipeline and for all pipelines, the floor for each, and
the difference (what mlsys's stages cost when nothing changed: the snapshot check).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def _best(cmd: list[str], cwd: Path, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
        ran = [ln for ln in proc.stdout.splitlines() if ln.startswith("Running stage") and "snapshot" not in ln]
        if ran:
            raise SystemExit(f"not a no-op in {cwd}: {ran}")
    return min(times)


def _floor(stage: dict) -> dict:
    """The same stage doing nothing: command `true`, outputs kept (DVC deletes non-persistent
    outputs before it runs a stage, and `true` would not make them again)."""
    stage = dict(stage, cmd="true")
    outs = []
    for out in stage.get("outs", []):
        path, spec = (out, {}) if isinstance(out, str) else next(iter(out.items()))
        outs.append({path: {**(spec or {}), "persist": True}})
    if outs:
        stage["outs"] = outs
    return stage


def _floor_copy(dest: Path) -> Path:
    """The project with hard-linked files and every stage doing nothing, recorded as is."""
    subprocess.run(["cp", "-al", str(ROOT), str(dest)], check=True)
    shutil.rmtree(dest / ".dvc" / "tmp")  # DVC's state databases: its own, never written through a link
    for file in ("dvc.yaml", "studies/dvc.yaml"):
        path = dest / file
        spec = yaml.safe_load(path.read_text())
        for name, stage in spec["stages"].items():
            spec["stages"][name] = {**stage, "do": _floor(stage["do"])} if "do" in stage else _floor(stage)
        path.unlink()  # a hard link: write a new file, never through to the project's
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        lock = path.with_name("dvc.lock")
        lock.unlink()
        shutil.copy(ROOT / lock.relative_to(dest), lock)
    subprocess.run(["dvc", "commit", "-f", "-q"], cwd=dest, check=True)  # the new commands, recorded
    return dest


def main() -> None:
    table = Table(title="no-op dvc repro: mlsys vs DVC's floor (same graph, commands `true`), best of 3")
    for col in ("pipelines", "mlsys (s)", "floor (s)", "mlsys - floor (s)"):
        table.add_column(col)
    with tempfile.TemporaryDirectory() as tmp:
        floor = _floor_copy(Path(tmp) / "floor")
        for name, cmd in (("main (dvc repro)", ["dvc", "repro"]), ("all (dvc repro -P)", ["dvc", "repro", "-P"])):
            ml, fl = _best(cmd, ROOT), _best(cmd, floor)
            table.add_row(name, f"{ml:.2f}", f"{fl:.2f}", f"{ml - fl:+.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
