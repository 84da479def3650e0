"""Where the work runs (`engine.kind`): here (local), or on a Dask cluster (dask).

`engine.dask.address: null` starts a `LocalCluster` for the stage (workers, threads and memory
from the config) and stops it after; an address (`tcp://host:8786`) connects to a running
scheduler (`dask scheduler` + `dask worker`, dask-kubernetes, dask-jobqueue, dask-gateway).
The same stages write the same outputs either way; what runs on the cluster:

- **train** (`train_dask`): LightGBM's own `lightgbm.dask`, data-parallel over the workers'
  partitions of the encoded train window. It cannot stop early, so it trains a fixed number
  of rounds and the best iteration is picked afterwards on the valid window, as early stopping
  would have (the task's primary metric); the saved model is a plain model cut at that
  iteration, so everything downstream (evaluation, bundle, serving) is unchanged. Not
  byte-deterministic: which worker takes which rank is lightgbm.dask's choice.
- **batch scoring** (`answers`): the rows cut into slices, each scored on a worker by the same
  model object (the one feature path; lleaves compiled there when it is the backend), in order.
- **validate, build**: `mlsys.data.sliced`; **featurize**: `mlsys.features.sliced`; the
  monitor's log: `mlsys.monitoring.sliced`.

The cluster itself (a LocalCluster or an address): `mlsys.cluster`.
"""

from __future__ import annotations

import functools
import pickle
import warnings
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.cluster import client, cuts, partitions, stream
from mlsys.errors import ConfigError
from mlsys.features import FeaturePipeline
from mlsys.model import Model, TrainResult, lgb_params
from mlsys.tasks import Task

_LINKS = {  # LightGBM objective -> what turns a summed raw score into its answer
    "binary": "sigmoid",
    "cross_entropy": "sigmoid",
    "multiclass": "softmax",
    "poisson": "exp",
    "gamma": "exp",
    "tweedie": "exp",
}


def _answers(raw: np.ndarray, objective: str) -> np.ndarray:
    link = _LINKS.get(objective, "identity")
    if link == "sigmoid":
        return 1.0 / (1.0 + np.exp(-raw))
    if link == "softmax":
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return np.exp(raw) if link == "exp" else raw


def best_iteration(booster: Any, xv: np.ndarray, yv: np.ndarray, task: Task) -> tuple[int, list[float]]:
    """The iteration the task's primary metric on valid is best at, and the metric by iteration:
    each iteration's trees scored once (raw scores summed), so the whole curve costs about one
    prediction of the valid window."""
    metric = task.metrics[task.primary]
    truth = task.truth(yv)
    total = booster.current_iteration()
    raw: np.ndarray | None = None
    curve = []
    for it in range(total):
        step = booster.predict(xv, start_iteration=it, num_iteration=1, raw_score=True)
        raw = step if raw is None else raw + step
        curve.append(float(metric.fn(truth, task.output(_answers(raw, task.objective)), 10)))
    full = task.output(booster.predict(xv, num_iteration=total))
    if not np.allclose(task.output(_answers(raw, task.objective)), full, rtol=1e-6, atol=1e-9):
        raise ConfigError(
            f"model.params.objective: {task.objective!r} - engine dask cannot find its best iteration (its raw "
            "scores do not sum to its answers as mlsys.engine knows them); train it with engine: local"
        )
    values = np.asarray(curve) * metric.direction
    return int(np.argmax(values)) + 1, curve  # the first best, as early stopping keeps


def train_dask(
    dask: Any,
    x: np.ndarray,
    y: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    pipeline: FeaturePipeline,
    model: DictConfig,
    training: DictConfig,
    task: Task,
    cfg: DictConfig,
) -> TrainResult:
    """`lightgbm.dask` on the cluster of `dask` (a Client), a fixed `model.num_boost_round`,
    then cut at the best iteration on valid."""
    import lightgbm as lgb
    from lightgbm.dask import DaskLGBMRegressor

    params = lgb_params(model, training, task)
    params.pop("num_threads", None)  # lightgbm.dask uses each worker's own threads
    dx, dy = _placed(dask, x, task.target(y).astype("float64"), cfg)
    # The regressor wrapper trains any objective (binary, multiclass with num_class): only the
    # booster is kept, so the classifier's label encoding is not wanted.
    estimator = DaskLGBMRegressor(client=dask, n_estimators=model.num_boost_round, **params)
    with warnings.catch_warnings():
        # Emitted on every fit for the constructor's default n_jobs (LightGBM issue #6797).
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
        estimator.fit(dx, dy, feature_name=pipeline.names, categorical_feature=pipeline.categorical)
    booster = lgb.Booster(model_str=estimator.booster_.model_to_string())
    best, curve = best_iteration(booster, xv, yv, task)
    return TrainResult(booster=booster, best_iteration=best, history={f"valid/{task.primary}": curve})


def _placed(dask: Any, x: np.ndarray, y: np.ndarray, cfg: DictConfig) -> tuple[Any, Any]:
    """`x` and `y` as Dask arrays whose chunk i is held by worker i (sorted, in turn), the
    chunks a multiple of the workers: each worker trains on an equal share (LightGBM's workers
    wait for the slowest every round). Left to `da.from_array`, the chunks follow the one task
    that holds the whole array, and on a running cluster both went to one worker: LightGBM then
    trained there alone, on one thread (1M flights: 96-108 s against 71 s on two)."""
    import dask.array as da

    workers = sorted(dask.scheduler_info()["workers"])
    n = -(-partitions(len(x), cfg, dask) // len(workers)) * len(workers)
    xs, ys = [], []
    for i, (a, b) in enumerate(cuts(len(x), n)):
        fx, fy = dask.scatter([x[a:b], y[a:b]], workers=[workers[i % len(workers)]], hash=False)
        xs.append(da.from_delayed(fx, shape=(b - a, x.shape[1]), dtype=x.dtype))
        ys.append(da.from_delayed(fy, shape=(b - a,), dtype=y.dtype))
    return da.concatenate(xs), da.concatenate(ys)


def answers(model: Model, frame: pd.DataFrame, cfg: DictConfig) -> np.ndarray:
    """The task's answers for `frame` (`task.matrix`): here, or slice by slice on the cluster
    of `cfg` (the `engine` section), sent as the workers take them, in the frame's order."""
    if cfg.kind != "dask" or frame.empty:
        return model.task.matrix(model.predict_frame(frame))
    import cloudpickle

    with client(cfg.dask) as dask:
        # Sent as its pickled bytes, unpickled once per worker (`_unpickled`): a model object
        # sent as such is pickled again for each worker it is copied to (its booster as text,
        # ~0.1 s per 1,000 trees each time; 1M flights: 1.2-2.4 s for the broadcast, 0.15 s now).
        [shipped] = dask.scatter([cloudpickle.dumps(model)], broadcast=True, hash=False)
        rows = cuts(len(frame), partitions(len(frame), cfg.dask, dask))
        frame = model.pipeline.inputs(frame)  # the columns it reads travel, not the whole table's
        parts = (frame.iloc[a:b] for a, b in rows)
        return np.concatenate(stream(dask, _score_part, parts, shipped, total=len(rows), description="score"))


def _score_part(rows: pd.DataFrame, pickled: bytes) -> np.ndarray:
    model = _unpickled(pickled)
    return model.task.matrix(model.predict_frame(rows, num_threads=1))


@functools.lru_cache(maxsize=2)
def _unpickled(pickled: bytes) -> Model:
    """The model of a worker's copy of the bytes, unpickled by its first slice (a bytes object
    keeps its hash: a later slice's lookup costs no rehash)."""
    return pickle.loads(pickled)
