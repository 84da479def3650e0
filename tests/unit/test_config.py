"""Config: every option and experiment composes; typos and leakage fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mlsys import config
from mlsys.data.checks import after_outcome_columns
from mlsys.errors import ConfigError, StaleParamsError

REPO = Path(__file__).resolve().parents[2]
GROUPS = sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir() and p.name != "experiment")


def _compose_and_check(overrides: list[str]) -> str:
    """What `mlsys compose` does: DVC's composition, then the typed and semantic checks."""
    text = config.compose_yaml(REPO, overrides)
    config.check(config.load_sections(OmegaConf.create(text), tuple(config.SECTIONS), "test"))
    return text


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_checks(group, option):
    _compose_and_check([f"{group}={option}"])


@pytest.mark.slow
@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes_and_differs_from_default(experiment):
    default = config.compose_yaml(REPO)
    text = _compose_and_check([f"experiment={experiment}"])
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


# Every bad-config case runs in the full suite; these few also in the fast tier.
FAST_CASES = {"+model.params.num_leves=15", "training.mode=daily", "model.params.learning_rate=-1",
              "data.aggregates.origin_dep_delay_3h.observed_after=null", "release.model_name=..",
              "contract.tables.flights.columns.dest.regex='[A-Z'", "data.label.column=arr_dealy",
              "split.periods.1.start=2013-08-01", "contract.tables.flights.columns.dep_delay.dtype=float"}  # fmt: skip
BAD_CONFIG = [
    (
        "+model.params.num_leves=15",
        r"model\.params\.num_leves: not a LightGBM parameter; did you mean 'num_leaves'",
    ),
    ("model.params.num_leves=15", r"model\.params\.num_leves"),
    ("+data.bogus=1", r"data\.bogus"),
    ("model.num_boost_round=many", r"model\.num_boost_round"),
    ("training.seed=1.5", r"training\.seed"),
    ("data.prediction_lead=5", r"data\.prediction_lead: '5' is not a non-negative duration with a unit"),
    ("data.label.op=between", r"data\.label\.op: Invalid value 'between', expected one of \[gt, ge"),
    ("training.mode=daily", r"training\.mode: Invalid value 'daily', expected one of \[static, dynamic\]"),
    ("inference.mode=lazy", r"inference\.mode: Invalid value 'lazy'"),
    ("features.columns.distance.transform=log", r"features\.columns\.distance\.transform: 'log' is not a built-in"),
    (
        "features.columns.distance.transform=nowhere.fn",
        r"features\.columns\.distance\.transform: 'nowhere\.fn' cannot be imported",
    ),
    ("+contract.tables.flights.columns.year.minimum=3", r"contract\.tables\.flights\.columns\.year\.minimum"),
    ("release.slices.min_rows=10", r"release\.slices\.min_rows: 10 is below evaluation\.min_slice_rows"),
    # availability: what is known when
    (
        "data.aggregates.origin_dep_delay_3h.observed_after=null",
        r"data\.aggregates\.origin_dep_delay_3h: 'dep_delay' is known at the event \+ dep_delay minutes, but "
        r"this aggregate observes a row at the event \+ 0h",
    ),
    (
        "data.aggregates.flight_arr_delay_7d.observed_lag=12h",
        r"data\.aggregates\.flight_arr_delay_7d: 'arr_delay' is known at the event \+ 1d.*\+ 12h",
    ),
    (
        "data.sources.flights.after_outcome.arr_delay.lag=null",
        r"data\.aggregates\.flight_arr_delay_7d\.value: 'arr_delay' is known only after .* does not say when",
    ),
    (
        "data.aggregates.origin_scheduled_1h.value=arr_delay",
        r"data\.aggregates\.origin_scheduled_1h: a schedule aggregate cannot read 'arr_delay'",
    ),
    ("data.sources.weather.available=static", r"data\.asof_joins\[0\]\.source: as-of joins read 'timestamped'"),
    ("data.sources.planes.available=timestamped", r"data\.lookup_joins\[0\]\.source: a plain lookup would see"),
    ("data.sources.planes.available=at_prediction", r"data\.sources\.planes\.available: only the primary"),
    # values LightGBM itself refuses, named by their key
    ("model.params.learning_rate=-1", r"model\.params\.learning_rate: LightGBM refuses -1: .*learning_rate"),
    ("model.params.num_leaves=1", r"model\.params\.num_leaves: LightGBM refuses 1"),
    ("+model.params.objective=bogus", r"model\.params\.objective: 'bogus' is not a known objective"),
    ("+model.params.objective=regression", r"model\.params\.objective: 'regression' is a regression objective, but"),
    ("data.label.classes=[a,b]", r"data\.label\.classes: only a multiclass label has one"),
    ("data.sources.weather.kind=sql", r"data\.sources\.weather\.path: only a file source has one"),
    ("data.sources.weather.url=sqlite:///w.db", r"data\.sources\.weather\.url: only a sql source has one"),
    ("data.label.threshold=null", r"data\.label\.op and data\.label\.threshold: give both"),
    ("data.label.task=multiclass", r"data\.label\.op: only a binary label has one"),
    # loss bounds and the registry's model name
    ("contract.tables.flights.max_quarantine_fraction=2", r"contract\.tables\.flights\.max_quarantine_fraction"),
    (
        "contract.tables.flights.columns.dest.regex='[A-Z'",
        r"contract\.tables\.flights\.columns\.dest\.regex: '\[A-Z' is not a regular expression: unterminated",
    ),
    ("data.sources.weather.volume.min_ratio=1.5", r"data\.sources\.weather\.volume: min_ratio 1\.5"),
    # columns and windows that cannot mean what they say (each was a traceback or silence later)
    ("contract.tables.flights.columns.dep_delay.dtype=float", r"dep_delay\.dtype: write 'float64', the dtype 'float'"),
    ("contract.tables.flights.columns.dep_delay.dtype=flaot64", r"dep_delay\.dtype: 'flaot64' is not a dtype"),
    ("contract.tables.flights.columns.dep_delay.min=3000", r"flights\.columns\.dep_delay: min 3000\.0 is above max"),
    ("+contract.tables.flights.columns.dep_delay.regex=x", r"dep_delay\.regex: a pattern reads text; this column is"),
    ("contract.tables.flights.columns.carrier.min=1", r"carrier: min/max bound numbers; this column is str"),
    ("contract.tables.flights.columns.origin.isin=[7,10]", r"origin\.isin: \[7, 10\] are not text like the column"),
    ("contract.tables.flights.columns.dep_delay.max_missing=1.5", r"dep_delay\.max_missing: 1\.5 is not a share"),
    ("contract.tables.weather.unique=[origin,time_houre]", r"weather\.unique: \['time_houre'\] are not columns"),
    ("data.key=[year,month,day,carrier,flihgt,origin]", r"data\.key: 'flihgt' \(did you mean 'flight'\?\) is not a"),
    ("data.label.column=arr_dealy", r"data\.label\.column: 'arr_dealy' \(did you mean 'arr_delay'\?\)"),
    ("data.event_time.tz=Europe/Berln", r"data\.event_time\.tz: 'Europe/Berln' is not a time zone"),
    ("split.tz=Europe/Berln", r"split\.tz: 'Europe/Berln' is not a time zone"),
    ("split.periods.1.start=2013-08-01", r"split\.periods: 'train' and 'valid' overlap"),
    ("split.periods.1.end=2013-08-01", r"split\.periods\[1\]: start 2013-09-01 must be before end 2013-08-01"),
    ("split.valid=validation", r"split\.valid: 'validation' is not a declared period"),
    ("features.columns.distance.clip_quantiles=[0.1]", r"distance\.clip_quantiles: \[0\.1\]: expected \[low, high\]"),
    ("features.columns.distance.clip_quantiles=[0.9,0.1]", r"distance\.clip_quantiles: \[0\.9, 0\.1\]: expected"),
    ("features.columns.carrier.min_count=-5", r"features\.columns\.carrier\.min_count: -5: expected at least 1"),
    ("release.model_name=..", r"release\.model_name: '\.\.' is not a model name"),
]


@pytest.mark.parametrize(
    ("override", "message"),
    [pytest.param(o, m, marks=() if o in FAST_CASES else pytest.mark.slow) for o, m in BAD_CONFIG],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        _compose_and_check([override])


def test_an_arrival_observed_at_departure_time_is_a_leak():
    """`value: arr_delay, observed_after: dep_delay` would let the arrival in at departure."""
    leak = [
        "data.aggregates.flight_arr_delay_7d.observed_after=dep_delay",
        "data.aggregates.flight_arr_delay_7d.observed_lag=0h",
    ]
    with pytest.raises(ConfigError, match=r"'arr_delay' is known at the event \+ 1d, but this aggregate observes a row "
                       r"at the event \+ dep_delay minutes"):  # fmt: skip
        _compose_and_check(leak)


@pytest.mark.parametrize("column", ["dep_delay", "arr_time", "air_time", "dep_time", "arr_delay", "label"])
def test_after_outcome_model_input_is_a_config_error(column):
    with pytest.raises(ConfigError, match=rf"features\.columns\.distance\.source: '{column}' is known only after"):
        _compose_and_check([f"features.columns.distance.source={column}"])


def test_declared_after_outcome_availability_is_a_config_error():
    with pytest.raises(ConfigError, match=r"features\.columns\.distance: declared availability 'after_outcome'"):
        _compose_and_check(["features.columns.distance.availability=after_outcome"])


def test_stage_receives_and_hashes_exactly_its_keys(monkeypatch):
    """Through the CLI's own path: train sees model, the label (its task), the training keys it
    reads and paths; another data edit or training key does not change its hash, a model edit does."""
    from mlsys.config import provenance
    from mlsys.stages import STAGES

    monkeypatch.chdir(REPO)
    train, _ = config.stage_config(STAGES["train"].params)
    assert set(train) == {"model", "data", "training", "engine", "paths"} and set(train.data) == {"label"}
    validate, _ = config.stage_config(STAGES["validate"].params)
    assert set(validate) == {"data", "contract", "engine", "paths"}
    assert set(validate.data) == {"sources", "primary", "event_time", "derived"}
    assert set(validate.contract) == {"tables"}
    base = provenance("train", train)["config_hash"]
    lead, _ = config.stage_config(STAGES["train"].params, ["data.prediction_lead=3h"])
    rounds, _ = config.stage_config(STAGES["train"].params, ["model.num_boost_round=7"])
    warm, _ = config.stage_config(STAGES["train"].params, ["training.warm_rounds=9"])
    assert provenance("train", lead)["config_hash"] == base
    assert provenance("train", warm)["config_hash"] == base  # a backtest-only key does not retrain
    assert provenance("train", rounds)["config_hash"] != base
    assert set(train.training) == {"seed", "num_threads", "deterministic", "force", "curve_rows"}  # what it reads


def test_a_checked_params_file_gives_each_stage_the_same_keys_as_a_full_load(monkeypatch):
    """Once params.yaml passed its checks, a stage types only its own sections: the same config."""
    from mlsys.config.compose import CHECKED
    from mlsys.stages import STAGES

    monkeypatch.chdir(REPO)
    full = config.load_sections(config.read_params(REPO), tuple(config.SECTIONS), "t")
    for name in ("train", "validate", "evaluate", "release"):
        config.stage_config(STAGES[name].params)  # checks (or finds them done) and records it
        assert (REPO / CHECKED).exists()
        got, _ = config.stage_config(STAGES[name].params)
        assert got == config.select(full, STAGES[name].params)


def test_leaky_feature_is_caught_whichever_stage_runs(monkeypatch):
    from mlsys.stages import STAGES

    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match=r"features\.columns\.distance\.source: 'dep_delay'"):
        config.stage_config(STAGES["snapshot"].params, ["features.columns.distance.source=dep_delay"])


def test_joined_after_outcome_columns_are_leaky_under_their_prefix():
    raw = config.read_params(REPO)
    data = OmegaConf.merge(
        config.load_sections(raw, ("data",), "t").data, {"sources": {"weather": {"after_outcome": {"visib": {}}}}}
    )
    assert "wx_visib" in after_outcome_columns(data)


def test_unknown_release_metric_is_a_config_error():
    raw = config.read_params(REPO)
    full = config.load_sections(raw, tuple(config.SECTIONS), "t")
    bad = OmegaConf.merge(full, {"release": {"change": {"acu": {"max_worsening": 0.1}}}})
    with pytest.raises(ConfigError, match=r"release\.change\.acu: 'acu' is not a metric of the binary task"):
        config.check(bad, lightgbm=False)
