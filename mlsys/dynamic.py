"""The data side of dynamic training: the check new data must pass before any retrain reads
it (the newest cadence period against the one before), and the feature profiles it compares.
The retrain itself is `mlsys.retrain`."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mlsys import drift
from mlsys.contracts import validate_table
from mlsys.data.columns import EVENT_TIME
from mlsys.features import FeaturePipeline
from mlsys.split import CADENCE

PROFILE = "profile.json"  # a model's training data, profiled: the reference monitoring compares with


def data_profile(pipeline: FeaturePipeline, frame: pd.DataFrame) -> drift.Profile:
    """The distribution of `frame`'s features, as a reference to compare later data with."""
    return drift.profile(pipeline.transform_frame(frame), pipeline.names, pipeline.categorical)


def answer_profile(model: Any, encoded: pd.DataFrame) -> drift.Profile:
    """The distribution of `model`'s answers (the task's numbers, `answer.<column>`) on
    `encoded` rows (the validation window): the reference of prediction drift."""
    from mlsys.data.columns import ANSWER

    answers = model.task.matrix(model.predict_matrix(encoded[model.pipeline.names].to_numpy("float64")))
    return drift.profile(answers, [ANSWER + c for c in model.task.columns], [])


def check_new_data(
    frame: pd.DataFrame,
    pipeline: FeaturePipeline,
    reference: drift.Profile,
    contract: DictConfig | None,
    check: DictConfig,
) -> dict[str, Any]:
    """May a retrain adopt `frame`? Its contract, its row count, and its features'
    distribution against the previous period's profile. Returns the record, with `reasons`."""
    reasons = []
    if contract is not None:
        report = validate_table("new data", contract, frame).report
        if report["status"] != "passed":
            failures = [f"{f['column']}: {f['check']}" for f in report["frame_failures"] + report["row_failures"]]
            reasons.append(f"contract.dataset: {report['rows_quarantined']} rows fail ({'; '.join(failures)})")
    if len(frame) < check.min_rows:
        reasons.append(f"rows: {len(frame)} < training.data_check.min_rows={check.min_rows}")
    x = pipeline.transform_frame(frame)
    psi = drift.psi(reference, x, pipeline.names)
    missing = drift.missing_change(reference, x, pipeline.names)
    expected = [n for n in pipeline.names if drift.expected(n, check.expected_drift)]
    for name in pipeline.names:
        if name not in expected and psi[name] > check.max_psi:
            reasons.append(f"{name}: PSI {psi[name]:.3f} > training.data_check.max_psi={check.max_psi}")
        if abs(missing[name]) > check.max_missing_change:
            reasons.append(
                f"{name}: missing share changed by {missing[name]:+.3f} "
                f"(> training.data_check.max_missing_change={check.max_missing_change})"
            )
    return {
        "adopted": not reasons,
        "reasons": reasons,
        "rows": len(frame),
        "psi": psi,
        "missing_change": missing,
        "expected_drift": expected,
    }


def check_newest(
    dataset: pd.DataFrame, end: str, pipeline: FeaturePipeline, training: DictConfig, contract: Any, tz: str
) -> dict[str, Any]:
    """The newest complete cadence period before local date `end` against the period before
    it: the data check of every retrain."""
    stop = pd.Timestamp(end)
    step = pd.tseries.frequencies.to_offset(CADENCE[training.cadence])
    bounds = [(stop - 2 * step).tz_localize(tz), (stop - step).tz_localize(tz), stop.tz_localize(tz)]
    t = dataset[EVENT_TIME]
    before, newest = (dataset[(t >= a) & (t < b)] for a, b in pairwise(bounds))
    check = check_new_data(newest, pipeline, data_profile(pipeline, before), contract, training.data_check)
    check["period"] = {"start": str(bounds[1]), "end": str(bounds[2]), "previous_start": str(bounds[0])}
    return check
