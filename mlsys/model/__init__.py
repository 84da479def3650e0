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
from mlsys.model import calibration as calib
from mlsys.model.compiled import Compiled, compile_model
from mlsys.model.fastrow import SingleRow
from mlsys.model.integrity import (
    CALIBRATION_FILE,
    CARD_FILE,
    FEATURES_FILE,
    META_FILE,
    MODEL_FILE,
    bundle_version,
    verify,
    write_checksums,
)
from mlsys.tasks import Task


def lgb_params(model: DictConfig, training: DictConfig, task: Task) -> dict[str, Any]:
    """Model params (the task's objective, metric and class count where unset) + the
    determinism settings from `training` (which always win)."""
    params = task.lgb_params(OmegaConf.to_container(model.params, resolve=True))
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


TRAINING = "training"  # lgb.train's name for its training data when it is not among the valid sets


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
    task: Task,
    callbacks: list | None = None,
    init_model: Any = None,
) -> TrainResult:
    """Train on the task's target with early stopping on the validation window (its first
    training metric); `init_model` (a Booster) warm-starts: boosting continues from its trees.
    The history's train line is scored on `training.curve_rows` train rows (a fixed sample;
    None: all; 0: none)."""
    import lightgbm as lgb

    params = lgb_params(model, training, task)
    target = task.target(y)
    dtrain = _dataset(x, target, pipeline, params)
    dvalid = _dataset(xv, task.target(yv), pipeline, params, reference=dtrain)
    sets, names = [dvalid], ["valid"]
    rows = training.curve_rows
    if rows is None or rows >= len(x):  # the curve's train line on every train row
        sets, names = [dtrain, dvalid], ["train", "valid"]
    elif rows > 0:  # on a fixed sample: scoring every row each round was 54% of a 10x training
        pick = np.sort(np.random.default_rng(training.seed).choice(len(x), rows, replace=False))
        sample = _dataset(x[pick], target[pick], pipeline, params, reference=dtrain)
        # LightGBM's name for the training data: early stopping ignores a set of that name.
        sets, names = [sample, dvalid], [TRAINING, "valid"]
    history: dict = {}
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=model.num_boost_round,
        valid_sets=sets,
        valid_names=names,
        init_model=init_model,
        callbacks=[
            lgb.early_stopping(model.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(history),
            *(callbacks or []),
        ],
    )
    return TrainResult(
        booster=booster,
        best_iteration=booster.best_iteration or booster.current_iteration(),
        history={f"{'train' if k == TRAINING else k}/{m}": list(v) for k, d in history.items() for m, v in d.items()},
    )


def save_model_dir(
    directory: Path,
    booster: Any,
    best_iteration: int,
    pipeline: FeaturePipeline,
    meta: Mapping[str, Any],
    calibration: dict[str, Any] | None = None,
) -> Path:
    """model.txt (best iteration only) + feature_state.json + meta.json (with the task) [+
    calibration.json], and their checksums (what every later load verifies)."""
    directory = Path(directory)
    text = booster.model_to_string(num_iteration=best_iteration)
    atomic_write(directory / MODEL_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    write_json(directory / FEATURES_FILE, pipeline.state())
    write_json(directory / META_FILE, dict(meta))
    files = [MODEL_FILE, FEATURES_FILE, META_FILE]
    (directory / CALIBRATION_FILE).unlink(missing_ok=True)
    if calibration is not None:
        write_json(directory / CALIBRATION_FILE, calibration)
        files.append(CALIBRATION_FILE)
    write_checksums(directory, files)
    return directory


@dataclass
class Model:
    """A loaded bundle: scores frames or single records through the one feature path."""

    booster: Any
    pipeline: FeaturePipeline
    version: str
    meta: dict[str, Any]
    task: Task = field(default_factory=Task)  # what it predicts (from its meta/card)
    calibration: dict[str, Any] | None = None  # fitted on the validation window (model.calibration)
    _row: SingleRow | None = field(default=None, init=False, repr=False, compare=False)  # made on first use
    compiled: Compiled | None = field(default=None, init=False, repr=False, compare=False)  # see use_backend
    lleaves: tuple[Path, bool] | None = field(default=None, init=False, repr=False, compare=False)  # cache, inline

    def __getstate__(self) -> dict[str, Any]:  # shipped to Dask workers: native handles stay here
        return self.__dict__ | {"_row": None, "compiled": None}

    def use_backend(self, backend: str, cache: Path, inline: bool = False) -> None:
        """Score batches with `backend` (`inference.backend`): lleaves compiles the model, or
        loads it from `cache` (`mlsys.model.compiled`); lightgbm is Booster.predict. A copy
        shipped to a Dask worker compiles (or loads) it there, on its first batch."""
        self.lleaves = (cache.absolute(), inline) if backend == "lleaves" else None
        self.compiled = None
        if self.lleaves is not None:
            self._compiled()

    def _compiled(self) -> Compiled:
        """The lleaves model: compiled or loaded on first use (here, or by a worker's copy)."""
        if self.compiled is None:
            assert self.lleaves is not None, "use_backend('lleaves', ...) first"
            self.compiled = compile_model(self.booster.model_to_string(), self.version, *self.lleaves)
        return self.compiled

    def predict_frame(self, frame: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """The task's answers: probabilities (binary: of the positive class; multiclass: one
        column per class) or a regression's prediction on the label's own scale."""
        return self.predict_matrix(self.pipeline.transform_frame(frame), num_threads)

    def predict_matrix(self, x: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Booster.predict on encoded rows, as answered: the task's output, calibrated. One
        row takes LightGBM's single-row fast path (`mlsys.model.fastrow`: the same numbers)."""
        if len(x) == 1:
            if self._row is None:
                self._row = SingleRow(self.booster)
            raw = self._row(x[0])
            raw = raw[None, :] if self.task.kind == "multiclass" else raw
        elif self.lleaves is not None:
            raw = self._compiled()(x, num_threads)
        else:
            raw = self.booster.predict(x, num_threads=num_threads)
        return calib.apply(self.calibration, self.task.output(raw))


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
    task = meta.get("task")
    calibration = (
        read_json(directory / CALIBRATION_FILE, "the calibration") if (directory / CALIBRATION_FILE).exists() else None
    )
    return Model(booster, pipeline, bundle_version(directory, task), meta, Task.from_spec(meta), calibration)
