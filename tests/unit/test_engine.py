"""The Dask engine on a real LocalCluster of 2 worker processes (and on a scheduler and workers
started with the `dask` CLI on 127.0.0.1): lightgbm.dask trains a fixed number of rounds, the
model is cut at its best valid iteration and is a plain model; its quality is the local
model's; batch scoring by partition gives the local answers, in order."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys import engine
from mlsys.config.schema import DaskConfig, FeaturesConfig, ModelConfig, TrainingConfig
from mlsys.data.columns import LABEL
from mlsys.errors import ConfigError, ContractError
from mlsys.features import fit_pipeline
from mlsys.model import Model, load_model, save_model_dir, train
from mlsys.tasks import Task
from tests.conftest import engine_at

DASK = OmegaConf.structured(DaskConfig(n_workers=2, threads_per_worker=1, memory_limit="1GiB"))
MODEL = OmegaConf.merge(
    OmegaConf.structured(ModelConfig),
    {"params": {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 20}, "num_boost_round": 120},
)
TRAINING = OmegaConf.structured(TrainingConfig(num_threads=1))
TASKS = [
    Task("binary"),
    Task("regression", objective="regression"),
    Task("multiclass", ("a", "b", "c"), "none", "multiclass"),
]


def _frame(n: int, seed: int, task: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hour, temp = rng.integers(0, 24, n), rng.normal(15, 8, n)
    kind = rng.choice(["bike", "scooter", "car"], n)
    signal = 2.5 * np.exp(-((hour - 17) ** 2) / 6) + 0.06 * temp + 0.5 * (kind == "bike") + rng.normal(0, 0.5, n)
    label = {"binary": signal > 1.2, "regression": signal, "multiclass": np.digitize(signal, [0.6, 1.6])}[task]
    return pd.DataFrame({"hour": hour.astype(float), "temp": temp, "kind": kind, LABEL: label.astype(float)})


def _data(task: Task):
    tr, va = _frame(6000, 0, task.kind), _frame(2000, 1, task.kind)
    columns = {"hour": {"source": "hour"}, "temp": {"source": "temp"}}
    columns["kind"] = {"source": "kind", "type": "categorical", "transform": "vocab"}
    spec = {"name": "t", "columns": columns}
    pipeline = fit_pipeline(OmegaConf.merge(OmegaConf.structured(FeaturesConfig), spec), tr)
    return pipeline, tr, va


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.kind)
def test_dask_training_matches_local_quality_and_saves_a_plain_model(dask_client, task, tmp_path):
    pipeline, tr, va = _data(task)
    x, xv = pipeline.transform_frame(tr), pipeline.transform_frame(va)
    y, yv = tr[LABEL].to_numpy(), va[LABEL].to_numpy()
    local = train(x, y, xv, yv, pipeline, MODEL, TRAINING, task)
    dask = engine.train_dask(dask_client, x, y, xv, yv, pipeline, MODEL, TRAINING, task, DASK)
    assert dask.booster.current_iteration() == MODEL.num_boost_round  # a fixed number of rounds
    curve = dask.history[f"valid/{task.primary}"]
    metric = task.metrics[task.primary]
    assert curve[dask.best_iteration - 1] * metric.direction == max(v * metric.direction for v in curve)
    save_model_dir(tmp_path, dask.booster, dask.best_iteration, pipeline, {"task": task.spec()})
    saved = load_model(tmp_path)  # a plain model, cut at the best iteration: serving is unchanged
    assert saved.booster.current_iteration() == dask.best_iteration
    figure = metric.fn(task.truth(yv), saved.predict_matrix(xv), 10)
    assert figure == pytest.approx(curve[dask.best_iteration - 1], rel=1e-9)
    mine = metric.fn(task.truth(yv), task.output(local.booster.predict(xv, num_iteration=local.best_iteration)), 10)
    assert abs(figure - mine) <= 0.02 * max(abs(mine), 1.0)  # the same quality as local training


def test_batch_scoring_by_partition_gives_the_local_answers_in_order(dask_client):
    task = TASKS[2]
    pipeline, tr, va = _data(task)
    trained = train(pipeline.transform_frame(tr), tr[LABEL].to_numpy(), pipeline.transform_frame(va),
                    va[LABEL].to_numpy(), pipeline, MODEL, TRAINING, task)  # fmt: skip
    model = Model(trained.booster, pipeline, "t", {}, task)
    local = engine.answers(model, va, OmegaConf.structured({"kind": "local", "dask": DaskConfig()}))
    spread = engine.answers(model, va, engine_at(dask_client, partitions=7))
    assert spread.shape == (len(va), 3) and np.array_equal(spread, local)
    assert list(pipeline.inputs(va.assign(extra=1.0))) == ["hour", "temp", "kind"]  # what travels
    with pytest.raises(ContractError, match=r"lacks source columns \['temp'\]"):  # named as locally
        engine.answers(model, va.drop(columns="temp"), engine_at(dask_client, partitions=2))


def test_workers_score_with_the_compiled_model_when_the_backend_is_lleaves(dask_client, tmp_path):
    """The workers' copies compile the model themselves (its cache emptied after the stage's
    compile: the file is written again) and answer as the stage's compiled model does."""
    task = TASKS[0]
    pipeline, tr, va = _data(task)
    trained = train(pipeline.transform_frame(tr), tr[LABEL].to_numpy(), pipeline.transform_frame(va),
                    va[LABEL].to_numpy(), pipeline, MODEL, TRAINING, task)  # fmt: skip
    model = Model(trained.booster, pipeline, "t-lleaves", {}, task)
    model.use_backend("lleaves", tmp_path / "compiled")
    here = task.matrix(model.predict_frame(va))
    model.compiled.path.unlink()
    spread = engine.answers(model, va, engine_at(dask_client, partitions=3))
    assert model.compiled.path.exists()  # compiled again, by a worker
    assert np.array_equal(spread, here)
    booster = task.matrix(trained.booster.predict(pipeline.transform_frame(va)))
    np.testing.assert_allclose(spread, booster, rtol=0, atol=1e-12)


def test_an_address_nothing_answers_at_is_a_config_error_naming_the_key():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = OmegaConf.merge(DASK, {"address": f"tcp://127.0.0.1:{port}", "connect_timeout": "2s"})
    with pytest.raises(ConfigError, match=r"engine\.dask\.address"), engine.client(cfg):
        pass


@pytest.mark.slow
def test_a_scheduler_and_workers_started_with_the_dask_cli(tmp_path):
    """As a user would on machines: `dask scheduler`, then `dask worker` twice, each its own process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = f"{sys.prefix}/bin"
    procs = [subprocess.Popen([f"{bin_dir}/dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=tmp_path, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        procs += [
            subprocess.Popen(
                [f"{bin_dir}/dask", "worker", address, "--nthreads", "1", "--no-dashboard", "--memory-limit", "1GiB"],
                cwd=tmp_path,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        cfg = OmegaConf.merge(DASK, {"address": address, "connect_timeout": "30s"})
        task = TASKS[0]
        pipeline, tr, va = _data(task)
        x, xv = pipeline.transform_frame(tr), pipeline.transform_frame(va)
        with engine.client(cfg) as dask:
            deadline = time.time() + 60
            while len(dask.scheduler_info()["workers"]) < 2 and time.time() < deadline:
                time.sleep(0.2)
            assert len(dask.scheduler_info()["workers"]) == 2
            result = engine.train_dask(dask, x, tr[LABEL].to_numpy(), xv, va[LABEL].to_numpy(), pipeline, MODEL,
                                       TRAINING, task, cfg)  # fmt: skip
        model = Model(result.booster, pipeline, "t", {}, task)
        remote = engine.answers(model, va, OmegaConf.create({"kind": "dask", "dask": cfg}))
        assert np.array_equal(remote[:, 0], model.predict_matrix(xv)) and 0.5 < result.best_iteration <= 120
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)


def test_rows_are_cut_one_slice_per_worker_or_per_million_rows(dask_client):
    from mlsys.cluster import partitions

    auto = OmegaConf.structured(DaskConfig())
    assert [partitions(n, auto, dask_client) for n in (1, 10, 1_000_000, 2_500_000)] == [1, 2, 2, 3]
    assert partitions(2_500_000, OmegaConf.merge(auto, {"partitions": 7}), dask_client) == 7


def test_training_chunks_are_spread_over_the_workers_in_turn(dask_client):
    """Each worker holds an equal share of the train rows (left to Dask, both chunks followed
    the task holding the whole array to one worker, and LightGBM trained there alone); 3
    partitions on 2 workers become 4 chunks, 2 each."""
    from distributed import wait

    x = np.arange(40 * 3, dtype=np.float64).reshape(40, 3)
    y = np.arange(40, dtype=np.float64)
    config = OmegaConf.merge(OmegaConf.structured(DaskConfig()), {"partitions": 3})
    dx, dy = engine._placed(dask_client, x, y, config)
    assert np.array_equal(dx.compute(), x) and np.array_equal(dy.compute(), y)
    assert dx.chunks[0] == dy.chunks[0] == (10, 10, 10, 10)
    workers = sorted(dask_client.scheduler_info()["workers"])
    for array in (dx, dy):
        chunks = dask_client.compute(array.to_delayed().flatten().tolist())
        wait(chunks)
        held = dask_client.who_has(chunks)
        assert [held[c.key] for c in chunks] == [(workers[i % 2],) for i in range(4)]
