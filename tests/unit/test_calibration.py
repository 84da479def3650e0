"""Post-hoc calibration (mlsys.model.calibration): it calibrates, it is what scikit-learn
computes, it survives JSON, and a calibrated bundle answers calibrated on every path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from mlsys.errors import ConfigError, ContractError, IntegrityError
from mlsys.model import calibration as calib
from mlsys.model import load_model, save_model_dir, train
from mlsys.model.integrity import CALIBRATION_FILE
from mlsys.tasks import Task, expected_calibration_error

BINARY, MULTI = Task(), Task("multiclass", ("a", "b", "c"), objective="multiclass")


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < truth).astype(int)
    return y, truth**3  # a model whose scores are far too low


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_fitted_on_one_window_calibrates_another(method):
    y, p = _overconfident(5000, 0)
    state = json.loads(json.dumps(calib.fit(method, BINARY, y, p)))  # as the bundle stores it
    y_new, p_new = _overconfident(5000, 1)
    before = expected_calibration_error(y_new, p_new, 10)
    after = expected_calibration_error(y_new, calib.apply(state, p_new), 10)
    assert before > 0.15 and after < 0.04, (before, after)  # from about 0.26


def test_isotonic_is_scikit_learns():
    from sklearn.isotonic import IsotonicRegression

    y, p = _overconfident(2000, 2)
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y)
    grid = np.linspace(-0.1, 1.1, 301)
    assert np.allclose(calib.apply(calib.fit("isotonic", BINARY, y, p), grid), iso.predict(grid))


def test_multiclass_rows_stay_distributions():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 3000)
    p = rng.dirichlet([1, 1, 1], 3000)
    out = calib.apply(calib.fit("isotonic", MULTI, y, p), p)
    assert out.shape == p.shape and np.allclose(out.sum(axis=1), 1) and (out >= 0).all()


def test_what_cannot_be_calibrated_is_refused():
    with pytest.raises(ConfigError, match=r"model.calibration: 'platt' calibrates probabilities; a regression"):
        calib.check("platt", Task("regression", objective="regression"))
    with pytest.raises(ContractError, match=r"needs both outcomes of every class in the validation window"):
        calib.fit("platt", BINARY, np.zeros(10), np.linspace(0.1, 0.9, 10))


def test_a_calibrated_model_folder_answers_calibrated_and_is_its_own_version(tmp_path):
    import pandas as pd

    from mlsys.config.schema import FeatureConfig, FeaturesConfig, ModelConfig, TrainingConfig
    from mlsys.features import fit_pipeline

    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": rng.normal(size=2000)})
    frame["label"] = (rng.random(2000) < 1 / (1 + np.exp(-2 * frame["x"]))).astype(int)
    features = OmegaConf.merge(
        OmegaConf.structured(FeaturesConfig),
        {"name": "t", "columns": {"x": OmegaConf.structured(FeatureConfig(source="x"))}},
    )
    pipeline = fit_pipeline(features, frame)
    model = OmegaConf.merge(OmegaConf.structured(ModelConfig), {"num_boost_round": 20, "early_stopping_rounds": 100})
    x, y = pipeline.transform_frame(frame), frame["label"].to_numpy()
    result = train(x, y, x, y, pipeline, model, OmegaConf.structured(TrainingConfig(num_threads=1)), BINARY)
    raw = result.booster.predict(x)
    state = calib.fit("isotonic", BINARY, y, raw)
    plain = load_model(save_model_dir(tmp_path / "plain", result.booster, 20, pipeline, {}))
    calibrated = load_model(save_model_dir(tmp_path / "cal", result.booster, 20, pipeline, {}, state))
    assert np.allclose(plain.predict_frame(frame), raw)
    assert np.allclose(calibrated.predict_frame(frame), calib.apply(state, raw))
    assert np.allclose(calibrated.predict_matrix(x), calibrated.predict_frame(frame))  # the server's path
    assert calibrated.version != plain.version
    (tmp_path / "cal" / CALIBRATION_FILE).write_text(json.dumps({**state, "method": "platt"}))
    with pytest.raises(IntegrityError, match=CALIBRATION_FILE):
        load_model(tmp_path / "cal")
