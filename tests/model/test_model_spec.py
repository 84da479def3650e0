"""Model spec tests (ML Test Score infra 2, model 1): LightGBM behaves as the spec says."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys.config.schema import FeatureConfig, FeaturesConfig, ModelConfig, TrainingConfig
from mlsys.features import fit_pipeline
from mlsys.model import load_model, save_model_dir, train
from mlsys.tasks import Task

BINARY = Task()

MODEL = OmegaConf.merge(
    OmegaConf.structured(ModelConfig),
    {
        "params": {"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 20},
        "num_boost_round": 60,
        "early_stopping_rounds": 1000,
    },
)
TRAINING = OmegaConf.structured(TrainingConfig(num_threads=1))


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n), "c": rng.choice(list("abcd"), n)})
    logit = 1.5 * frame["x"] - frame["z"] + (frame["c"] == "a") * 1.0
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.fixture(scope="module")
def setup():
    features = OmegaConf.merge(
        OmegaConf.structured(FeaturesConfig),
        {
            "name": "gen",
            "columns": {
                "x": OmegaConf.structured(FeatureConfig(source="x")),
                "z": OmegaConf.structured(FeatureConfig(source="z")),
                "c": OmegaConf.structured(FeatureConfig(source="c", type="categorical", transform="vocab")),
            },
        },
    )
    tr, va = _data(4000, 1), _data(1000, 2)
    pipeline = fit_pipeline(features, tr)
    xy = (pipeline.transform_frame(tr), tr["label"].to_numpy(), pipeline.transform_frame(va), va["label"].to_numpy())
    return pipeline, xy, va


def test_training_loss_decreases_over_rounds(setup):
    pipeline, (x, y, xv, yv), _ = setup
    history = train(x, y, xv, yv, pipeline, MODEL, TRAINING, BINARY).history["train/binary_logloss"]
    assert len(history) == MODEL.num_boost_round
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(history))  # monotone on train
    assert history[-1] < 0.8 * history[0]


def test_save_load_round_trip_gives_identical_predictions(setup, tmp_path):
    pipeline, (x, y, xv, yv), va = setup
    result = train(x, y, xv, yv, pipeline, MODEL, TRAINING, BINARY)
    save_model_dir(tmp_path, result.booster, result.best_iteration, pipeline, {})
    loaded = load_model(tmp_path)
    assert np.array_equal(loaded.predict_frame(va), result.booster.predict(xv, num_iteration=result.best_iteration))
    assert loaded.pipeline.names == pipeline.names


def test_warm_start_continues_from_the_saved_model(setup, tmp_path):
    pipeline, (x, y, xv, yv), _va = setup
    first = train(x, y, xv, yv, pipeline, MODEL, TRAINING, BINARY)
    save_model_dir(tmp_path, first.booster, first.best_iteration, pipeline, {})
    saved = load_model(tmp_path)
    more = _data(2000, 3)
    warm = train(
        pipeline.transform_frame(more),
        more["label"].to_numpy(),
        xv,
        yv,
        pipeline,
        MODEL,
        TRAINING,
        BINARY,
        init_model=saved.booster,
    )
    trees_first = saved.booster.dump_model()["tree_info"]
    trees_warm = warm.booster.dump_model()["tree_info"]
    assert len(trees_warm) > len(trees_first)
    assert trees_warm[: len(trees_first)] == trees_first  # the early trees are the saved ones


def test_two_trainings_give_identical_predictions_example_by_example(setup):
    pipeline, (x, y, xv, yv), _ = setup
    a = train(x, y, xv, yv, pipeline, MODEL, TRAINING, BINARY).booster.predict(xv)
    b = train(x, y, xv, yv, pipeline, MODEL, TRAINING, BINARY).booster.predict(xv)
    assert np.array_equal(a, b)
    other = OmegaConf.merge(TRAINING, {"seed": 3})
    params = OmegaConf.merge(MODEL, {"params": {"feature_fraction": 0.5}})
    c = train(x, y, xv, yv, pipeline, params, other, BINARY).booster.predict(xv)
    assert not np.array_equal(a, c)  # the comparison can fail
