"""LightGBM training and the model bundle behind one `load_model`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.errors import ContractError
from mlsys.features import FeaturePipeline
from mlsys.io import atomic_write, read_json, write_json
from mlsys.model.integrity import (
    CARD_FILE,
    FEATURES_FILE,
    META_FILE,
    MODEL_FILE,
    bundle_version,
    verify,
    write_checksums,
)


def lgb_params(model: DictConfig, training: DictConfig) -> dict[str, Any]:
    """Model params + the determinism settings from `training` (which always win)."""
    params = dict(OmegaConf.to_container(model.params, resolve=True))
    params.update(
        {
            "seed": training.seed,
            "deterministic": training.deterministic,
            "num_threads": training.num_threads,
            "verbosity": -1,
            f"force_{training.force}": True,
        }
    )
    return params


def _dataset(
    x: np.ndarray, y: np.ndarray, pipeline: FeaturePipeline, params: dict[str, Any], reference: Any = None
) -> Any:
    """A LightGBM Dataset named and typed by the feature pipeline (one place for both trainers)."""
    import lightgbm as lgb

    return lgb.Dataset(
        x,
        label=y,
        params=params,
        reference=reference,
        feature_name=pipeline.names,
        categorical_feature=pipeline.categorical,
        free_raw_data=False,
    )


@dataclass
class TrainResult:
    booster: Any
    best_iteration: int
    history: dict[str, list[float]] = field(default_factory=dict)


def train(
    x: np.ndarray,
    y: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    pipeline: FeaturePipeline,
    model: DictConfig,
    training: DictConfig,
    callbacks: list | None = None,
    init_model: Any = None,
) -> TrainResult:
    """Train with early stopping on the validation window; `init_model` (a Booster)
    warm-starts: boosting continues from its trees."""
    import lightgbm as lgb

    params = lgb_params(model, training)
    dtrain = _dataset(x, y, pipeline, params)
    dvalid = _dataset(xv, yv, pipeline, params, reference=dtrain)
    history: dict = {}
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=model.num_boost_round,
        valid_sets=[dtrain, dvalid],
        valid_names=["train", "valid"],
        init_model=init_model,
        callbacks=[
            lgb.early_stopping(model.early_stopping_rounds, verbose=False),
            lgb.record_evaluation(history),
            *(callbacks or []),
        ],
    )
    return TrainResult(
        booster=booster,
        best_iteration=booster.best_iteration or booster.current_iteration(),
        history={f"{k}/{m}": list(v) for k, d in history.items() for m, v in d.items()},
    )


def train_rounds(
    x: np.ndarray,
    y: np.ndarray,
    pipeline: FeaturePipeline,
    model: DictConfig,
    training: DictConfig,
    rounds: int,
    init_model: Any = None,
) -> Any:
    """A fixed number of rounds, no early stopping (retrains have no validation window);
    `init_model` warm-starts from its trees."""
    import lightgbm as lgb

    params = lgb_params(model, training)
    return lgb.train(params, _dataset(x, y, pipeline, params), num_boost_round=rounds, init_model=init_model)


def save_model_dir(
    directory: Path, booster: Any, best_iteration: int, pipeline: FeaturePipeline, meta: Mapping[str, Any]
) -> Path:
    """model.txt (best iteration only) + feature_state.json + meta.json, and the checksums
    of the first two (what every later load verifies)."""
    directory = Path(directory)
    text = booster.model_to_string(num_iteration=best_iteration)
    atomic_write(directory / MODEL_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    write_json(directory / FEATURES_FILE, pipeline.state())
    write_json(directory / META_FILE, dict(meta))
    write_checksums(directory, (MODEL_FILE, FEATURES_FILE))
    return directory


@dataclass
class Model:
    """A loaded bundle: scores frames or single records through the one feature path."""

    booster: Any
    pipeline: FeaturePipeline
    version: str
    meta: dict[str, Any]

    def predict_frame(self, frame: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        return self.booster.predict(self.pipeline.transform_frame(frame), num_threads=num_threads)

    def predict_record(self, record: Mapping[str, Any]) -> float:
        return float(self.booster.predict(self.pipeline.transform_record(record), num_threads=1)[0])


def load_model(directory: Path, version: str | None = None) -> Model:
    """Load a model directory or bundle (model.txt + feature_state.json [+ meta/card]).

    Its files are verified first (`integrity.verify`: checksums, and the content version
    when `version` is given): LightGBM is never handed a file that changed since it was
    written, since its loader can abort the process instead of raising."""
    import lightgbm as lgb

    directory = Path(directory)
    verify(directory, version)
    booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
    pipeline = FeaturePipeline.from_state(read_json(directory / FEATURES_FILE, "the fitted feature state"))
    # A packaged bundle carries its card; a training output its meta.
    meta_path = next((directory / n for n in (CARD_FILE, META_FILE) if (directory / n).exists()), None)
    meta = read_json(meta_path, "the model card") if meta_path else {}
    if booster.feature_name() != pipeline.names:
        raise ContractError(f"{directory}: model features {booster.feature_name()} != feature state {pipeline.names}")
    return Model(booster=booster, pipeline=pipeline, version=bundle_version(directory), meta=meta)
