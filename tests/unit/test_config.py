"""Config: every option and experiment composes; typos and leakage fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mlsys import config
from mlsys.errors import ConfigError, StaleParamsError

REPO = Path(__file__).resolve().parents[2]
GROUPS = sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir() and p.name != "experiment")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_checks(group, option):
    cfg = OmegaConf.create(config.compose_yaml(REPO, [f"{group}={option}"]))
    config.check(config.load_sections(cfg, tuple(config.SECTIONS), "test"))


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes_and_differs_from_default(experiment):
    default = config.compose_yaml(REPO)
    text = config.compose_yaml(REPO, [f"experiment={experiment}"])
    config.check(config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test"))
    assert text != default, f"experiment {experiment} changes nothing"


def test_committed_params_equal_composition_of_conf():
    assert (REPO / "params.yaml").read_text() == config.compose_yaml(REPO)


def test_guard_passes_on_clean_checkout_and_stops_on_stale(tmp_path, monkeypatch):
    import shutil

    for item in ("conf", "hydra_plugins"):
        shutil.copytree(REPO / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert "matches" in config.guard(tmp_path)
    model = tmp_path / "conf" / "model" / "lightgbm.yaml"
    model.write_text(model.read_text().replace("num_leaves: 63", "num_leaves: 31"))
    with pytest.raises(StaleParamsError, match="mlsys compose"):
        config.guard(tmp_path)
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")  # what `dvc exp run` sets
    assert "dvc exp run" in config.guard(tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+model.params.num_leves=15",
            r"model\.params\.num_leves: not a LightGBM parameter; did you mean 'num_leaves'",
        ),
        ("model.params.num_leves=15", r"model\.params\.num_leves"),
        ("+data.bogus=1", r"data\.bogus"),
        ("model.num_boost_round=many", r"model\.num_boost_round"),
        ("training.seed=1.5", r"training\.seed"),
        ("data.prediction_lead=5", r"data\.prediction_lead: '5' is not a non-negative duration with a unit"),
        ("data.label.op=between", r"data\.label\.op: 'between' is not one of"),
        ("+contract.tables.flights.columns.year.minimum=3", r"contract\.tables\.flights\.columns\.year\.minimum"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        text = config.compose_yaml(REPO, [override])
        config.check(config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test"))


@pytest.mark.parametrize("column", ["dep_delay", "arr_time", "air_time", "dep_time", "arr_delay", "label"])
def test_after_outcome_model_input_is_a_config_error(column):
    with pytest.raises(ConfigError, match=rf"features\.columns\.distance\.source: '{column}' is known only after"):
        text = config.compose_yaml(REPO, [f"features.columns.distance.source={column}"])
        config.check(config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test"))


def test_declared_after_outcome_availability_is_a_config_error():
    with pytest.raises(ConfigError, match=r"features\.columns\.distance: declared availability 'after_outcome'"):
        text = config.compose_yaml(REPO, ["features.columns.distance.availability=after_outcome"])
        config.check(config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test"))


def test_stage_sections_match_dvc_yaml():
    import yaml

    from mlsys.stages import STAGES

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = {name: tuple(s.get("params", [])) for name, s in stages.items() if name != "guard"}
    assert declared == {name: s.sections for name, s in STAGES.items()}
    for name, stage in stages.items():
        assert stage["cmd"] == f"mlsys {name}"
        if name != "guard":
            assert "${paths.guard}" in stage["deps"], f"stage {name} does not depend on the guard"


def test_config_hash_covers_exactly_the_declared_sections():
    raw = config.read_params(REPO)
    train = config.load_sections(raw, ("features", "model", "training", "paths"), "t")
    changed_data = OmegaConf.merge(raw, {"data": {"prediction_lead": "3h"}})
    changed_model = OmegaConf.merge(raw, {"model": {"num_boost_round": 7}})
    same = config.load_sections(changed_data, ("features", "model", "training", "paths"), "t")
    other = config.load_sections(changed_model, ("features", "model", "training", "paths"), "t")
    assert config.config_hash(train) == config.config_hash(same)
    assert config.config_hash(train) != config.config_hash(other)
