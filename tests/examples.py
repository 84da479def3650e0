"""The YAML-only example projects (examples/orders, one task at a time; examples/hourly) as
fresh projects."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pandas as pd

from tests.conftest import REPO, init_project

EXAMPLE = REPO / "examples/orders"
HOURLY = REPO / "examples/hourly"


def generate(dest: Path, example: Path = EXAMPLE) -> pd.DataFrame:
    """An example's generate.py data, written under dest/upstream."""
    spec = importlib.util.spec_from_file_location(f"{example.name}_generate", example / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write(dest)


def orders_project(dest: Path, task: str, model: str = "orders", release: str | None = None) -> Path:
    """A project whose conf/ is this repo's plus the example's, selecting the example's
    groups, the `orders_<task>` data and release files (refund, delivery, satisfaction;
    `release` when another) and `model` (orders, or orders_calibrated)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLE / "conf", dest / "conf", dirs_exist_ok=True)
    generate(dest)
    groups = {g: "orders" for g in ("contract", "features", "evaluation", "training", "backtest", "inference")}
    chosen = {"data": f"orders_{task}", "release": release or f"orders_{task}", "split": "orders2024", "model": model}
    return init_project(dest, {**groups, **chosen})


def hourly_project(dest: Path) -> Path:
    """The single-table example: one CSV, an event time from a constant year, a day of the
    year and an hour, derived columns; every group its `hourly` file."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(HOURLY / "conf", dest / "conf", dirs_exist_ok=True)
    generate(dest, HOURLY)
    groups = ("data", "contract", "features", "backtest", "training", "inference", "evaluation", "release", "model")
    return init_project(dest, {**dict.fromkeys(groups, "hourly"), "split": "hourly2011"})
