"""Feature worth and cost (ML Test Score data-2 and data-3): the `worth` study.

Worth, in two passes on the train stage's windows:
- cheap: permutation importance of every input on the valid window (scikit-learn's
  `permutation_importance`, scored with the task's primary metric on the model's answers);
- exact: leave-one-out retrains with the same windows, seed and parameters (early stopping on
  the same valid window) for the top-k inputs and every input the cheap pass finds useless (at
  most `max_retrains` in all; every input when there are no more), and every group of
  `features.groups`.
A change is the relative loss of the primary metric (by its better direction) when the input is
shuffled or left out: > `useless_below` means the model needs it.

Cost: each input's transform time per row on the batch path and per record on the serving
path, whether a request carries its value or the server looks it up (one SQLite read per
request for every looked-up column: its time is measured on a table of the same columns), and
the upstream table it comes from.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.features import FeaturePipeline
from mlsys.model import Model, train
from mlsys.tasks import Task


@dataclass
class Windows:
    """The encoded train and valid windows the model was trained on."""

    x: np.ndarray
    y: np.ndarray
    xv: np.ndarray
    yv: np.ndarray


class _Fitted:
    """A trained model as scikit-learn's permutation pass expects an estimator (already fit)."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def fit(self, *_: Any) -> _Fitted:
        raise TypeError("the model is trained by the train stage; the permutation pass only scores it")

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_matrix(x, num_threads=1)


def scorer(task: Task) -> Callable[[np.ndarray, np.ndarray], float]:
    """The task's primary metric, signed so that larger is better."""
    metric = task.metrics[task.primary]
    return lambda y, p: metric.direction * float(metric.fn(y, p, 10))


def permutation(model: Model, xv: np.ndarray, yv: np.ndarray, repeats: int, max_rows: int, seed: int) -> np.ndarray:
    """(inputs, repeats) relative losses of the primary metric when each input is shuffled."""
    from sklearn.inspection import permutation_importance

    score = scorer(model.task)
    truth = model.task.truth(yv)
    base = score(truth, model.predict_matrix(xv, num_threads=1))
    result = permutation_importance(
        _Fitted(model),
        xv,
        truth,
        scoring=lambda est, x, y: score(y, est.predict(x)),
        n_repeats=repeats,
        random_state=seed,
        max_samples=min(1.0, max_rows / max(len(xv), 1)),
    )
    return result.importances / max(abs(base), 1e-12)


def leave_out(
    model: Model, data: Windows, drop: list[str], model_cfg: DictConfig, training: DictConfig
) -> tuple[float, int]:
    """The primary metric's relative loss on valid when `drop` is left out of a retrain with the
    same windows, seed and parameters (uncalibrated answers on both sides); and its rounds."""
    pipe, task = model.pipeline, model.task
    keep = [j for j, n in enumerate(pipe.names) if n not in drop]
    reduced = FeaturePipeline([pipe.specs[j] for j in keep])
    score, truth = scorer(task), task.truth(data.yv)
    base = score(truth, task.output(model.booster.predict(data.xv)))
    quiet = OmegaConf.merge(training, {"curve_rows": 0})  # no training curve: only the valid answers count
    result = train(data.x[:, keep], data.y, data.xv[:, keep], data.yv, reduced, model_cfg, quiet, task)
    without = task.output(result.booster.predict(data.xv[:, keep], num_iteration=result.best_iteration))
    return (base - score(truth, without)) / max(abs(base), 1e-12), int(result.best_iteration)


LOOKED_UP = "looked up"  # how `origins` starts the way the server gets a value it looks up


def origins(names: list[str], sources: list[str], data: DictConfig) -> dict[str, tuple[str, str]]:
    """Input -> (how the server gets its value: request, derived or looked up; the upstream table)."""
    from mlsys.data.derive import reads

    found: dict[str, tuple[str, str]] = {}
    for join in data.asof_joins:
        how = f"{LOOKED_UP} (as-of join by {', '.join(join.by)})"
        found.update({join.prefix + c: (how, join.source) for c in join.columns})
    for join in data.lookup_joins:
        found.update({join.prefix + c: (f"{LOOKED_UP} (lookup join on {join.key})", join.source) for c in join.columns})
    for name, agg in data.aggregates.items():
        how = f"{LOOKED_UP} (aggregate: {agg.stat} over {agg.window} by {', '.join(agg.by)})"
        found[name] = (how, data.primary)
    for name, spec in data.derived.items():
        found[name] = (f"derived from {', '.join(reads(spec)) or 'a function'}", data.primary)
    return {n: found.get(s, ("request", data.primary)) for n, s in zip(names, sources, strict=True)}


def _best_of(fn: Callable[[], Any], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def costs(pipe: FeaturePipeline, frame: pd.DataFrame, looked_up: list[str], key: list[str]) -> pd.DataFrame:
    """Per input: transform ns per row (batch path), µs per record (serving path) and, for a
    looked-up input, the µs of the online read every request pays for all looked-up columns."""
    from mlsys.serving.store import entities, online_reader, write_online

    records = frame.head(2000).to_dict("records")
    rows = []
    for src, enc in zip(pipe.sources, pipe.encoders, strict=True):
        col = frame[src]
        per_row = _best_of(lambda col=col, enc=enc: enc.column(col)) / max(len(frame), 1)
        values = [r.get(src) for r in records]
        per_record = _best_of(lambda values=values, enc=enc: [enc.value(v) for v in values]) / max(len(values), 1)
        rows.append({"transform_ns_per_row": per_row * 1e9, "transform_us_per_record": per_record * 1e6})
    out = pd.DataFrame(rows, index=pipe.names)
    lookup_us = float("nan")
    columns = [c for c in dict.fromkeys(looked_up) if c in frame.columns]
    if columns and key:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_online(Path(tmp) / "lookups.sqlite", frame, key, columns, {})
            reader = online_reader(path)[0]
            ids = entities(frame.head(2000), key)
            lookup_us = _best_of(lambda: [reader.one(i) for i in ids]) / len(ids) * 1e6
    out["lookup_us_per_request"] = [lookup_us if s in columns else 0.0 for s in pipe.sources]
    return out


def study(
    model: Model,
    data: Windows,
    frame: pd.DataFrame,
    cfg: DictConfig,
    groups: Mapping[str, list[str]],
    model_cfg: DictConfig,
    training: DictConfig,
    data_cfg: DictConfig,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The worth table (one row per input, then one per declared group) and its summary."""
    names, task = model.pipeline.names, model.task
    unknown = sorted({f for members in groups.values() for f in members} - set(names))
    if unknown:
        from mlsys.config.checks import unknown_names
        from mlsys.errors import ConfigError

        raise ConfigError(f"features.groups: {unknown_names(unknown, names)} are not model inputs")
    progress("permutation")
    shuffled = permutation(model, data.xv, data.yv, cfg.repeats, cfg.max_rows, cfg.seed)
    mean, std = shuffled.mean(axis=1), shuffled.std(axis=1)
    order = list(np.argsort(-mean))
    cheap_useless = [names[j] for j in order if mean[j] <= cfg.useless_below]
    if len(names) <= cfg.max_retrains:
        chosen = list(names)
    else:
        # The top_k, then the shuffle's useless ones (lowest first) confirmed by a retrain.
        top = [names[j] for j in order[: cfg.top_k]]
        chosen = [*top, *[n for n in reversed(cheap_useless) if n not in top][: max(cfg.max_retrains - len(top), 0)]]
    exact: dict[str, tuple[float, int]] = {}
    for name in chosen:
        progress(f"without {name}")
        exact[name] = leave_out(model, data, [name], model_cfg, training)
    gain = model.booster.feature_importance("gain")
    share = gain / gain.sum() if gain.sum() > 0 else np.zeros(len(names))
    where = origins(names, model.pipeline.sources, data_cfg)
    looked_up = [s for n, s in zip(names, model.pipeline.sources, strict=True) if where[n][0].startswith(LOOKED_UP)]
    cost = costs(model.pipeline, frame, looked_up, list(data_cfg.key))
    rows = []
    for j, name in enumerate(names):
        change = exact[name][0] if name in exact else float(mean[j])
        rows.append(
            {
                "feature": name,
                "permutation_change": float(mean[j]),
                "permutation_std": float(std[j]),
                "leave_out_change": exact[name][0] if name in exact else float("nan"),
                "change": change,
                "decided_by": "leave-one-out" if name in exact else "permutation",
                "verdict": "useful" if change > cfg.useless_below else "useless",
                "gain_share": float(share[j]),
                "source": model.pipeline.sources[j],
                "transform": model.pipeline.specs[j]["transform"],
                "served_from": where[name][0],
                "upstream": where[name][1],
                **cost.loc[name].to_dict(),
            }
        )
    for group, members in groups.items():
        progress(f"without group {group}")
        change, _ = leave_out(model, data, list(members), model_cfg, training)
        rows.append(
            {
                "feature": f"group:{group}",
                "leave_out_change": change,
                "change": change,
                "decided_by": "leave-one-out",
                "verdict": "useful" if change > cfg.useless_below else "useless",
                "gain_share": float(sum(share[names.index(m)] for m in members)),
                "source": ", ".join(members),
            }
        )
    table = pd.DataFrame(rows)
    summary = {
        "measure": task.primary,
        "inputs": len(names),
        "retrains": len(exact) + len(groups),
        "useless": [r["feature"] for r in rows if r["verdict"] == "useless"],
        "useful": int(sum(r["verdict"] == "useful" for r in rows[: len(names)])),
    }
    return table, summary
