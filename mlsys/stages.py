"""The DVC stages: the params sections each declares, and the module that runs it.

`dvc.yaml` declares the same sections per stage (a test compares them), so a stage
reruns exactly when a section it reads changes, and its saved config covers exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    sections: tuple[str, ...]
    help: str

    def module(self, name: str) -> str:
        return f"pipelines.{name}"


STAGES: dict[str, Stage] = {
    "snapshot": Stage(("data", "paths"), "copy upstream sources into a versioned raw snapshot"),
    "validate": Stage(("data", "contract", "paths"), "check each raw table against its contract"),
    "build": Stage(("data", "contract", "paths"), "join sources as of the prediction time; label; aggregates"),
    "featurize": Stage(("features", "split", "paths"), "fit feature state on train; encode all periods"),
    "train": Stage(("features", "model", "training", "paths"), "train LightGBM with early stopping"),
    "evaluate": Stage(("evaluation", "split", "paths"), "test metrics, slices, baseline, plots"),
    "package": Stage(("paths",), "assemble the model bundle and its card"),
}


def provenance(stage: str, cfg: object) -> dict[str, object]:
    """What a stage saves with its artifacts: its name, config and the config's hash."""
    from omegaconf import OmegaConf

    from mlsys.config import config_hash

    return {
        "stage": stage,
        "config_hash": config_hash(cfg),  # type: ignore[arg-type]
        "config": OmegaConf.to_container(cfg, resolve=True),
    }  # type: ignore[arg-type]
