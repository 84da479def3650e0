"""Typed configuration: the schema of every `conf/` group, composition and checks.

The dataclasses below are registered in Hydra's ConfigStore as `mlsys_schema`
(by `hydra_plugins/mlsys_schema`, so DVC's own composition sees it too), and
`conf/config.yaml` lists it first in its defaults: an unknown key or a wrong type
fails composition with the key's full path. Checks a schema cannot express
(LightGBM parameter names, feature availability, durations) live in `check()`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from mlsys.errors import ConfigError, StaleParamsError

SCHEMA_NAME = "mlsys_schema"
PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"


# --- data ------------------------------------------------------------------------------
@dataclass
class TimeColumn:
    """A timestamp column as stored in a source: its text format and time zone."""

    tz: str = "UTC"
    format: str = "ISO8601"


@dataclass
class SourceConfig:
    """One upstream table: a file, or a file shipped inside an installed package.

    `available` says when its values are known: `at_prediction` (the primary table: one
    row per event, known at prediction time except the `after_outcome` columns),
    `timestamped` (each row known from one of its time columns + lag: joined only as of the
    prediction time), or `static` (reference data known in advance: plain lookups).
    """

    kind: str = MISSING  # package | csv | parquet
    path: str = MISSING  # file path, or a resource path inside `package`
    package: str | None = None
    available: str = MISSING  # at_prediction | timestamped | static
    time_columns: dict[str, TimeColumn] = field(default_factory=dict)
    # Columns whose value is known only after the outcome (leakage if used as input).
    after_outcome: list[str] = field(default_factory=list)


@dataclass
class EventTime:
    """How the event timestamp is built: from local date/time parts in `tz`."""

    parts: dict[str, str] = field(default_factory=dict)  # year/month/day/hour/minute -> column
    column: str | None = None  # or an existing timestamp column (declared in time_columns)
    tz: str = "UTC"


@dataclass
class LabelConfig:
    column: str = MISSING
    op: str = "gt"  # gt | ge | lt | le | eq | ne
    threshold: float = 0.0
    missing: str = "exclude"  # exclude | fail: rows whose label column is null


@dataclass
class AsofJoin:
    """Latest row of `source` with the same `by` keys observed by the prediction time."""

    source: str = MISSING
    by: list[str] = field(default_factory=list)
    time: str = MISSING  # a time column of `source`
    lag: str = "0h"  # a row stamped t is available at t + lag
    tolerance: str = "3h"
    columns: list[str] = field(default_factory=list)
    prefix: str = ""


@dataclass
class LookupJoin:
    """Static attributes of an entity (e.g. plane metadata): a plain left join."""

    source: str = MISSING
    key: str = MISSING  # key column, same name on both sides
    columns: list[str] = field(default_factory=list)
    prefix: str = ""


@dataclass
class Aggregate:
    """Point-in-time aggregate over the primary table's own rows.

    `known: past` aggregates rows observed in (prediction time - window, prediction time],
    a row being observed at its event time plus `observed_after` minutes (a column, e.g.
    the departure delay: a departure is seen when it happens) plus `observed_lag`;
    `known: schedule` counts rows whose event time is within +-window of this event
    (schedules are published in advance).
    """

    by: list[str] = field(default_factory=list)
    value: str | None = None
    stat: str = "mean"  # mean | sum | count | last
    window: str = "3h"
    known: str = "past"  # past | schedule
    observed_after: str | None = None
    observed_lag: str = "0h"


@dataclass
class DataConfig:
    name: str = MISSING
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    primary: str = MISSING
    key: list[str] = field(default_factory=list)
    event_time: EventTime = field(default_factory=EventTime)
    prediction_lead: str = "0h"
    label: LabelConfig = field(default_factory=LabelConfig)
    asof_joins: list[AsofJoin] = field(default_factory=list)
    lookup_joins: list[LookupJoin] = field(default_factory=list)
    aggregates: dict[str, Aggregate] = field(default_factory=dict)
    on_upstream_change: str = "adopt"  # adopt | fail


# --- contracts -------------------------------------------------------------------------
@dataclass
class ColumnContract:
    dtype: str | None = None  # int64, float64, str, bool, datetime64[us, UTC], ...
    nullable: bool = True
    required: bool = True
    min: float | None = None
    max: float | None = None
    isin: list[Any] | None = None
    regex: str | None = None
    unique: bool = False
    max_missing: float | None = None  # fraction of nulls allowed (frame-level)


@dataclass
class VolumeBand:
    """Rows of a new snapshot of a table, as a ratio of the previous snapshot's (TFDV's
    span comparator): outside the band the new data is not adopted."""

    min_ratio: float = 0.5
    max_ratio: float = 2.0


@dataclass
class TableContract:
    policy: str = "fail"  # fail | quarantine
    # Quarantine may keep this share of the rows at most; more fails the table (data loss).
    max_quarantine_fraction: float = 0.01
    volume: VolumeBand | None = field(default_factory=VolumeBand)  # null: any row count is adopted
    min_rows: int | None = None
    max_rows: int | None = None
    unique: list[str] = field(default_factory=list)  # columns unique together
    strict: bool = False  # extra columns are an error
    columns: dict[str, ColumnContract] = field(default_factory=dict)
    # Escape hatch: a Python function returning a pandera DataFrameSchema, applied after.
    python_schema: dict[str, Any] | None = None
    examples: int = 5


@dataclass
class ContractConfig:
    tables: dict[str, TableContract] = field(default_factory=dict)  # one per source
    dataset: TableContract | None = None  # the built modelling table (build stage output)


# --- features --------------------------------------------------------------------------
@dataclass
class FeatureConfig:
    """One model input: where it comes from, its type, transform and availability."""

    source: str = MISSING  # a column of the built dataset
    type: str = "numeric"  # numeric | categorical
    transform: str = "identity"  # identity | clip | vocab | hhmm_minutes | day_of_week | ...
    availability: str = "at_prediction"  # at_prediction | after_outcome
    clip_quantiles: list[float] = field(default_factory=lambda: [0.001, 0.999])
    impute: str | None = None  # median | zero | None (LightGBM handles missing)
    min_count: int = 1  # vocab: rarer categories are treated as unknown
    max_categories: int = 1000


@dataclass
class FeaturesConfig:
    name: str = MISSING
    columns: dict[str, FeatureConfig] = field(default_factory=dict)


# --- split, model, training, evaluation ------------------------------------------------
@dataclass
class Period:
    name: str = MISSING
    start: str = MISSING  # inclusive, local date in split.tz
    end: str = MISSING  # exclusive


@dataclass
class SplitConfig:
    tz: str = "UTC"
    periods: list[Period] = field(default_factory=list)
    train: str = "train"
    valid: str = "valid"
    test: str = "test"


@dataclass
class ModelConfig:
    name: str = "lightgbm"
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50


@dataclass
class DataCheckConfig:
    """What new data must pass before a dynamic retrain adopts it (vs the previous period)."""

    min_rows: int = 1000
    max_psi: float = 0.25  # per feature, against the previous period's profile
    max_missing_change: float = 0.25  # change in a feature's share of missing values
    expected_drift: list[str] = field(default_factory=list)  # fnmatch patterns: PSI reported, not gated


@dataclass
class TrainingConfig:
    mode: str = "static"  # static: train once on split.train | dynamic: windows roll with the data
    seed: int = 42
    num_threads: int = 2
    deterministic: bool = True
    force: str = "row_wise"  # row_wise | col_wise
    # Dynamic: retrain every `cadence` on the data before it, minus a `holdout` that gates it.
    cadence: str = "month"  # month | week
    holdout: str = "7d"  # newest data kept out of a retrain to gate it against the live model
    window: str = "expanding"  # expanding | sliding
    sliding_periods: int = 3  # sliding: how many most recent cadence periods
    warm_start: bool = False  # backtest: continue the previous model on the new data, else retrain
    retrain_rounds: int = 200  # boosting rounds of a from-scratch backtest retrain (no early stopping)
    warm_rounds: int = 50  # rounds added by a warm start
    data_check: DataCheckConfig = field(default_factory=DataCheckConfig)


@dataclass
class BacktestPeriod:
    name: str = MISSING
    start: str = MISSING  # inclusive local date
    end: str = MISSING  # exclusive
    prev: str | None = None  # the period before (the initial window for the first)


@dataclass
class BacktestConfig:
    """Replay time: a static model trained once on `initial`, a dynamic one retrained before
    each period; both scored on every period. Periods are explicit so DVC can `foreach`."""

    tz: str = "UTC"
    initial: BacktestPeriod = field(default_factory=BacktestPeriod)
    periods: list[BacktestPeriod] = field(default_factory=list)


@dataclass
class BaselineConfig:
    features: list[str] = field(default_factory=list)
    max_iter: int = 200


@dataclass
class EvaluationConfig:
    slices: list[str] = field(default_factory=list)
    min_slice_rows: int = 200
    calibration_bins: int = 10
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


@dataclass
class Bound:
    min: float | None = None
    max: float | None = None


@dataclass
class ChangeGate:
    """How much worse than the released model a metric may get (by its better direction)."""

    max_worsening: float = MISSING
    relative: bool = False  # fraction of the released value, else absolute


@dataclass
class SliceGate:
    bounds: dict[str, Bound] = field(default_factory=dict)  # per metric, for every slice
    min_rows: int = 500  # smaller slices are reported, not gated


@dataclass
class BaselineGate:
    metric: str = "auc"
    margin: float = 0.0  # the model must beat the logistic baseline by this much


@dataclass
class InfraGate:
    requests: int = 200  # sample requests answered by the candidate in a separate process
    timeout_seconds: float = 120.0


@dataclass
class ReleaseConfig:
    model_name: str = MISSING  # the registry folder of this model (default: data.name)
    absolute: dict[str, Bound] = field(default_factory=dict)  # slow degradation
    slices: SliceGate = field(default_factory=SliceGate)
    change: dict[str, ChangeGate] = field(default_factory=dict)  # sudden degradation
    baseline: BaselineGate = field(default_factory=BaselineGate)
    min_prediction_std: float = 1e-4  # a constant model is not a model
    infra: InfraGate = field(default_factory=InfraGate)


@dataclass
class PathsConfig:
    raw: str = "data/raw"
    validated: str = "data/validated"
    quarantine: str = "data/quarantine"
    dataset: str = "data/dataset"
    features: str = "data/features"
    model: str = "models/model"
    bundle: str = "models/bundle"
    metrics: str = "metrics"
    plots: str = "plots"
    reports: str = "reports"
    guard: str = "reports/params_guard.json"
    registry: str = "registry"  # released models; outside the DVC DAG, point it at shared storage
    periods: str = "data/periods"  # the labelled dataset cut by backtest period
    backtest: str = "models/backtest"  # one folder per period: dynamic model + scores
    online: str = "data/serving/online.sqlite"  # online feature table (request-time lookups)
    store: str = "data/serving/predictions.sqlite"  # batch predictions (the lookup store)
    request_log: str = "logs/requests.jsonl"  # what the server saw and answered (monitoring reads it)


@dataclass
class ServingWindow:
    start: str = MISSING  # inclusive local date (split.tz)
    end: str = MISSING  # exclusive


@dataclass
class PredictionChecks:
    max_nan: int = 0
    range_margin: float = 0.05
    max_outside_range: float = 0.01  # share of predictions outside the widened validation range
    min_coverage: float = 1.0


@dataclass
class ServerConfig:
    max_body_bytes: int = 1_000_000
    max_records: int = 1000
    reload_seconds: float = 1.0
    # Name of an environment variable holding a bearer token /predict then requires (off: null).
    auth_token_env: str | None = None


@dataclass
class RequestLogConfig:
    sample_rate: float = 1.0


@dataclass
class InferenceConfig:
    """Static (batch -> lookup store), dynamic (computed per request) or hybrid."""

    mode: str = "hybrid"  # static | dynamic | hybrid
    window: ServingWindow = field(default_factory=ServingWindow)
    checks: PredictionChecks = field(default_factory=PredictionChecks)
    server: ServerConfig = field(default_factory=ServerConfig)
    request_log: RequestLogConfig = field(default_factory=RequestLogConfig)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    contract: ContractConfig = field(default_factory=ContractConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "contract": ContractConfig,
    "features": FeaturesConfig,
    "split": SplitConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
    "release": ReleaseConfig,
    "backtest": BacktestConfig,
    "inference": InferenceConfig,
    "paths": PathsConfig,
}


def register() -> None:
    """Register the schema in Hydra's ConfigStore (called by hydra_plugins/ and compose)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


# --- composition -----------------------------------------------------------------------
def project_root(start: Path | None = None) -> Path:
    """The nearest folder holding `conf/` (the project), from `start` or the cwd up."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONF_DIR / "config.yaml").is_file():
            return folder
    raise ConfigError(f"no {CONF_DIR}/config.yaml in {here} or any parent: run mlsys inside a project")


def compose_yaml(root: Path, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Compose `conf/` + overrides into params.yaml text with DVC's own function.

    DVC's `compose_and_dump` is what `dvc exp run` calls, so the CLI, the stale-params
    guard and the tests produce byte-for-byte what DVC would.
    """
    import tempfile

    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / PARAMS_FILE
        try:
            compose_and_dump(out, str(root / CONF_DIR), None, "config", str(root), list(overrides))
        except (HydraException, OmegaConfBaseException) as exc:
            raise ConfigError(f"{CONF_DIR}/: {_hydra_message(exc)}") from exc
        finally:
            from hydra.core.global_hydra import GlobalHydra

            GlobalHydra.instance().clear()
        return out.read_text(encoding="utf-8")


def _hydra_message(exc: BaseException) -> str:
    """Hydra wraps the useful OmegaConf message (with the full key) in its cause."""
    parts = [str(exc).strip()]
    cause = exc.__cause__
    while cause is not None:
        text = str(cause).strip()
        if text and text not in parts[-1]:
            parts.append(text)
        cause = cause.__cause__
    return "\n".join(parts)


def write_params(root: Path) -> Path:
    """Compose `conf/`, check and write params.yaml; returns its path.

    No overrides on purpose: params.yaml must stay the composition of `conf/` (the guard
    checks it); one-off variants are `dvc exp run -S key=value` or `mlsys <stage> key=value`.
    """
    text = compose_yaml(root)
    check(load_sections(OmegaConf.create(text), tuple(SECTIONS), source=f"{CONF_DIR}/"))
    path = root / PARAMS_FILE
    path.write_text(text, encoding="utf-8")
    return path


def guard(root: Path) -> str:
    """Stop a plain `dvc repro` from running on params.yaml that is stale against `conf/`.

    Under `dvc exp run` (DVC sets DVC_EXP_BASELINE_REV), DVC has just composed
    params.yaml from `conf/` + `-S` overrides, so it is fresh by construction.
    """
    params = read_params(root)
    check(load_sections(params, tuple(SECTIONS), source=PARAMS_FILE), lightgbm=False)  # no-op runs stay fast
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return "params.yaml composed by dvc exp run"
    if (root / PARAMS_FILE).read_text(encoding="utf-8") != compose_yaml(root):
        raise StaleParamsError(
            f"{PARAMS_FILE} is stale: it differs from the composition of {CONF_DIR}/.\n"
            "  Run `mlsys compose` (then `dvc repro`), or `dvc exp run` which composes first."
        )
    return "params.yaml matches conf/"


def read_params(root: Path) -> DictConfig:
    """params.yaml as written (untyped); `load_sections` types it."""
    path = root / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `mlsys compose` to create it from {CONF_DIR}/")
    return OmegaConf.load(path)  # type: ignore[return-value]


def load_sections(raw: DictConfig, sections: tuple[str, ...], source: str) -> DictConfig:
    """Merge the given top-level sections of `raw` onto their typed schema."""
    from omegaconf.errors import OmegaConfBaseException

    out = {}
    for name in sections:
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {name!r}; known: {sorted(SECTIONS)}")
        if name not in raw:
            raise ConfigError(f"{source}: section {name!r} is missing")
        try:
            node = OmegaConf.merge(OmegaConf.structured(SECTIONS[name]), raw[name])
            OmegaConf.to_container(node, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{source}: {name}.{_omegaconf_key(exc)}") from exc
        out[name] = node
    return OmegaConf.create(out)


def _omegaconf_key(exc: Exception) -> str:
    key = getattr(exc, "full_key", "") or ""
    msg = getattr(exc, "msg", str(exc)).split("\n")[0]
    return f"{key}: {msg}" if key else msg


def stage_config(
    stage: str, overrides: list[str] | tuple[str, ...] = (), keys: tuple[str, ...] | None = None
) -> tuple[DictConfig, Path]:
    """The params keys `stage` declares (or `keys`), from params.yaml or, with overrides,
    from `conf/`.

    The whole config is checked first (a leaky feature is an error whichever stage runs),
    then the stage receives only its declared keys.
    """
    from mlsys.stages import STAGES

    root = project_root()
    keys = keys or STAGES[stage].params
    if overrides:
        raw = OmegaConf.create(compose_yaml(root, overrides))
        source = f"{CONF_DIR}/ + {' '.join(overrides)}"
    else:
        raw = read_params(root)
        source = PARAMS_FILE
    full = load_sections(raw, tuple(SECTIONS), source)
    check(full, lightgbm="model" in {k.split(".")[0] for k in keys})
    return select(full, keys), root


def select(full: DictConfig, keys: tuple[str, ...]) -> DictConfig:
    """Only the given (dotted) keys of `full`, nested as in params.yaml."""
    out: dict = {}
    for key in keys:
        *parents, leaf = key.split(".")
        node, target = full, out
        for part in parents:
            node, target = node[part], target.setdefault(part, {})
        target[leaf] = node[leaf]
    return OmegaConf.create(out)


def config_hash(cfg: DictConfig) -> str:
    """Hash of exactly the sections a stage received (sorted JSON)."""
    blob = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- semantic checks -------------------------------------------------------------------
def _duration(value: str, key: str) -> None:
    from mlsys.durations import parse_duration

    try:
        parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")


def check(cfg: DictConfig, lightgbm: bool = True) -> None:
    """Checks beyond types on a whole config (`lightgbm=False` skips importing LightGBM)."""
    _check_data(cfg.data)
    for name, table in cfg.contract.tables.items():
        _check_table(table, f"contract.tables.{name}")
    missing = sorted(set(cfg.data.sources) - set(cfg.contract.tables))
    if missing:
        raise ConfigError(f"contract.tables: no contract for sources {missing}; every boundary needs one")
    if cfg.contract.dataset is not None:
        _check_table(cfg.contract.dataset, "contract.dataset")
    _check_features(cfg.features, cfg.data)
    _one_of(cfg.training.mode, ("static", "dynamic"), "training.mode")
    _one_of(cfg.training.window, ("expanding", "sliding"), "training.window")
    _one_of(cfg.training.cadence, ("month", "week"), "training.cadence")
    _duration(cfg.training.holdout, "training.holdout")
    _check_backtest(cfg.backtest)
    _one_of(cfg.training.force, ("row_wise", "col_wise"), "training.force")
    _check_release(cfg.release)
    _one_of(cfg.inference.mode, ("static", "dynamic", "hybrid"), "inference.mode")
    if not 0 <= cfg.inference.request_log.sample_rate <= 1:
        raise ConfigError(f"inference.request_log.sample_rate: {cfg.inference.request_log.sample_rate} not in [0, 1]")
    if cfg.release.slices.min_rows < cfg.evaluation.min_slice_rows:
        raise ConfigError(
            f"release.slices.min_rows: {cfg.release.slices.min_rows} is below "
            f"evaluation.min_slice_rows={cfg.evaluation.min_slice_rows}: such slices have no metrics"
        )
    if lightgbm:
        check_lightgbm_params(cfg.model.params, "model.params")


def _check_table(table: DictConfig, key: str) -> None:
    _one_of(table.policy, ("fail", "quarantine"), f"{key}.policy")
    if not 0 <= table.max_quarantine_fraction <= 1:
        raise ConfigError(f"{key}.max_quarantine_fraction: {table.max_quarantine_fraction} not in [0, 1]")
    if table.volume is not None and not 0 <= table.volume.min_ratio <= 1 <= table.volume.max_ratio:
        raise ConfigError(
            f"{key}.volume: min_ratio {table.volume.min_ratio} <= 1 <= max_ratio {table.volume.max_ratio} expected"
        )


def _check_backtest(backtest: DictConfig) -> None:
    """Periods chain: each names the one before it, in order, without gaps."""
    prev = backtest.initial
    for i, period in enumerate(backtest.periods):
        key = f"backtest.periods[{i}]"
        if period.prev != prev.name:
            raise ConfigError(f"{key}.prev: {period.prev!r}, expected {prev.name!r} (the period before it)")
        if period.start != prev.end:
            raise ConfigError(f"{key}.start: {period.start} must equal the previous period's end {prev.end}")
        prev = period


def _check_release(release: DictConfig) -> None:
    from mlsys.errors import UsageError
    from mlsys.release.gates import DIRECTIONS
    from mlsys.release.registry import check_name

    try:
        check_name(release.model_name)
    except UsageError as exc:
        raise ConfigError(str(exc)) from exc
    metrics = tuple(DIRECTIONS)
    for name in release.absolute:
        _one_of(name, metrics, f"release.absolute.{name}")
    for name in release.change:
        _one_of(name, metrics, f"release.change.{name}")
    for name in release.slices.bounds:
        _one_of(name, ("auc", "logloss"), f"release.slices.bounds.{name}")
    _one_of(release.baseline.metric, metrics, "release.baseline.metric")


def _check_data(data: DictConfig) -> None:
    from mlsys.durations import parse_duration

    if data.primary not in data.sources:
        raise ConfigError(f"data.primary: {data.primary!r} is not a source; sources: {list(data.sources)}")
    for name, src in data.sources.items():
        _one_of(src.kind, ("package", "csv", "parquet"), f"data.sources.{name}.kind")
        if src.kind == "package" and not src.package:
            raise ConfigError(f"data.sources.{name}.package: required when kind is 'package'")
        _one_of(src.available, ("at_prediction", "timestamped", "static"), f"data.sources.{name}.available")
        if (src.available == "at_prediction") != (name == data.primary):
            raise ConfigError(
                f"data.sources.{name}.available: only the primary source "
                f"({data.primary!r}) is 'at_prediction'; others are 'timestamped' or 'static'"
            )
    _duration(data.prediction_lead, "data.prediction_lead")
    _one_of(data.label.op, ("gt", "ge", "lt", "le", "eq", "ne"), "data.label.op")
    _one_of(data.label.missing, ("exclude", "fail"), "data.label.missing")
    _one_of(data.on_upstream_change, ("adopt", "fail"), "data.on_upstream_change")
    for i, join in enumerate(data.asof_joins):
        key = f"data.asof_joins[{i}]"
        if join.source not in data.sources:
            raise ConfigError(f"{key}.source: {join.source!r} is not a source; sources: {list(data.sources)}")
        if join.time not in data.sources[join.source].time_columns:
            raise ConfigError(f"{key}.time: {join.time!r} must be declared in data.sources.{join.source}.time_columns")
        if data.sources[join.source].available != "timestamped":
            raise ConfigError(
                f"{key}.source: as-of joins read 'timestamped' sources; "
                f"data.sources.{join.source}.available is {data.sources[join.source].available!r}"
            )
        _duration(join.lag, f"{key}.lag")
        _duration(join.tolerance, f"{key}.tolerance")
    for i, join in enumerate(data.lookup_joins):
        if join.source not in data.sources:
            raise ConfigError(f"data.lookup_joins[{i}].source: {join.source!r} is not a source")
        if data.sources[join.source].available != "static":
            raise ConfigError(
                f"data.lookup_joins[{i}].source: a plain lookup would see future rows of "
                f"{join.source!r}; lookups read 'static' sources (use an as-of join)"
            )
    leaky = after_outcome_columns(data)
    for name, agg in data.aggregates.items():
        key = f"data.aggregates.{name}"
        _one_of(agg.stat, ("mean", "sum", "count", "last"), f"{key}.stat")
        _one_of(agg.known, ("past", "schedule"), f"{key}.known")
        _duration(agg.window, f"{key}.window")
        _duration(agg.observed_lag, f"{key}.observed_lag")
        if agg.stat != "count" and not agg.value:
            raise ConfigError(f"{key}.value: required for stat={agg.stat!r}")
        if agg.known == "schedule" and agg.value in leaky:
            raise ConfigError(f"{key}: a schedule aggregate cannot read {agg.value!r}: {leaky[agg.value]}")
        observed_late = bool(agg.observed_after) or parse_duration(agg.observed_lag).total_seconds() > 0
        if agg.known == "past" and agg.value in leaky and not observed_late:
            raise ConfigError(
                f"{key}: {agg.value!r} is known only after the outcome ({leaky[agg.value]}), so a row "
                "is observed later than its event: set observed_after (a minutes column) or observed_lag"
            )


def after_outcome_columns(data: DictConfig) -> dict[str, str]:
    """Columns of the built dataset known only after the outcome -> why (every source,
    with the prefix its join gives it)."""
    prefixes = {data.primary: [""]}
    for join in [*data.asof_joins, *data.lookup_joins]:
        prefixes.setdefault(join.source, []).append(join.prefix)
    out = {}
    for name, src in data.sources.items():
        for col in src.after_outcome:
            for prefix in prefixes.get(name, []):
                out[prefix + col] = f"data.sources.{name}.after_outcome lists {col!r}"
    out[data.label.column] = f"it is the label column (data.label.column={data.label.column!r})"
    out["label"] = "it is the label"
    return out


def _check_features(features: DictConfig, data: DictConfig) -> None:
    from mlsys.features.transforms import TRANSFORMS

    leaky = after_outcome_columns(data)
    for name, feat in features.columns.items():
        key = f"features.columns.{name}"
        _one_of(feat.type, ("numeric", "categorical"), f"{key}.type")
        _one_of(feat.impute, (None, "median", "zero"), f"{key}.impute")
        _one_of(feat.transform, tuple(TRANSFORMS), f"{key}.transform")
        if (feat.type == "categorical") != (feat.transform == "vocab"):
            raise ConfigError(f"{key}: categorical features use transform 'vocab' and only they do")
        _one_of(feat.availability, ("at_prediction", "after_outcome"), f"{key}.availability")
        if feat.availability == "after_outcome":
            raise ConfigError(
                f"{key}: declared availability 'after_outcome' - a model input must be known at "
                "the prediction time; drop it or derive a point-in-time aggregate instead"
            )
        if feat.source in leaky:
            raise ConfigError(
                f"{key}.source: {feat.source!r} is known only after the outcome ({leaky[feat.source]}),"
                " so it cannot be a model input at the prediction time; use a point-in-time"
                " aggregate (data.aggregates) instead"
            )


def check_lightgbm_params(params: DictConfig | dict, key: str) -> None:
    """Every key must be a LightGBM parameter or alias (LightGBM itself only warns), and
    LightGBM must accept every value.

    The names come from LightGBM's own table (`LGBM_DumpParamAliases`, exposed in 4.x as
    `lightgbm.basic._ConfigAliases`); the range pin `lightgbm<5` in pyproject keeps it there.
    The values are checked by LightGBM itself: one boosting round on a 20-row frame (a few
    ms), and, if that fails, each parameter alone to name the one it refused.
    """
    import difflib

    from lightgbm.basic import _ConfigAliases

    aliases = _ConfigAliases._get_all_param_aliases()
    known = {alias for names in aliases.values() for alias in names}
    for name in params:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{key}.{name}: not a LightGBM parameter{hint}")
    plain = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else dict(params)
    if _lightgbm_refuses(plain) is None:
        return
    objective = {k: v for k, v in plain.items() if k in aliases["objective"] or k in aliases["num_class"]}
    for name, value in plain.items():
        refused = _lightgbm_refuses({**objective, name: value})
        if refused is not None:
            raise ConfigError(f"{key}.{name}: LightGBM refuses {value!r}: {refused}")
    raise ConfigError(f"{key}: LightGBM refuses these parameters together: {_lightgbm_refuses(plain)}")


def _lightgbm_refuses(params: dict[str, Any]) -> str | None:
    """LightGBM's own message if one round with `params` fails, else None."""
    import re

    import lightgbm as lgb
    import numpy as np
    from lightgbm.basic import _ConfigAliases

    aliases = _ConfigAliases._get_all_param_aliases()
    objective = str(next((v for k, v in params.items() if k in aliases["objective"]), "regression"))
    classes = int(next((v for k, v in params.items() if k in aliases["num_class"]), 1) or 1)
    rows = np.arange(20)
    if objective in ("multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"):
        label = rows % max(classes, 2)
    elif objective in ("binary", "cross_entropy", "xentropy", "cross_entropy_lambda", "xentlambda"):
        label = rows % 2
    else:
        label = 1 + rows % 2  # positive: poisson, gamma and tweedie need it
    x = np.column_stack([rows, rows % 3]).astype(float)
    full = {**params, "verbosity": -1, "num_threads": 1}
    try:
        data = lgb.Dataset(x, label=label.astype(float), params=full)
        lgb.train(full, data, num_boost_round=1, valid_sets=[data])  # a valid set makes it parse `metric`
    except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
        return re.sub(r" at \S+, line \d+ ?\.?", "", str(exc)).strip()
    return None
