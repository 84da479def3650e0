"""`mlsys monitor` (also `dvc repro monitor/dvc.yaml`): the checks of `mlsys.monitoring` over
the request log's window that params.yaml (or the overrides) names."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mlsys import monitoring
from mlsys.errors import AlertError


def run(cfg: DictConfig, root: Path) -> None:
    """Metrics, alerts and the report written; exit 10 (AlertError) when a finding passes `fail`."""
    if monitoring.run(cfg, root):
        raise AlertError("a monitoring check passed its fail bound (see above, and paths.alerts)")
