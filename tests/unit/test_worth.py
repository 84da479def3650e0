"""Feature worth and cost on small real LightGBM models: a random-noise input is found useless,
a strong one is not, by the shuffle and by leave-one-out retrains, for each task; a looked-up
input carries the online read's cost and its upstream table; groups are judged together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlsys.config.schema import DataConfig, FeaturesConfig, ModelConfig, TrainingConfig, WorthConfig
from mlsys.data.columns import LABEL
from mlsys.errors import ConfigError
from mlsys.features import fit_pipeline
from mlsys.model import Model, train
from mlsys.model.worth import Windows, study
from mlsys.tasks import Task

INPUTS = ("hour", "temp", "humidity", "noise")
DATA = OmegaConf.merge(
    OmegaConf.structured(DataConfig),
    {
        "name": "rides",
        "primary": "rides",
        "key": ["ride_id"],
        "lookup_joins": [{"source": "weather", "key": "station", "columns": ["temp", "humidity"]}],
    },
)
MODEL = OmegaConf.merge(
    OmegaConf.structured(ModelConfig), {"params": {"learning_rate": 0.1, "num_leaves": 15}, "num_boost_round": 200}
)
TRAINING = OmegaConf.structured(TrainingConfig(num_threads=1))


def _frame(n: int, seed: int, task: str) -> pd.DataFrame:
    """Rides by hour (strong: a rush-hour peak), temperature (moderate), humidity (weak) and
    noise (none)."""
    rng = np.random.default_rng(seed)
    hour, temp, humidity = rng.integers(0, 24, n), rng.normal(15, 8, n), rng.normal(60, 15, n)
    signal = 2.5 * np.exp(-((hour - 17) ** 2) / 6) + 0.06 * temp - 0.01 * humidity + rng.normal(0, 0.4, n)
    label = {"binary": signal > 0.9, "regression": signal, "multiclass": np.digitize(signal, [0.4, 1.4])}[task]
    return pd.DataFrame(
        {
            "ride_id": np.arange(n) + seed * n,
            "station": rng.integers(0, 50, n),
            "hour": hour.astype(float),
            "temp": temp,
            "humidity": humidity,
            "noise": rng.normal(size=n),
            LABEL: label.astype(float),
        }
    )


def _study(task: Task, worth: dict | None = None, groups: dict | None = None) -> tuple[pd.DataFrame, dict]:
    train_rows, valid_rows = _frame(5000, 0, task.kind), _frame(2000, 1, task.kind)
    spec = {"name": "t", "columns": {c: {"source": c} for c in INPUTS}}
    pipeline = fit_pipeline(OmegaConf.merge(OmegaConf.structured(FeaturesConfig), spec), train_rows)
    windows = Windows(
        pipeline.transform_frame(train_rows), train_rows[LABEL].to_numpy(),
        pipeline.transform_frame(valid_rows), valid_rows[LABEL].to_numpy(),
    )  # fmt: skip
    trained = train(windows.x, windows.y, windows.xv, windows.yv, pipeline, MODEL, TRAINING, task)
    booster = trained.booster.model_to_string(num_iteration=trained.best_iteration)
    import lightgbm as lgb

    model = Model(lgb.Booster(model_str=booster), pipeline, "t", {}, task)
    cfg = OmegaConf.merge(OmegaConf.structured(WorthConfig), worth or {})
    return study(model, windows, valid_rows, cfg, groups or {}, MODEL, TRAINING, DATA)


@pytest.mark.parametrize(
    "task", [Task("binary"), Task("regression", objective="regression"), Task("multiclass", ("a", "b", "c"), "none",
                                                                              "multiclass")], ids=lambda t: t.kind
)  # fmt: skip
def test_a_noise_input_is_useless_and_a_strong_one_is_not(task):
    table, summary = _study(task)
    by = table.set_index("feature")
    assert by.at["noise", "verdict"] == "useless" and by.at["hour", "verdict"] == "useful"
    assert by.at["hour", "change"] > 0.01 and by.at["hour", "change"] > 20 * max(by.at["noise", "change"], 1e-4)
    assert (
        by.at["hour", "permutation_change"] > by.at["temp", "permutation_change"] > by.at["noise", "permutation_change"]
    )
    assert (by["decided_by"] == "leave-one-out").all() and summary["retrains"] == 4  # 4 inputs <= max_retrains
    assert summary["useless"] == ["noise"] and summary["measure"] == task.primary


def test_past_max_retrains_the_top_and_the_useless_are_retrained_and_groups_together():
    worth = {"max_retrains": 2, "top_k": 1}
    table, summary = _study(Task("binary"), worth, {"weather": ["temp", "humidity"]})
    by = table.set_index("feature")
    assert by.at["hour", "decided_by"] == "leave-one-out" and by.at["noise", "decided_by"] == "leave-one-out"
    assert set(by.index[by["decided_by"] == "permutation"]) == {"temp", "humidity"} and summary["retrains"] == 3
    assert by.at["group:weather", "verdict"] == "useful"
    assert by.at["group:weather", "gain_share"] == pytest.approx(
        by.at["temp", "gain_share"] + by.at["humidity", "gain_share"]
    )


def test_costs_name_the_upstream_and_the_online_read_of_looked_up_inputs():
    table, _ = _study(Task("binary"))
    by = table.set_index("feature")
    assert by.at["temp", "upstream"] == "weather" and by.at["temp", "served_from"].startswith("looked up")
    assert by.at["hour", "upstream"] == "rides" and by.at["hour", "served_from"] == "request"
    assert by.at["temp", "lookup_us_per_request"] > 0 and by.at["hour", "lookup_us_per_request"] == 0
    assert (by.loc[list(INPUTS), "transform_ns_per_row"] > 0).all()
    assert (by.loc[list(INPUTS), "transform_us_per_record"] > 0).all()


def test_a_group_naming_no_input_is_a_config_error():
    with pytest.raises(ConfigError, match=r"features.groups.*wx_temp"):
        _study(Task("binary"), groups={"weather": ["temp", "wx_temp"]})
