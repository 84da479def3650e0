"""Features declared in `conf/features/`: fitted on the training window, applied by one
pipeline to a frame (batch, evaluation) or to one record (online serving)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.config.checks import unknown_names
from mlsys.errors import ConfigError, ContractError
from mlsys.features.transforms import Clip, Column, Encoder, encoder, fit, resolve


@dataclass
class FeaturePipeline:
    """Fitted feature state: names, source columns, transforms and their states."""

    specs: list[dict[str, Any]]

    def __post_init__(self) -> None:
        self.names = [s["name"] for s in self.specs]
        self.sources = [s["source"] for s in self.specs]
        self.encoders: list[Encoder] = [encoder(s["transform"], s["state"]) for s in self.specs]
        self.categorical = [i for i, s in enumerate(self.specs) if s["type"] == "categorical"]
        self._pairs = list(zip(self.sources, self.encoders, strict=True))
        # The record path in two parts: plain and clipped numbers read into one array and
        # clipped and filled at once (what `Encoder.value` does one by one), the rest (codes,
        # calendar fields, functions) value by value.
        plain = [j for j, e in enumerate(self.encoders) if type(e) in (Encoder, Clip)]
        self._plain = np.array(plain, dtype=np.intp)
        self._plain_sources = [self.sources[j] for j in plain]
        self._lo = np.array([getattr(self.encoders[j], "lo", -np.inf) for j in plain], dtype=np.float64)
        self._hi = np.array([getattr(self.encoders[j], "hi", np.inf) for j in plain], dtype=np.float64)
        self._fill = np.array([self.encoders[j].fill for j in plain], dtype=np.float64)
        self._others = [(j, self.sources[j], self.encoders[j]) for j in range(len(self.specs)) if j not in set(plain)]

    def inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame's source columns alone, each once: what a slice sent to a Dask worker
        needs (a missing one is left for `transform_frame` to name)."""
        return frame[[c for c in dict.fromkeys(self.sources) if c in frame.columns]]

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, k) float64 matrix, row-major (what LightGBM predicts fastest from)."""
        missing = sorted(set(self.sources) - set(frame.columns))
        if missing:
            raise ContractError(f"features: input frame lacks source columns {missing}")
        out = np.empty((len(frame), len(self.specs)), dtype=np.float64)
        for j, (src, enc) in enumerate(self._pairs):
            out[:, j] = enc.column(frame[src])
        return out

    def transform_record(self, record: Mapping[str, Any]) -> np.ndarray:
        """(1, k) float64 row from a mapping of source column -> value; absent = missing."""
        get = record.get
        try:
            numbers = np.array([get(src) for src in self._plain_sources], dtype=np.float64)  # None -> NaN
        except (TypeError, ValueError):  # pd.NA, or text where a number belongs: one by one
            return np.array([[enc.value(get(src)) for src, enc in self._pairs]], dtype=np.float64)
        out = np.empty((1, len(self._pairs)), dtype=np.float64)
        numbers = np.minimum(np.maximum(numbers, self._lo), self._hi)  # NaN stays NaN
        out[0, self._plain] = np.where(np.isnan(numbers), self._fill, numbers)
        for j, src, enc in self._others:
            out[0, j] = enc.value(get(src))
        return out

    def state(self) -> dict[str, Any]:
        return {"features": self.specs}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FeaturePipeline:
        return cls(specs=list(state["features"]))


CALENDAR = ("day_of_week", "day_of_year", "month", "day", "hour", "minute_of_day")


def needs(transform: str) -> str | None:
    """The kind of column a transform reads: datetime (calendar fields), numeric, or any (vocab)."""
    return None if transform == "vocab" else "datetime" if transform in CALENDAR else "numeric"


def fit_pipeline(
    features: DictConfig,
    train: pd.DataFrame,
    column: Callable[[str], Column] | None = None,
    mapper: Callable[..., Iterable[Any]] | None = None,
) -> FeaturePipeline:
    """Fit every declared feature on the training frame only (a source the data lacks, or of
    a kind its transform cannot read, is a ConfigError naming the feature). `column(source)`:
    what fitting reads of a column, when computed elsewhere (the Dask engine's slices);
    `mapper`: a `map` fitting the features at once (threads waiting on the cluster)."""
    column = column or (lambda source: Column(train[source]))
    from mlsys.data.checks import dtype_kind

    for name, feat in features.columns.items():
        key = f"features.columns.{name}"
        if feat.source not in train.columns:
            raise ConfigError(
                f"{key}.source: {unknown_names([feat.source], list(train.columns))} is not a column of the built "
                "dataset"
            )
        want, found = needs(feat.transform), dtype_kind(str(train[feat.source].dtype))
        if want is not None and want != found:
            raise ConfigError(
                f"{key}: transform {feat.transform!r} reads {want} values, but column {feat.source!r} holds "
                f"{found} ({train[feat.source].dtype}); a text column is type: categorical with transform: vocab"
            )
    items = list(features.columns.items())
    states = (mapper or map)(lambda item: fit(item[1].transform, column(item[1].source), item[1]), items)
    specs = [
        {
            "name": name,
            "source": feat.source,
            "type": feat.type,
            "transform": feat.transform,
            "availability": feat.availability,
            "config": OmegaConf.to_container(feat, resolve=True),
            "state": state,
        }
        for (name, feat), state in zip(items, states, strict=True)
    ]
    return FeaturePipeline(specs=specs)


def check_features(features: DictConfig, data: DictConfig, contract: DictConfig) -> None:
    """Every model input reads a declared column of the built dataset of a kind its
    transform can read, has a transform that resolves and fits its type, and is known at
    the prediction time (its source is not a column known only after the outcome)."""
    from mlsys.data.checks import after_outcome_columns, dataset_columns

    leaky = after_outcome_columns(data)
    declared = dataset_columns(data, contract)
    for name, feat in features.columns.items():
        key = f"features.columns.{name}"
        if feat.source not in declared:
            raise ConfigError(
                f"{key}.source: {unknown_names([feat.source], declared)} is not a column of the built dataset: "
                "declare it in the primary table's contract, data.derived, a join, data.aggregates or "
                "contract.dataset"
            )
        want, kind = needs(feat.transform), declared[feat.source]
        if want is not None and kind is not None and want != kind:
            raise ConfigError(
                f"{key}: transform {feat.transform!r} reads {want} values, but {feat.source!r} is declared "
                f"{kind}; a text column is type: categorical with transform: vocab"
            )
        try:
            resolve(feat.transform)
        except ValueError as exc:
            raise ConfigError(f"{key}.transform: {exc}") from exc
        quantiles = list(feat.clip_quantiles)
        if len(quantiles) != 2 or not 0 <= quantiles[0] < quantiles[1] <= 1:
            raise ConfigError(f"{key}.clip_quantiles: {quantiles}: expected [low, high] with 0 <= low < high <= 1")
        for limit in ("min_count", "max_categories"):
            if feat[limit] < 1:
                raise ConfigError(f"{key}.{limit}: {feat[limit]}: expected at least 1")
        if (feat.type == "categorical") != (feat.transform == "vocab"):
            raise ConfigError(f"{key}: categorical features use transform 'vocab' and only they do")
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
