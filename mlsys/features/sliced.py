"""Featurize on a Dask cluster (`engine: dask`): the train window's slices held by the workers,
the feature state fitted from exact distributed reductions, the windows encoded slice by slice.

- vocabularies: each slice's value counts, summed (exact);
- quantiles (clip bounds) and medians (imputation): exact order statistics of the values
  spread over the slices (`Ranked.select`: each slice sorted once on its worker, then rounds of
  counts below pivot values narrow each rank's value to a range small enough to fetch),
  combined by numpy's own formula, so they equal `np.quantile` and `np.nanmedian` on the whole
  column to the bit.

The fitted state and encoded windows equal the local engine's (tested). The drift profile is
computed by the stage from the encoded train window it gathers to write anyway.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mlsys.cluster import Slices, cuts, stream
from mlsys.features import FeaturePipeline, fit_pipeline
from mlsys.features.transforms import Column, Encoder

PIVOTS = 4096  # values tried per round: the range holding a rank shrinks ~this much each round
FETCH = 65536  # a range holding at most this many values is fetched and sorted on the driver
THREADS = 16  # features reduced at once


def _sorted(part: Any, values: Callable[[Any], np.ndarray]) -> np.ndarray:
    return np.sort(values(part), kind="stable")


def _ends(arr: np.ndarray) -> tuple[int, float, float, int, int]:
    """Length, smallest and largest finite value, and the counts of -inf and +inf."""
    ninf, pinf = int(np.searchsorted(arr, -np.inf, "right")), len(arr) - int(np.searchsorted(arr, np.inf, "left"))
    finite = arr[ninf : len(arr) - pinf]
    return (
        len(arr),
        float(finite[0]) if len(finite) else math.nan,
        float(finite[-1]) if len(finite) else math.nan,
        ninf,
        pinf,
    )


def _below(arr: np.ndarray, pivots: np.ndarray) -> np.ndarray:
    """Per pivot: how many values lie below it, the first value at or above it and the last
    below it (+-inf where there is none), as a (3, pivots) array."""
    idx = np.searchsorted(arr, pivots, side="left")
    if not len(arr):
        return np.stack([idx.astype(np.float64), np.full(len(idx), np.inf), np.full(len(idx), -np.inf)])
    above = np.where(idx < len(arr), arr[np.minimum(idx, len(arr) - 1)], np.inf)
    under = np.where(idx > 0, arr[np.maximum(idx - 1, 0)], -np.inf)
    return np.stack([idx.astype(np.float64), above, under])


def _between(arr: np.ndarray, ranges: list[tuple[float, float]]) -> list[np.ndarray]:
    return [arr[np.searchsorted(arr, lo, "left") : np.searchsorted(arr, hi, "left")] for lo, hi in ranges]


class Ranked:
    """Exact order statistics of the values `values(part)` over every slice: each slice's
    values sorted once on its worker."""

    def __init__(self, slices: Slices, values: Callable[[Any], np.ndarray], parts: list[Any] | None = None) -> None:
        self.slices = slices
        self.sorted = slices.map(_sorted, values, parts=parts)
        ends = slices.gather(_ends, parts=self.sorted)
        self.n = sum(e[0] for e in ends)
        finite = [e for e in ends if not math.isnan(e[1])]  # slices holding a finite value
        self.lo, self.hi = min((e[1] for e in finite), default=math.inf), max((e[2] for e in finite), default=-math.inf)
        self.ninf, self.pinf = sum(e[3] for e in ends), sum(e[4] for e in ends)

    def select(self, ranks: Sequence[int]) -> list[float]:
        """The values at 0-based `ranks` of all the values in order, every rank narrowed in
        the same rounds (a round: one task per slice)."""
        out: dict[int, float] = {}
        todo: dict[int, tuple[float, float, int, int]] = {}  # rank: [lo, hi) and the counts below each
        for rank in set(ranks):
            if rank < self.ninf:
                out[rank] = -math.inf
            elif rank >= self.n - self.pinf:
                out[rank] = math.inf
            else:  # [lo, hi) holds every finite value
                todo[rank] = (self.lo, float(np.nextafter(self.hi, np.inf)), self.ninf, self.n - self.pinf)
        while True:
            for rank, (lo, hi, _, _) in list(todo.items()):
                if np.nextafter(lo, np.inf) >= hi:  # one representable value left
                    out[rank] = lo
                    del todo[rank]
            wide = [r for r, (_, _, below_lo, below_hi) in todo.items() if below_hi - below_lo > FETCH]
            if not wide:
                break
            pivots = {}
            for rank in wide:
                lo, hi = todo[rank][:2]
                t = np.linspace(0, 1, PIVOTS + 1)[1:-1]
                p = np.unique(lo * (1 - t) + hi * t)  # never hi - lo: it overflows on +-1e308
                p = p[(p > lo) & (p < hi)]
                pivots[rank] = p if len(p) else np.array([np.nextafter(lo, np.inf)])  # a few floats wide
            found = self.slices.gather(_below, np.concatenate(list(pivots.values())), parts=self.sorted)
            counts = np.sum([f[0] for f in found], axis=0).astype(np.int64)
            above = np.min([f[1] for f in found], axis=0)  # the first value at or above each pivot
            under = np.max([f[2] for f in found], axis=0)  # the last value below each pivot
            start = 0
            for rank, p in pivots.items():
                lo, hi, below_lo, below_hi = todo[rank]
                j = int(np.searchsorted(counts[start : start + len(p)], rank, side="right"))
                if j:  # p[:j] have at most `rank` values below: the rank's value is at or above p[j - 1]
                    lo, below_lo = float(above[start + j - 1]), int(counts[start + j - 1])
                if j < len(p):  # and below p[j]: at most the last value below it
                    hi, below_hi = float(np.nextafter(under[start + j], np.inf)), int(counts[start + j])
                todo[rank] = (lo, hi, below_lo, below_hi)
                start += len(p)
        ranges = list(dict.fromkeys((lo, hi) for lo, hi, _, _ in todo.values()))
        if ranges:
            fetched = self.slices.gather(_between, ranges, parts=self.sorted)
            values = {r: np.sort(np.concatenate([f[i] for f in fetched])) for i, r in enumerate(ranges)}
            for rank, (lo, hi, below_lo, _) in todo.items():
                out[rank] = float(values[(lo, hi)][rank - below_lo])
        return [out[r] for r in ranks]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """`np.quantile(values, qs)` (method linear), to the bit: numpy's virtual index and lerp."""
        spots = []  # (virtual index, the index numpy interpolates from, the ranks before and after it)
        for q in np.asarray(qs, dtype=np.float64):
            v = (self.n - 1) * q
            # At or past the last value numpy takes it on both sides, from index -1.
            k = math.floor(v)
            spots.append((v, -1, self.n - 1, self.n - 1) if v >= self.n - 1 else (v, k, k, k + 1))
        at = dict(zip(ranks := sorted({r for _, _, a, b in spots for r in (a, b)}), self.select(ranks), strict=True))
        out = []
        for v, k, a, b in spots:
            t, prev, nxt = v - k, at[a], at[b]
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, as numpy's own
                diff = nxt - prev
                out.append(float(nxt - diff * (1 - t) if t >= 0.5 else prev + diff * t))
        return out

    def median(self) -> float:
        """`np.median(values)`: the middle value, or the mean of the two middle ones."""
        half = self.n // 2
        return self.select([half])[0] if self.n % 2 else float(np.mean(self.select([half - 1, half])))


def _finite(part: pd.DataFrame, source: str) -> np.ndarray:
    return Column(part[source]).finite()


def _encoded(part: pd.DataFrame, source: str, enc: Encoder) -> np.ndarray:
    x = enc.column(part[source])
    return x[~np.isnan(x)]


def _counts(part: pd.DataFrame, source: str) -> pd.Series:
    return Column(part[source]).counts()


class SlicedColumn(Column):
    """`Column`'s figures over the slices (one training column)."""

    def __init__(self, slices: Slices, source: str) -> None:
        self.slices, self.source = slices, source

    def counts(self) -> pd.Series:
        found = [c for c in self.slices.gather(_counts, self.source) if len(c)]
        return pd.concat(found).groupby(level=0, sort=False).sum() if found else pd.Series(dtype="int64")

    def finite_quantiles(self, qs: list[float]) -> list[float] | None:
        ranked = Ranked(self.slices, functools.partial(_finite, source=self.source))
        return ranked.quantiles(qs) if ranked.n else None

    def encoded_median(self, enc: Encoder) -> float | None:
        ranked = Ranked(self.slices, functools.partial(_encoded, source=self.source, enc=enc))
        return ranked.median() if ranked.n - ranked.ninf - ranked.pinf else None


def _encode(part: pd.DataFrame, pipeline: FeaturePipeline) -> np.ndarray:
    return pipeline.transform_frame(part)


def featurize(dask: Any, features: DictConfig, train: pd.DataFrame, n: int) -> tuple[FeaturePipeline, np.ndarray]:
    """Fit the feature state on `train` cut into `n` slices on the cluster of `dask`; the
    encoded train window."""
    slices = Slices(dask, train[list(dict.fromkeys(f.source for f in features.columns.values()))], n)
    # Each feature's reductions are rounds of small tasks: threads keep many features' rounds
    # in flight at once, so the stage waits about one feature's rounds, not the sum.
    with ThreadPoolExecutor(THREADS) as pool:
        pipeline = fit_pipeline(features, train, lambda source: SlicedColumn(slices, source), pool.map)
    return pipeline, np.concatenate(stream(dask, _encode, slices.parts, pipeline, total=len(slices.parts)))


def encode(dask: Any, pipeline: FeaturePipeline, frame: pd.DataFrame, n: int) -> np.ndarray:
    """`pipeline.transform_frame(frame)`, slice by slice on the cluster of `dask` (sent as
    the workers take them)."""
    frame = pipeline.inputs(frame)
    rows = cuts(len(frame), n)
    return np.concatenate(stream(dask, _encode, (frame.iloc[a:b] for a, b in rows), pipeline, total=len(rows)))
