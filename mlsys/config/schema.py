"""The typed schema of every `conf/` group: dataclasses registered in Hydra's ConfigStore.

They are registered as `mlsys_schema` (by `hydra_plugins/mlsys_schema`, so DVC's own
composition sees them too), and `conf/config.yaml` lists it first in its defaults: an
unknown key, a wrong type or a value outside an Enum fails composition with the key's full
path (`training.mode: Invalid value 'daily', expected one of [static, dynamic]`). The
choices are `StrEnum`s, so they compare, print and hash as the plain strings they are in
YAML. Checks a schema cannot express live with their domains (`mlsys.config.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import MISSING

SCHEMA_NAME = "mlsys_schema"


class SourceKind(StrEnum):
    package = "package"
    csv = "csv"
    parquet = "parquet"
    sql = "sql"


class SourceAvailability(StrEnum):
    at_prediction = "at_prediction"  # the primary table: one row per event
    timestamped = "timestamped"  # rows known from a time column + lag: as-of joins only
    static = "static"  # reference data known in advance: plain lookups


class LabelOp(StrEnum):
    gt = "gt"
    ge = "ge"
    lt = "lt"
    le = "le"
    eq = "eq"
    ne = "ne"


class Task(StrEnum):
    binary = "binary"
    regression = "regression"
    multiclass = "multiclass"


class LabelTransform(StrEnum):
    none = "none"
    log1p = "log1p"
    sqrt = "sqrt"


class MissingLabel(StrEnum):
    exclude = "exclude"
    fail = "fail"


class UpstreamChange(StrEnum):
    adopt = "adopt"
    fail = "fail"


class Stat(StrEnum):
    mean = "mean"
    sum = "sum"
    count = "count"
    last = "last"


class Known(StrEnum):
    past = "past"
    schedule = "schedule"


class Policy(StrEnum):
    fail = "fail"
    quarantine = "quarantine"


class Severity(StrEnum):
    fail = "fail"
    warn = "warn"


class EngineKind(StrEnum):
    local = "local"  # this process: pandas, LightGBM
    dask = "dask"  # a Dask cluster (a LocalCluster, or a scheduler's address)


class Rollout(StrEnum):
    direct = "direct"  # a blessed candidate goes live
    canary = "canary"  # it is the candidate: a share of traffic, until `mlsys release --promote`


class FeatureType(StrEnum):
    numeric = "numeric"
    categorical = "categorical"


class FeatureAvailability(StrEnum):
    at_prediction = "at_prediction"
    after_outcome = "after_outcome"


class Impute(StrEnum):
    median = "median"
    zero = "zero"


class TrainingMode(StrEnum):
    static = "static"
    dynamic = "dynamic"


class Cadence(StrEnum):
    month = "month"
    week = "week"


class WindowKind(StrEnum):
    expanding = "expanding"
    sliding = "sliding"


class Force(StrEnum):
    row_wise = "row_wise"
    col_wise = "col_wise"


class Calibration(StrEnum):
    none = "none"
    isotonic = "isotonic"
    platt = "platt"


class InferenceMode(StrEnum):
    static = "static"
    dynamic = "dynamic"
    hybrid = "hybrid"


class Backend(StrEnum):
    """What scores a batch: LightGBM's Booster, or the model compiled by lleaves (an extra)."""

    lightgbm = "lightgbm"
    lleaves = "lleaves"


# --- data ------------------------------------------------------------------------------
@dataclass
class TimeColumn:
    """A timestamp column as stored in a source: its text format and time zone."""

    tz: str = "UTC"
    format: str = "ISO8601"


@dataclass
class VolumeBand:
    """Rows of a new snapshot of a table, as a ratio of the previous snapshot's (TFDV's
    span comparator): outside the band the new data is not adopted."""

    min_ratio: float = 0.5
    max_ratio: float = 2.0


@dataclass
class KnownAfter:
    """When a column known only after the outcome becomes known: at the event's time + the
    minutes in column `after` (e.g. a departure is seen `dep_delay` minutes after its
    schedule) + `lag`. Neither set: known at some time after the outcome, which no
    aggregate may then read."""

    after: str | None = None
    lag: str | None = None


@dataclass
class SourceConfig:
    """One upstream table: a file, a file shipped inside an installed package, or a SQL
    query (`kind: sql`: a SQLAlchemy `url` and a `query`; a relative SQLite path is the
    project's).

    `available` says when its values are known: `at_prediction` (the primary table: one
    row per event, known at prediction time except the `after_outcome` columns),
    `timestamped` (each row known from one of its time columns + lag: joined only as of the
    prediction time), or `static` (reference data known in advance: plain lookups).
    """

    kind: SourceKind = MISSING
    path: str | None = None  # file path, or a resource path inside `package` (files only)
    package: str | None = None
    url: str | None = None  # sql: a SQLAlchemy URL, e.g. sqlite:///upstream/shop.sqlite
    query: str | None = None  # sql: the query whose rows are the table
    available: SourceAvailability = MISSING
    time_columns: dict[str, TimeColumn] = field(default_factory=dict)
    # Columns whose value is known only after the outcome (leakage if used as input), and when.
    after_outcome: dict[str, KnownAfter] = field(default_factory=dict)
    # A new snapshot's rows against the previous one's (null: any row count is adopted).
    volume: VolumeBand | None = field(default_factory=VolumeBand)


@dataclass
class DerivedColumn:
    """A column computed from the primary table's columns (mlsys.data.derive): an `expr`
    (arithmetic, comparisons, numpy functions by name) or a function by `_target_` called
    with the `inputs` columns. The same code computes it offline (whole columns, in the
    validate stage) and online (one request's values)."""

    expr: str | None = None
    _target_: str | None = None
    inputs: list[str] = field(default_factory=list)  # _target_: the columns it is called with, in order
    dtype: str | None = None  # int64 | float64 | str | bool (default: as computed)


@dataclass
class EventTime:
    """How the event timestamp is built: from a timestamp column (a declared time column, or
    a derived one), or from local date/time parts in `tz`. A part is a column or a constant
    (`year: 2011`); units: year, month, day or day_of_year, hour, minute, second."""

    parts: dict[str, Any] = field(default_factory=dict)  # unit -> column name, or an int constant
    column: str | None = None  # or a timestamp column (naive values are read in `tz`)
    tz: str = "UTC"


@dataclass
class LabelConfig:
    """What the model predicts (mlsys.tasks): `binary` from `op` + `threshold` on the column,
    or a 0/1/boolean column as is; `regression` the column's values (optionally trained on a
    `transform` whose inverse every answer applies); `multiclass` the column's values among
    `classes`, in that order (another value is a contract failure)."""

    column: str = MISSING
    task: Task = Task.binary
    op: LabelOp | None = None
    threshold: float | None = None
    classes: list[str] = field(default_factory=list)
    transform: LabelTransform = LabelTransform.none
    missing: MissingLabel = MissingLabel.exclude  # rows whose label column is null (and mature)
    # A label is final only this long after its event (a flight lands, a refund window
    # closes): younger rows at snapshot time are pending, kept out of training and holdouts.
    matures_after: str | None = None


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
    key: str = MISSING  # key column of the primary table (a derived column too)
    columns: list[str] = field(default_factory=list)
    prefix: str = ""
    right_key: str | None = None  # the key's name in the source, when it differs


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
    stat: Stat = Stat.mean
    window: str = "3h"
    known: Known = Known.past
    observed_after: str | None = None
    observed_lag: str = "0h"


@dataclass
class FeedbackLoops:
    """Can the model's answers change its own future inputs (scores that reroute the traffic
    they are then trained on) or another model's? Recorded in the card; a declared loop gets
    a holdout: that share of entities (a hash of the key) is answered `{score: null,
    holdout: true}`, and `mlsys monitor` compares their outcomes with the served ones'."""

    own_inputs: bool = False
    other_models: list[str] = field(default_factory=list)  # models that read this one's answers
    holdout: float = 0.05  # share of entities held out when a loop is declared
    note: str = ""  # how the loop runs, for the card's reader


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
    # Columns computed from the primary table's (and earlier derived) columns, in this order.
    derived: dict[str, DerivedColumn] = field(default_factory=dict)
    on_upstream_change: UpstreamChange = UpstreamChange.adopt
    feedback_loops: FeedbackLoops = field(default_factory=FeedbackLoops)


# --- contracts -------------------------------------------------------------------------
@dataclass
class ColumnContract:
    dtype: str | None = None  # int64, float64, str, bool, datetime64[us, UTC], ...
    nullable: bool = True
    required: bool = True
    min: float | None = None
    max: float | None = None
    isin: list[Any] | None = None
    regex: str | None = None  # the whole value matches (re.fullmatch), in batch and serving alike
    unique: bool = False
    max_missing: float | None = None  # fraction of nulls allowed (frame-level)
    # Your own checks: [{_target_: pkg.fn, **kwargs}], fn(series, **kwargs) -> bool per row (or one bool).
    checks: list[dict[str, Any]] = field(default_factory=list)
    # Personal data: never written raw to the request log, reports or examples (mlsys.contracts.PII).
    pii: bool = False


@dataclass
class TableContract:
    policy: Policy = Policy.fail
    # Quarantine may keep this share of the rows at most; more fails the table (data loss).
    max_quarantine_fraction: float = 0.01
    min_rows: int | None = None
    max_rows: int | None = None
    unique: list[str] = field(default_factory=list)  # columns unique together
    strict: bool = False  # extra columns are an error
    columns: dict[str, ColumnContract] = field(default_factory=dict)
    # Your own checks on whole rows: [{_target_: pkg.fn, **kwargs}], fn(frame, **kwargs) -> bool per row.
    checks: list[dict[str, Any]] = field(default_factory=list)
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
    type: FeatureType = FeatureType.numeric
    transform: str = "identity"  # identity | clip | vocab | hhmm_minutes | day_of_week | ...
    availability: FeatureAvailability = FeatureAvailability.at_prediction
    clip_quantiles: list[float] = field(default_factory=lambda: [0.001, 0.999])
    impute: Impute | None = None  # None: LightGBM routes missing values itself
    min_count: int = 1  # vocab: rarer categories are treated as unknown
    max_categories: int = 1000


@dataclass
class FeaturesConfig:
    name: str = MISSING
    columns: dict[str, FeatureConfig] = field(default_factory=dict)
    # Inputs the worth study judges together too (left out of one retrain): is a whole source
    # worth its cost? Read by the worth study only (training reads `columns`).
    groups: dict[str, list[str]] = field(default_factory=dict)


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
    # Post-hoc calibration of a binary or multiclass model's probabilities, fitted on the
    # validation window, part of the bundle, applied on every path that answers.
    calibration: Calibration = Calibration.none


@dataclass
class DataCheckConfig:
    """What new data must pass before a dynamic retrain adopts it (vs the previous period)."""

    min_rows: int = 1000
    max_psi: float = 0.25  # per feature, against the previous period's profile
    max_missing_change: float = 0.25  # change in a feature's share of missing values
    expected_drift: list[str] = field(default_factory=list)  # fnmatch patterns: PSI reported, not gated


@dataclass
class TrainingConfig:
    mode: TrainingMode = TrainingMode.static  # static: train once on split.train | dynamic: windows roll
    seed: int = 42
    num_threads: int = 2
    deterministic: bool = True
    force: Force = Force.row_wise
    # The training curve's train line: scored each round on this many train rows (a fixed sample
    # by `seed`; null: every row, 0: no train line). The trees do not depend on it.
    curve_rows: int | None = 20000
    # Dynamic: retrain every `cadence` on the data before it, minus a `holdout` that gates it.
    cadence: Cadence = Cadence.month
    holdout: str = "7d"  # newest data kept out of a retrain to gate it against the live model
    window: WindowKind = WindowKind.expanding
    sliding_periods: int = 3  # sliding: how many most recent cadence periods
    # Backtest only: continue the previous model on the new data instead of retraining (the main
    # pipeline's train stage would have to read the registry, which is outside DVC's graph).
    warm_start: bool = False
    warm_rounds: int = 50  # at most this many rounds added by a warm start (early stopping on valid)
    data_check: DataCheckConfig = field(default_factory=DataCheckConfig)


@dataclass
class BacktestPeriod:
    name: str = MISSING
    start: str = MISSING  # inclusive local date
    end: str = MISSING  # exclusive
    prev: str | None = None  # the period before (the initial window for the first)


def generate_periods(start: str, end: str, cadence: str, first_prev: str = "initial") -> list[BacktestPeriod]:
    """The resolver `${mlsys.periods:START,END,CADENCE[,PREV]}`: consecutive periods from
    START to END (local dates), a month (named 2013-03, starting on the 1st) or a week
    (named by its first day) each, chained by `prev` from PREV. It runs at composition, so
    params.yaml lists the periods and DVC's `foreach` sees every one."""
    from datetime import date, timedelta

    first, last = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    if cadence not in Cadence.__members__:
        raise ValueError(f"cadence {cadence!r} is not one of {list(Cadence.__members__)}")
    if cadence == "month" and (first.day != 1 or last.day != 1):
        raise ValueError(f"monthly periods run from a 1st to a 1st: {start}..{end}")
    out, prev, day = [], str(first_prev), first
    while day < last:
        after = (day.replace(day=28) + timedelta(days=4)).replace(day=1) if cadence == "month" else day + timedelta(7)
        if after > last:
            raise ValueError(f"{start}..{end} is not a whole number of {cadence}s")
        name = day.strftime("%Y-%m") if cadence == "month" else day.isoformat()
        out.append(BacktestPeriod(name=name, start=day.isoformat(), end=after.isoformat(), prev=prev))
        prev, day = name, after
    if not out:
        raise ValueError(f"no period between {start} and {end}")
    return out


@dataclass
class BacktestConfig:
    """Replay time: a static model trained once on `initial`, a dynamic one retrained before
    each period; both scored on every period. Periods are listed (each naming its `prev`),
    or generated: `periods: ${mlsys.periods:${.initial.end},2014-01-01,month}`; either way
    params.yaml lists them, so DVC can `foreach`."""

    tz: str = "UTC"
    initial: BacktestPeriod = field(default_factory=BacktestPeriod)
    periods: list[BacktestPeriod] = field(default_factory=list)
    # Each retrain is held to the release stage's gates (mlsys.release.judge) but these: a
    # replay has no server to sandbox. The report lists what was skipped.
    skip_gates: list[str] = field(default_factory=lambda: ["infra"])


@dataclass
class WorthConfig:
    """The feature worth study (studies/dvc.yaml: worth; mlsys/model/worth.py): a permutation
    pass over every input, leave-one-out retrains for some. A change is the relative loss of
    the primary metric when an input is shuffled or left out."""

    repeats: int = 3  # shuffles per input (the permutation pass)
    max_rows: int = 50000  # valid rows the permutation pass scores (a sample when more)
    seed: int = 0  # of the shuffles and the sample
    top_k: int = 4  # the most important inputs retrained without
    max_retrains: int = 16  # one-input retrains at most, top_k included (every input when there are no more)
    useless_below: float = 0.0005  # a change at or below this: useless (the model does as well without)
    cost_rows: int = 20000  # rows the transform and lookup costs are timed on


@dataclass
class BaselineConfig:
    features: list[str] = field(default_factory=list)
    max_iter: int = 200


@dataclass
class Plot:
    """One DVC plot of the evaluate stage (dvc.yaml templates its `plots:` from these)."""

    title: str = MISSING
    template: str = "simple"
    x: str = MISSING
    y: Any = MISSING  # a column, or a list of columns of the same file
    file: str = MISSING  # under paths.plots, without .csv


@dataclass
class Plots:
    curve: Plot = field(default_factory=Plot)  # also drawn for the baseline (<file>_baseline.csv)
    fit: Plot = field(default_factory=Plot)
    extra: Plot = field(default_factory=Plot)
    headline: str = MISSING  # the metric the backtest plots by period (mlsys.tasks.SLICE_METRICS' first)


def _plots(curve: tuple, fit: tuple, extra: tuple, headline: str) -> Plots:
    return Plots(*(Plot(*spec) for spec in (curve, fit, extra)), headline)


@dataclass
class TaskPlots:
    """The plots of each task; `evaluation.plots` is the one of `data.label.task`."""

    binary: Plots = field(
        default_factory=lambda: _plots(
            ("ROC (test window)", "simple", "fpr", "tpr", "roc"),
            ("Calibration", "simple", "mean_predicted", "observed_rate", "calibration"),
            ("Precision-recall", "simple", "recall", "precision", "precision_recall"),
            "auc",
        )
    )
    regression: Plots = field(
        default_factory=lambda: _plots(
            ("Predicted vs actual (test window)", "scatter", "actual", "predicted", "predicted_vs_actual"),
            (
                "Mean residual (actual - predicted) by decile of the prediction",
                "bar_horizontal",
                "mean_residual",
                "decile",
                "residuals",
            ),
            (
                "Calibration by decile: mean actual vs mean predicted",
                "simple",
                "mean_predicted",
                "mean_actual",
                "decile_calibration",
            ),
            "rmse",
        )
    )
    multiclass: Plots = field(
        default_factory=lambda: _plots(
            ("One-vs-rest ROC per class (test window)", "simple", "fpr", "${data.label.classes}", "roc"),
            ("Confusion matrix (test window)", "confusion", "actual", "predicted", "confusion"),
            ("Top-label calibration", "simple", "mean_predicted", "observed_rate", "calibration"),
            "logloss",
        )
    )


@dataclass
class EvaluationConfig:
    slices: list[str] = field(default_factory=list)
    min_slice_rows: int = 200
    calibration_bins: int = 10
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    task_plots: TaskPlots = field(default_factory=TaskPlots)
    plots: Plots = "${.task_plots.${data.label.task}}"  # type: ignore[assignment]


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
    metric: str | None = None  # default: the task's primary metric (mlsys.tasks.PRIMARY)
    margin: float = 0.0  # the model must beat the task's linear baseline by this much


@dataclass
class InfraGate:
    requests: int = 200  # sample requests answered by the candidate in a separate process
    timeout_seconds: float = 120.0


@dataclass
class LeakageGate:
    """Suspected leakage (mlsys.model.leakage): a suspect blocks the release (`fail`) or is
    reported (`warn`) unless each input it names is accepted here with a reason."""

    policy: Severity = Severity.fail
    alone: float = 0.95  # one input alone tells the label: AUC, R² or macro-F1 on valid
    gain_share: float = 0.8  # one input holds more of the model's gain
    overall: float = 0.99  # the model's own valid AUC, R² or macro-F1
    top_two_gain_share: float = 0.9  # the top two inputs hold more of the gain...
    min_inputs: int = 5  # ...judged with at least this many inputs (with three, two often do)
    accepted: dict[str, str] = field(default_factory=dict)  # input -> why it is no leak (reviewed)


@dataclass
class Waiver:
    """How far a rolling retrain's absolute bound may be waived (when the live model misses
    it too on the same newest rows): no ratchet."""

    max_beyond: float = 0.02  # the candidate may be at most this far past the bound
    max_consecutive: int = 2  # releases in a row that may use a waiver


@dataclass
class ReleaseConfig:
    model_name: str = MISSING  # the registry folder of this model (default: data.name)
    absolute: dict[str, Bound] = field(default_factory=dict)  # slow degradation
    slices: SliceGate = field(default_factory=SliceGate)
    per_class: dict[str, Bound] = field(default_factory=dict)  # multiclass: per declared class (auc, f1)
    change: dict[str, ChangeGate] = field(default_factory=dict)  # sudden degradation
    baseline: BaselineGate = field(default_factory=BaselineGate)
    waiver: Waiver = field(default_factory=Waiver)
    min_prediction_std: float = 1e-4  # a constant model is not a model
    infra: InfraGate = field(default_factory=InfraGate)
    leakage: LeakageGate = field(default_factory=LeakageGate)
    rollout: Rollout = Rollout.direct


@dataclass
class PathsConfig:
    """Every artifact, named once: the code reads these keys and dvc.yaml templates its
    paths from them (tests/unit/test_stages.py checks both). Folders, then files in them."""

    raw: str = "data/raw"  # <source>-<sha>.parquet + snapshot.json, the manifest
    validated: str = "data/validated"  # <source>.parquet
    quarantine: str = "data/quarantine"  # <source>.parquet: failing rows + reasons
    dataset: str = "data/dataset"
    labelled: str = "${.dataset}/labelled.parquet"
    unlabelled: str = "${.dataset}/unlabelled.parquet"
    dataset_quarantine: str = "${.dataset}/quarantined.parquet"
    features: str = "data/features"  # a model folder's feature state + profile, and:
    windows: str = "${.features}/windows.json"  # the resolved split featurize used
    train_matrix: str = "${.features}/train.parquet"
    valid_matrix: str = "${.features}/valid.parquet"
    model: str = "models/model"
    bundle: str = "models/bundle"
    metrics: str = "metrics"
    test_metrics: str = "${.metrics}/metrics.json"
    slice_metrics: str = "${.metrics}/slices.json"
    validation_metrics: str = "${.metrics}/validation.json"
    build_metrics: str = "${.metrics}/build.json"
    release_metrics: str = "${.metrics}/release.json"
    backtest_metrics: str = "${.metrics}/backtest.json"
    plots: str = "plots"
    curve: str = "${.plots}/${evaluation.plots.curve.file}.csv"  # the task's plots (evaluation.plots)
    curve_baseline: str = "${.plots}/${evaluation.plots.curve.file}_baseline.csv"
    fit: str = "${.plots}/${evaluation.plots.fit.file}.csv"
    extra: str = "${.plots}/${evaluation.plots.extra.file}.csv"
    importance: str = "${.plots}/importance.csv"
    reports: str = "reports"
    guard: str = "${.reports}/params_guard.json"
    snapshot_report: str = "${.reports}/snapshot.json"  # the snapshot in use, and the config that took it
    validation_report: str = "${.reports}/validation.json"
    build_report: str = "${.reports}/build.json"
    data_check: str = "${.reports}/data_check.json"
    featurized: str = "${.reports}/featurize.json"  # when featurize ran (kept out of train's input)
    train_log: str = "${.reports}/train"  # dvclive
    training_curve: str = "${.train_log}/curve.csv"  # the first training metric, train and valid, by round
    evaluation_page: str = "${.reports}/evaluation.html"
    evaluate_report: str = "${.reports}/evaluate.json"
    blessing: str = "${.reports}/blessing.json"
    live: str = "${.reports}/live.json"  # the version live after the release stage (what predict scores with)
    online_report: str = "${.reports}/online.json"
    predict_report: str = "${.reports}/predict.json"
    partition_report: str = "${.reports}/partition.json"
    requests_report: str = "${.reports}/requests.json"
    audit: str = "${.reports}/audit"  # .json and .md
    backtest_report: str = "${.reports}/backtest"  # index.html and:
    backtest_table: str = "${.backtest_report}/backtest.csv"
    worth_report: str = "${.reports}/worth"  # index.html and:
    worth_table: str = "${.worth_report}/worth.csv"  # per input: worth (permutation, leave-one-out) and cost
    worth_metrics: str = "${.metrics}/worth.json"
    registry: str = "registry"  # released models; outside the DVC DAG, point it at shared storage
    periods: str = "data/periods"  # the labelled dataset cut by backtest period: <period>.parquet
    backtest: str = "models/backtest"  # one model folder per period, with its scores.json
    online: str = "data/serving/online.sqlite"  # online feature table (request-time lookups)
    store: str = "data/serving/predictions.sqlite"  # batch predictions (the lookup store)
    compiled: str = "models/compiled"  # lleaves' compiled models (inference.backend lleaves): a cache
    request_log: str = "logs/requests"  # what the server saw and answered: <UTC day>/*.arrows (monitoring reads it)
    alerts: str = "logs/alerts.jsonl"  # every monitoring finding, appended
    monitor_metrics: str = "${.metrics}/monitor.json"
    monitor_report: str = "${.reports}/monitor"


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
    # An online table of at most this many rows is read into memory (a dict get per lookup
    # instead of a SQLite query); 0: always SQLite.
    online_memory_rows: int = 200_000
    # Name of an environment variable holding a bearer token /predict then requires (off: null).
    auth_token_env: str | None = None


@dataclass
class RequestLogConfig:
    """The request log (mlsys.serving.log): Arrow IPC stream files, written off the request path."""

    sample_rate: float = 1.0  # share of requests logged
    flush_seconds: float = 1.0  # the writer writes what is queued this often (a kill -9 loses at most that)
    flush_rows: int = 2000  # records per record batch (a backlog is written in several)
    rotate_mb: int = 64  # a new file past this size (and each UTC day)
    max_queue: int = 10000  # requests waiting for the writer; past this, dropped and counted


@dataclass
class CanaryConfig:
    """The registry's candidate (release.rollout: canary) answers this share of entities,
    chosen by a hash of the entity key (the same entity always gets the same model), and
    always computes (the batch store holds the live model's answers only)."""

    share: float = 0.1


@dataclass
class InferenceConfig:
    """Static (batch -> lookup store), dynamic (computed per request) or hybrid."""

    mode: InferenceMode = InferenceMode.hybrid
    window: ServingWindow = field(default_factory=ServingWindow)
    checks: PredictionChecks = field(default_factory=PredictionChecks)
    server: ServerConfig = field(default_factory=ServerConfig)
    request_log: RequestLogConfig = field(default_factory=RequestLogConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    shadow: str | None = None  # a kept version that scores every request after its answer is sent
    backend: Backend = Backend.lightgbm  # batches: the predict stage, Dask workers, several records a request
    compile_inline: bool = False  # lleaves' finline: faster answers, about 10x longer compilation


@dataclass
class Bounds:
    """A monitored figure's thresholds: past `warn` it is reported, past `fail` `mlsys
    monitor` exits 10 (null: never). Higher is worse."""

    warn: float | None = None
    fail: float | None = None


@dataclass
class DriftMonitor:
    """Inputs and answers on served records against the served model's own profile."""

    psi: Bounds = field(default_factory=lambda: Bounds(0.1, 0.25))
    js: Bounds = field(default_factory=lambda: Bounds(0.15, 0.3))  # Jensen-Shannon distance (base 2)
    linf: Bounds = field(default_factory=lambda: Bounds(0.1, 0.2))  # categorical: largest change of one value's share
    missing_change: Bounds = field(default_factory=lambda: Bounds(0.1, 0.25))  # share of missing values, up
    share: Bounds = field(default_factory=lambda: Bounds(0.25, 0.5))  # importance share of features past psi.warn
    prediction: Bounds = field(default_factory=lambda: Bounds(0.1, 0.25))  # PSI of answers vs the validation window
    # Features expected to move (seasonal weather): their drift is reported, never alerts,
    # unless they vanish (missing_change still applies), as in the dynamic data check.
    expected_drift: list[str] = field(default_factory=list)
    features: dict[str, Any] = field(default_factory=dict)  # per feature: {psi: {warn, fail}, ...}


@dataclass
class StalenessMonitor:
    model_age_days: Bounds = field(
        default_factory=lambda: Bounds(45.0, 90.0)
    )  # prediction time - newest training event
    online_age_days: Bounds = field(default_factory=lambda: Bounds(2.0, 7.0))  # received - online table built
    store_age_days: Bounds = field(default_factory=lambda: Bounds(2.0, 7.0))  # received - batch predictions made


@dataclass
class StabilityMonitor:
    nan: Bounds = field(default_factory=lambda: Bounds(0.0, 0.0))  # share of answers NaN or infinite
    out_of_range: Bounds = field(default_factory=lambda: Bounds(0.01, 0.05))  # outside the validation range, widened
    range_margin: float = 0.05
    constant: bool = True  # every answer the same: fail


@dataclass
class QualityMonitor:
    """The task's metrics on served records once their labels land (joined by entity)."""

    drop: Bounds = field(default_factory=lambda: Bounds(0.02, 0.05))  # headline metric: release test - served
    ece_rise: Bounds = field(default_factory=lambda: Bounds(0.02, 0.05))  # served ECE - the release test's
    slices_failing: Bounds = field(default_factory=lambda: Bounds(0.0, None))  # slices failing a release gate
    slice_min_rows: int = 1000  # a slice's labelled records before the release's slice gates judge it
    min_labelled: int = 200  # fewer labelled records: reported, not judged
    calibration_bins: int = 10


@dataclass
class PerformanceMonitor:
    """Latency, error and refusal rates of the service; the model's training time."""

    p99_vs_previous: Bounds = field(default_factory=lambda: Bounds(2.0, None))  # p99 over the window before's
    p50_vs_release: Bounds = field(default_factory=lambda: Bounds(3.0, None))  # one-record requests' p50 over infra's
    p99_vs_release: Bounds = field(default_factory=lambda: Bounds(5.0, None))
    error_rate: Bounds = field(default_factory=lambda: Bounds(0.001, 0.01))  # share of requests failed (5xx)
    rejected_rate: Bounds = field(default_factory=lambda: Bounds(0.01, 0.05))  # share refused (4xx)
    train_seconds_vs_previous: Bounds = field(default_factory=lambda: Bounds(3.0, None))  # over the version before's


@dataclass
class UpstreamMonitor:
    """Sources against the served model's snapshot."""

    changed: Bounds = field(default_factory=lambda: Bounds(0.0, None))  # sources whose content changed
    rows_lost: Bounds = field(default_factory=lambda: Bounds(0.0, 0.1))  # share of a source's rows gone
    columns_changed: Bounds = field(default_factory=lambda: Bounds(0.0, None))  # columns gone or new, per source


@dataclass
class Webhook:
    url: str | None = None  # each finding is POSTed as JSON (a failed delivery is recorded)
    timeout_seconds: float = 5.0
    retries: int = 3


@dataclass
class RolloutMonitor:
    """A canary against the live model on the canary's own records (both scored on them)."""

    min_records: int = 100  # fewer canary records: "wait", not judged
    drop: Bounds = field(default_factory=lambda: Bounds(0.0, 0.01))  # the live's metric minus the candidate's
    score_diff: Bounds = field(default_factory=lambda: Bounds(0.05, None))  # mean |candidate - live| answer
    p99_ratio: Bounds = field(default_factory=lambda: Bounds(1.5, 3.0))  # canary p99 over live p99


@dataclass
class MonitoringConfig:
    """`mlsys monitor`: checks over a window of the request log's prediction time."""

    since: str | None = None  # inclusive, a local time in split.tz; default: `until` - 1 day
    until: str | None = None  # exclusive; default: just after the newest prediction time logged
    min_rows: int = 200  # fewer records in the window: checks say so instead of judging
    invariants: Bounds = field(default_factory=lambda: Bounds(0.001, 0.01))  # share failing a serving-contract check
    skew: Bounds = field(
        default_factory=lambda: Bounds(0.0, 0.01)
    )  # share of compared records with a feature differing
    drift: DriftMonitor = field(default_factory=DriftMonitor)
    staleness: StalenessMonitor = field(default_factory=StalenessMonitor)
    stability: StabilityMonitor = field(default_factory=StabilityMonitor)
    quality: QualityMonitor = field(default_factory=QualityMonitor)
    volume_drop: Bounds = field(default_factory=lambda: Bounds(0.5, None))  # 1 - requests / the window before's
    performance: PerformanceMonitor = field(default_factory=PerformanceMonitor)
    upstream: UpstreamMonitor = field(default_factory=UpstreamMonitor)
    rollout: RolloutMonitor = field(default_factory=RolloutMonitor)
    webhook: Webhook = field(default_factory=Webhook)


@dataclass
class DaskConfig:
    """A Dask cluster (mlsys/engine.py): started here (`address: null`) or connected to."""

    address: str | None = None  # tcp://host:8786 of a running scheduler; null: a LocalCluster per stage
    n_workers: int = 2  # LocalCluster: worker processes
    threads_per_worker: int = 1  # LocalCluster; also LightGBM's threads on each worker
    memory_limit: str = "4GiB"  # LocalCluster: per worker
    partitions: int | None = None  # row slices sent to the cluster; null: one per worker or per 1M rows
    connect_timeout: str = "10s"  # to `address`


@dataclass
class EngineConfig:
    """Where the work runs: the same stages and outputs, here or on a Dask cluster."""

    kind: EngineKind = EngineKind.local
    dask: DaskConfig = field(default_factory=DaskConfig)


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
    worth: WorthConfig = field(default_factory=WorthConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
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
    "worth": WorthConfig,
    "inference": InferenceConfig,
    "monitoring": MonitoringConfig,
    "engine": EngineConfig,
    "paths": PathsConfig,
}


def register() -> None:
    """Register the schema in Hydra's ConfigStore, and the `mlsys.periods` resolver (called by
    hydra_plugins/ and compose)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)
    OmegaConf.register_new_resolver("mlsys.periods", generate_periods, replace=True)
