"""The DVC stages: the params sections each declares, and the module that runs it.

`dvc.yaml` declares the same sections per stage (a test compares them), so a stage
reruns exactly when a section it reads changes, and its saved config covers exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass

# The main pipeline, the snapshot it starts from, and the studies run on demand
# (`dvc repro studies/dvc.yaml`, or `-P`), and the monitor over the request log
# (`dvc repro monitor/dvc.yaml`). Each runs its stages at the project root.
PIPELINES = ("dvc.yaml", "sources/dvc.yaml", "studies/dvc.yaml", "monitor/dvc.yaml")


@dataclass(frozen=True)
class Stage:
    params: tuple[str, ...]  # params.yaml keys (dotted), exactly as in dvc.yaml (or in the record)
    help: str  # the code lives in pipelines/<stage name>.py
    # Declared through a config record another stage writes (`recorded_by`): DVC then tracks one
    # file per stage instead of the same keys in every `foreach` instance's lock entry.
    recorded_by: str | None = None
    # Modules its Dask tasks run from: under `engine: dask`, imported on the workers while the
    # stage starts (`mlsys.cluster.prestart`).
    on_workers: tuple[str, ...] = ()


def record_file(stage: str) -> str:
    """The config record of a recorded stage, in its recorder's output folder (paths.periods)."""
    return f"{stage}.config.json"


# What a LightGBM training reads: the model, the task (with the label), and the settings that
# make it deterministic.
MODEL = (
    "model",
    "data.label",
    "training.seed",
    "training.num_threads",
    "training.deterministic",
    "training.force",
    "training.curve_rows",
)

# What places the rolling windows of a retrain, and what new data must pass first.
WINDOWS = ("training.cadence", "training.holdout", "training.window", "training.sliding_periods")
DYNAMIC = ("training.mode", *WINDOWS, "training.data_check")

# What defines a serving request: the primary table's contract minus after-outcome columns,
# and the looked-up columns a request may carry (joins, aggregates) with their tables' bounds.
REQUEST = (
    "data.key",
    "data.primary",
    "data.sources",
    "data.label",
    "data.asof_joins",
    "data.lookup_joins",
    "data.aggregates",
    "data.derived",
    "contract.tables",
    "contract.dataset",
)

# What the dataset is built from: the sources, their joins and aggregates as of the prediction
# time, and the label (not what only the serving side or the card reads, e.g. feedback_loops).
BUILD = (
    "data.sources",
    "data.primary",
    "data.key",
    "data.event_time",
    "data.prediction_lead",
    "data.label",
    "data.asof_joins",
    "data.lookup_joins",
    "data.aggregates",
    "data.derived",
)

STAGES: dict[str, Stage] = {
    "snapshot": Stage(
        ("data.sources", "data.on_upstream_change", "contract.tables", "paths"),
        "copy upstream sources into a versioned raw snapshot (all or nothing)",
    ),
    "validate": Stage(
        ("data.sources", "data.primary", "data.event_time", "data.derived", "contract.tables", "engine", "paths"),
        "check each raw table against its contract (engine dask: by slice of rows)",
        on_workers=("mlsys.data.sliced",),
    ),
    "build": Stage(
        (*BUILD, "contract.dataset", "engine", "paths"),
        "join sources as of the prediction time; label; aggregates (engine dask: by time slice)",
        on_workers=("mlsys.data.sliced",),
    ),
    "featurize": Stage(
        ("features.columns", "split", *DYNAMIC, "contract.dataset", "engine", "paths"),
        "resolve the windows; check new data (dynamic); fit feature state on train; encode (engine dask: by slice)",
        on_workers=("mlsys.features.sliced",),
    ),
    "train": Stage(
        (*MODEL, "engine", "paths"),
        "LightGBM with early stopping on valid (engine dask: lightgbm.dask)",
        on_workers=("lightgbm.dask",),
    ),
    "evaluate": Stage(("evaluation", "paths"), "test metrics, slices, baselines, plots"),
    "package": Stage(("data.feedback_loops", "paths"), "assemble the model bundle and its card"),
    "release": Stage(
        (
            "release",
            "training.mode",
            *REQUEST,
            "data.event_time",
            "data.prediction_lead",
            "evaluation.calibration_bins",
            "inference.server",
            "paths",
        ),
        "gate the candidate (in a sandboxed server too); if blessed, register and make it live",
    ),
    "partition": Stage((), "cut the labelled dataset into backtest periods; record the backtest's config"),
    "backtest_static": Stage(
        ("features.columns", *MODEL, *WINDOWS, "backtest.initial", "backtest.tz", "paths"),
        "train the static model once on the initial window",
        recorded_by="partition",
    ),
    # One stage per period (dvc.yaml foreach); the period itself is in its command, so
    # adding a period to backtest.periods does not touch the others.
    "backtest": Stage(
        (
            "features.columns",
            *MODEL,
            *WINDOWS,
            "training.data_check",
            "training.warm_start",
            "training.warm_rounds",
            "contract.dataset",
            "release",
            "evaluation",
            "backtest.initial",
            "backtest.tz",
            "backtest.skip_gates",
            "paths",
        ),
        "check the new data, retrain, gate; score the period with static and dynamic",
        recorded_by="partition",
    ),
    "online": Stage(
        (*REQUEST, "inference.window", "split.tz", "paths"),
        "the online feature table: looked-up columns of every flight in the serving window",
    ),
    "predict": Stage(
        (
            *REQUEST,
            "inference.window",
            "inference.checks",
            "inference.backend",
            "inference.compile_inline",
            "split.tz",
            "release.model_name",
            "engine",
            "paths",
        ),
        "score the serving window with the live model; check; replace the lookup store's table",
        on_workers=("mlsys.engine", "lightgbm"),  # a model unpickles with LightGBM
    ),
    "worth": Stage(
        (
            "worth",
            "features.groups",
            *MODEL,
            "data.key",
            "data.primary",
            "data.asof_joins",
            "data.lookup_joins",
            "data.aggregates",
            "data.derived",
            "paths",
        ),
        "feature worth (permutation, leave-one-out retrains) and cost (transform, lookup, upstream)",
    ),
    "backtest_report": Stage(
        ("backtest", "training.window", "training.warm_start", "paths"),
        "static vs dynamic by period: plot, summary, page",
    ),
    # monitor/dvc.yaml, or a scheduler's `mlsys monitor`: over the request log, exit 10 on a fail
    "monitor": Stage(
        (
            *REQUEST,
            "data.event_time",
            "data.prediction_lead",
            "monitoring",
            "split.tz",
            "evaluation.slices",
            "release.model_name",
            "release.slices",
            "engine",
            "paths",
        ),
        "check served records: invariants, skew, drift, staleness, stability, latency, quality, upstream "
        "(exit 10 past a fail bound)",
        on_workers=("mlsys.monitoring.sliced",),
    ),
}
# Not a DVC stage: `mlsys serve` reads these keys (and the registry for the live model).
SERVE = (
    *REQUEST,
    "data.event_time",
    "data.prediction_lead",  # a logged record's prediction time
    "inference.mode",
    "inference.backend",
    "inference.compile_inline",
    "inference.server",
    "inference.request_log",
    "inference.canary",
    "inference.shadow",
    "data.feedback_loops",
    "release.model_name",
    "paths",
)


def _recording(recorder: str) -> tuple[str, ...]:
    """What a recorder declares: its own keys and every key of the stages it records (a key
    already covered by a declared section is not repeated)."""
    keys = ["backtest", "paths"]
    for stage in STAGES.values():
        if stage.recorded_by == recorder:
            keys += [k for k in stage.params if not any(k == p or k.startswith(p + ".") for p in keys)]
    return tuple(keys)


STAGES["partition"] = Stage(_recording("partition"), STAGES["partition"].help)
# Not DVC stages: `mlsys monitor` (the request log and the registry are outside DVC's graph)
# and `mlsys replay`.
REPLAY = (*REQUEST, "inference.window", "split.tz", "paths")
