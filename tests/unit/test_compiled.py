"""The lleaves backend (`inference.backend: lleaves`): the same answers as Booster.predict on
every task (missing values and a categorical input included), compiled once per version and
host and loaded from the cache after, refused with the config key named where it cannot run."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mlsys.errors import ConfigError
from mlsys.model.compiled import cache_name
from tests.unit.small_models import TASKS, small_model


@pytest.mark.parametrize("kind", list(TASKS))
def test_compiled_answers_equal_the_boosters_on_every_task(kind, tmp_path):
    model, x = small_model(kind)
    expected = model.predict_matrix(x)
    model.use_backend("lleaves", tmp_path)
    assert model.compiled is not None
    assert model.compiled.path.name == cache_name(model.version, inline=False)
    got = model.predict_matrix(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.array_equal(model.predict_matrix(x[:1]), expected[:1])  # one row: still the fast path
    model.use_backend("lightgbm", tmp_path)
    assert model.compiled is None


def test_the_cache_is_loaded_not_recompiled_and_keyed_by_version(tmp_path):
    model, x = small_model("binary")
    model.use_backend("lleaves", tmp_path)
    first = model.compiled.path
    stamp = first.stat().st_mtime_ns
    again, _ = small_model("binary")
    again.use_backend("lleaves", tmp_path)
    assert again.compiled.path == first and first.stat().st_mtime_ns == stamp  # loaded, not written
    np.testing.assert_allclose(again.predict_matrix(x), model.predict_matrix(x), rtol=0, atol=0)
    other, _ = small_model("binary", rounds=10)
    other.version = "another"
    other.use_backend("lleaves", tmp_path)
    assert other.compiled.path != first  # a new version compiles anew
    assert sorted(p.name for p in tmp_path.glob("*.o")) == sorted([first.name, other.compiled.path.name])
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_linear_trees_are_refused_naming_the_key(tmp_path):
    model, _ = small_model("regression", linear_tree=True)
    with pytest.raises(ConfigError, match=r"inference\.backend.*linear"):
        model.use_backend("lleaves", tmp_path)


def test_without_lleaves_installed_the_error_names_the_key_and_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lleaves", None)  # `import lleaves` raises ImportError
    model, _ = small_model("binary")
    with pytest.raises(ConfigError, match=r"inference.backend.*mlsys\[lleaves\]"):
        model.use_backend("lleaves", tmp_path)
