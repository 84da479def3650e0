"""`mlsys audit`: score this project against the ML Test Score rubric (Breck et al. 2017).

28 tests in 4 sections. Each test names the evidence that makes it automated (1 point) or
documented-manual (0.5 point); the audit checks that evidence holds in this project and
scores what it finds. Section score = sum; final score = the lowest section. Evidence is
counted only when it does something:
- `test:path::name`: the test passed in the latest run that ran it (every parametrized case;
  the test suite records each test's latest outcome in `reports/tests/results.json`, so the
  fast tier does not erase the slow tier's results);
- `config:key`, `config:key=value`, `config:key>number`: the key is set, not empty, and (when
  given) equal to / above the value, e.g. `training.deterministic=true`, a margin above 0;
- `stage:name` (in dvc.yaml), `file:`, `dir:`, `git:` (tracked), `readme:` (a section), and
  `blessed:` (a release record that passed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mlsys.stages import PIPELINES

RESULTS = "reports/tests/results.json"  # test id -> latest outcome, merged across runs


def record_results(root: Path, outcomes: dict[str, str]) -> Path:
    """Merge a test run's outcomes (nodeid -> passed / failed / skipped) into RESULTS: each
    test keeps its latest outcome, so a partial run updates only what it ran."""
    from mlsys.io import write_json

    path = Path(root) / RESULTS
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        known = {}
    at = datetime.now(UTC).isoformat(timespec="seconds")
    known.update({nodeid: {"outcome": outcome, "at": at} for nodeid, outcome in outcomes.items()})
    return write_json(path, known)


@dataclass(frozen=True)
class Rubric:
    id: str
    title: str
    automated: tuple[str, ...] = ()  # evidence for 1 point (all must hold)
    manual: tuple[str, ...] = ()  # evidence for 0.5 point (all must hold)
    note: str = ""


T = "tests/"
RUBRIC: tuple[Rubric, ...] = (
    # --- data ------------------------------------------------------------------------
    Rubric(
        "data-1",
        "Feature expectations are captured in a schema",
        (
            "stage:validate",
            "config:contract.tables",
            "config:contract.dataset",
            f"test:{T}contracts/test_contracts.py::test_generated_bad_rows_are_exactly_the_quarantined_rows",
        ),
    ),
    Rubric(
        "data-2",
        "All features are beneficial",
        (
            "stage:worth",
            "file:metrics/worth.json",
            f"test:{T}unit/test_worth.py::test_a_noise_input_is_useless_and_a_strong_one_is_not",
            f"test:{T}unit/test_worth.py::test_past_max_retrains_the_top_and_the_useless_are_retrained_and_groups_together",
        ),
        (),
        "the worth study shuffles every input and retrains without the top ones, the useless ones and each "
        "group; a useless input is named (a study, run by `dvc repro -P`, not by every experiment)",
    ),
    Rubric(
        "data-3",
        "No feature's cost is too much",
        (),
        (
            "stage:worth",
            f"test:{T}unit/test_worth.py::test_costs_name_the_upstream_and_the_online_read_of_looked_up_inputs",
            "readme:### Feature worth and cost",
        ),
        "each input's cost is measured (transform per row and per record, the online read, its upstream table) "
        "beside its worth; weighing the two is a documented review, no bound is enforced",
    ),
    Rubric(
        "data-4",
        "Features adhere to meta-level requirements",
        (
            "config:data.sources.flights.after_outcome",
            f"test:{T}unit/test_config.py::test_after_outcome_model_input_is_a_config_error",
            f"test:{T}unit/test_config.py::test_bad_config_names_the_key",
        ),
    ),
    Rubric(
        "data-5",
        "The data pipeline has appropriate privacy controls",
        (
            f"test:{T}unit/test_pii.py::test_a_contract_report_masks_a_pii_columns_examples_and_keeps_the_others",
            f"test:{T}serving/test_pii_server.py::test_a_pii_field_is_logged_masked_with_its_encoded_feature",
        ),
        (),
        "columns a contract marks pii are masked in every report and in the request log, and may not be "
        "slices; the default data is public and marks none",
    ),
    Rubric(
        "data-6",
        "New features can be added quickly",
        (
            "file:conf/features/flights.yaml",
            f"test:{T}pipeline/test_generic_dataset.py::test_pipeline_runs_on_a_yaml_only_dataset",
        ),
    ),
    Rubric(
        "data-7",
        "All input feature code is tested",
        (
            f"test:{T}unit/test_features.py::test_every_transform_row_path_equals_frame_path",
            f"test:{T}unit/test_build.py::test_aggregate_matches_brute_force",
            f"test:{T}unit/test_build.py::test_weather_is_joined_as_of_the_prediction_time",
            f"test:{T}unit/test_features.py::test_every_transform_gives_known_values",
        ),
    ),
    # --- model -----------------------------------------------------------------------
    Rubric(
        "model-1",
        "Model specs are reviewed and submitted",
        (),
        ("git:conf", "git:params.yaml", "git:dvc.lock", "readme:### Reviewing a change"),
        "specs are versioned with git; the review is a documented manual procedure",
    ),
    Rubric(
        "model-2",
        "Offline and online metrics correlate",
        (f"test:{T}serving/test_monitor.py::test_a_clean_replay_raises_no_fail_and_shows_quality_and_age",),
        (),
        "`mlsys monitor` joins landed labels to served answers: the served metric beside the release's test figure",
    ),
    Rubric(
        "model-3",
        "All hyperparameters have been tuned",
        (),
        (
            f"test:{T}pipeline/test_experiments.py::test_a_queued_sweep_runs_and_gates_against_the_live_model",
            "readme:### Tuning",
        ),
        "a documented procedure: queued DVC sweeps over model.params, compared with `dvc exp show`; no "
        "automatic search",
    ),
    Rubric(
        "model-4",
        "The impact of model staleness is known",
        (
            "stage:backtest_report",
            "file:metrics/backtest.json",
            f"test:{T}pipeline/test_backtest.py::test_backtest_scores_static_and_dynamic_each_period",
        ),
        (),
        "the backtest measures quality and model age per period, static vs dynamic, at every repro",
    ),
    Rubric(
        "model-5",
        "A simpler model is not better",
        (
            "config:release.baseline.margin>0",
            "stage:release",
            f"test:{T}unit/test_release.py::test_baseline_and_stability_gates",
        ),
    ),
    Rubric(
        "model-6",
        "Model quality is sufficient on important data slices",
        (
            "config:evaluation.slices",
            "config:release.slices.bounds",
            f"test:{T}unit/test_release.py::test_small_slices_are_reported_not_gated",
        ),
    ),
    Rubric(
        "model-7",
        "The model is tested for considerations of inclusion",
        (),
        (),
        "slices are operational (carrier, origin, month); the data has no people to be fair to",
    ),
    # --- infrastructure --------------------------------------------------------------
    Rubric(
        "infra-1",
        "Training is reproducible",
        (
            f"test:{T}model/test_determinism.py::test_training_is_byte_identical_across_processes",
            "config:training.deterministic=true",
        ),
    ),
    Rubric(
        "infra-2",
        "Model specs are unit tested",
        (
            f"test:{T}model/test_model_spec.py::test_training_loss_decreases_over_rounds",
            f"test:{T}model/test_model_spec.py::test_warm_start_continues_from_the_saved_model",
        ),
    ),
    Rubric(
        "infra-3",
        "The ML pipeline is integration tested",
        (f"test:{T}pipeline/test_pipeline.py::test_repro_released_the_blessed_candidate", "file:.ci/run"),
    ),
    Rubric(
        "infra-4",
        "Model quality is validated before serving",
        (
            "stage:release",
            "config:release.absolute",
            "config:release.change",
            "blessed:reports/blessing.json",
            f"test:{T}pipeline/test_pipeline.py::test_degraded_candidate_is_vetoed_and_live_model_stays",
        ),
    ),
    Rubric(
        "infra-5",
        "The model is debuggable",
        (
            f"test:{T}unit/test_explain.py::test_binary_contributions_and_bias_sum_to_the_raw_score_and_its_sigmoid_is_the_score",
            f"test:{T}unit/test_explain.py::test_multiclass_has_a_breakdown_per_class_each_summing_to_its_raw_score",
            f"test:{T}serving/test_server.py::test_explain_takes_one_answer_apart_over_http_and_on_the_command_line",
        ),
        (),
        "`mlsys explain` and POST /explain take one record through the served path: lookups, features, "
        "each feature's contribution, the score",
    ),
    Rubric(
        "infra-6",
        "Models are canaried before serving",
        (
            "config:release.rollout",
            f"test:{T}serving/test_monitor.py::test_a_worse_canary_is_flagged_dropped_and_a_candidate_can_be_promoted",
            f"test:{T}unit/test_registry.py::test_a_canary_candidate_is_not_live_until_promoted_and_a_dropped_one_is_revoked",
        ),
        (),
        "the infra gate serves the candidate in a sandbox before release; `release.rollout: canary` then "
        "serves it to a share of entities, judged by `mlsys monitor` against the live model",
    ),
    Rubric(
        "infra-7",
        "Serving models can be rolled back",
        (
            f"test:{T}pipeline/test_pipeline.py::test_release_then_rollback_through_the_cli",
            f"test:{T}unit/test_registry.py::test_crash_mid_release_leaves_the_old_pointer",
        ),
    ),
    # --- monitoring ------------------------------------------------------------------
    Rubric(
        "monitor-1",
        "Dependency changes result in notification",
        (
            "stage:snapshot",
            f"test:{T}pipeline/test_pipeline.py::test_changed_upstream_is_detected_and_flows_downstream",
            f"test:{T}serving/test_monitor.py::test_a_changed_upstream_file_is_an_upstream_warning_and_goes_to_the_webhook",
        ),
        (),
        "every snapshot detects a changed source; `mlsys monitor` turns it into an alert, recorded and POSTed",
    ),
    Rubric(
        "monitor-2",
        "Data invariants hold in training and serving inputs",
        (
            f"test:{T}serving/test_monitor.py::test_an_input_out_of_bounds_breaks_the_serving_invariants",
            f"test:{T}serving/test_monitor.py::test_a_unit_change_in_a_carried_lookup_is_drift_and_skew",
        ),
        (),
        "the serving contract runs in batch over each window of served inputs (`mlsys monitor`), drift on top",
    ),
    Rubric(
        "monitor-3",
        "Training and serving are not skewed",
        (
            f"test:{T}serving/test_monitor.py::test_a_serving_side_vocabulary_bug_is_feature_skew",
            f"test:{T}serving/test_monitor.py::test_a_clean_replay_raises_no_fail_and_shows_quality_and_age",
        ),
        (),
        "every logged feature is recomputed by the batch path from the built row and compared",
    ),
    Rubric(
        "monitor-4",
        "Models are not too stale",
        (f"test:{T}serving/test_monitor.py::test_a_model_older_than_the_limit_is_stale",),
        (),
        "model age at prediction time, the online table's and the store's age, with bounds",
    ),
    Rubric(
        "monitor-5",
        "Models are numerically stable",
        (f"test:{T}serving/test_monitor.py::test_nan_scores_are_instability",),
        (),
        "served answers: NaN or infinite, constant, out of the validation range",
    ),
    Rubric(
        "monitor-6",
        "Computing performance has not regressed",
        (f"test:{T}serving/test_monitor.py::test_latency_tenfold_the_window_before_is_a_performance_warning",),
        (),
        "`mlsys monitor` bounds p99 latency against the window before (not yet against the release's "
        "figures); bench/ figures are not compared over time",
    ),
    Rubric(
        "monitor-7",
        "Prediction quality has not regressed",
        (
            f"test:{T}serving/test_monitor.py::test_a_shift_in_the_label_rate_is_quality",
            f"test:{T}serving/test_monitor.py::test_a_clean_replay_raises_no_fail_and_shows_quality_and_age",
        ),
        (),
        "the task's metrics on served records once labels land, by day, against the release's test figure",
    ),
)
SECTIONS = ("data", "model", "infra", "monitor")


@dataclass
class Project:
    """What the audit can look at."""

    root: Path
    params: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    readme: str = ""
    tracked: set[str] = field(default_factory=set)
    results: dict[str, dict[str, str]] = field(default_factory=dict)  # RESULTS

    @classmethod
    def load(cls, root: Path) -> Project:
        import subprocess

        def read(name: str) -> str:
            path = root / name
            return path.read_text(encoding="utf-8") if path.exists() else ""

        files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split()
        try:
            results = json.loads(read(RESULTS) or "{}")
        except ValueError:
            results = {}
        return cls(
            root=root,
            params=yaml.safe_load(read("params.yaml")) or {},
            stages={k: v for f in PIPELINES for k, v in ((yaml.safe_load(read(f)) or {}).get("stages") or {}).items()},
            readme=read("README.md"),
            tracked=set(files),
            results=results,
        )

    def holds(self, evidence: str) -> bool:
        kind, _, what = evidence.partition(":")
        if kind == "stage":
            return what in self.stages
        if kind == "config":
            key, op, want = re.fullmatch(r"([\w.]+)(?:([=>])(.+))?", what).groups()  # type: ignore[union-attr]
            node: Any = self.params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    return False
                node = node[part]
            if node in (None, [], {}, False):
                return False
            if op == "=":
                return str(node).lower() == want.lower()
            if op == ">":
                return isinstance(node, int | float) and node > float(want)
            return True
        if kind == "test":  # passed in the latest run that ran it, every case of it
            cases = [v["outcome"] for k, v in self.results.items() if k == what or k.startswith(what + "[")]
            return bool(cases) and all(outcome == "passed" for outcome in cases)
        if kind in ("file", "dir"):
            return (self.root / what).is_file() if kind == "file" else (self.root / what).is_dir()
        if kind == "git":
            return any(f == what or f.startswith(what.rstrip("/") + "/") for f in self.tracked)
        if kind == "readme":
            return what in self.readme
        if kind == "blessed":  # a release record on disk that says the candidate passed
            import json

            path = self.root / what
            return path.is_file() and json.loads(path.read_text()).get("blessed") is True
        raise ValueError(f"unknown evidence kind {kind!r}")


def score(project: Project) -> dict[str, Any]:
    rows = []
    for test in RUBRIC:
        auto = bool(test.automated) and all(map(project.holds, test.automated))
        manual = bool(test.manual) and all(map(project.holds, test.manual))
        points, status = (1.0, "automated") if auto else (0.5, "manual") if manual else (0.0, "missing")
        evidence = test.automated if auto else test.manual if manual else ()
        missing = [e for e in (*test.automated, *test.manual) if not project.holds(e)]
        rows.append(
            {
                "id": test.id,
                "test": test.title,
                "points": points,
                "status": status,
                "evidence": list(evidence),
                "missing_evidence": missing,
                "note": test.note,
            }
        )
    sections = {s: sum(r["points"] for r in rows if r["id"].startswith(s)) for s in SECTIONS}
    return {
        "tests": rows,
        "sections": sections,
        "final": min(sections.values()),
        "rubric": "Breck et al., The ML Test Score (2017): 0.5 manual, 1 automated; final = lowest section",
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# ML Test Score audit",
        "",
        result["rubric"],
        "",
        "| test | points | status | evidence / note |",
        "|---|---|---|---|",
    ]
    for r in result["tests"]:
        detail = ", ".join(f"`{e}`" for e in r["evidence"]) or r["note"]
        if r["evidence"] and r["note"]:
            detail += f" ({r['note']})"
        lines.append(f"| {r['id']} {r['test']} | {r['points']} | {r['status']} | {detail} |")
    lines += [
        "",
        "| section | score |",
        "|---|---|",
        *(f"| {s} | {v} |" for s, v in result["sections"].items()),
        f"| **final (lowest section)** | **{result['final']}** |",
    ]
    return "\n".join(lines) + "\n"
