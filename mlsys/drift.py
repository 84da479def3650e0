"""Distribution shift of the model's features against a stored reference profile.

A profile holds, per feature, bins fitted on the reference sample (deciles for numeric
features, with their min, max and mean; one per code for categorical ones, plus one for
unseen codes, "other") and the share of rows in each, with a last bin for missing values: a
column going null is a shift too. It is plain JSON, saved with a model (the train window's
features, and the validation window's answers as `answer.<column>`), so later data (a new
period, logged requests) is compared with it without the reference rows.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

EPS = 1e-4  # floor on a bin's share: an empty bin gives a large, finite PSI
Profile = dict[str, dict[str, Any]]


def _counts(values: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    missing = np.isnan(values)
    present = values[~missing]
    if spec["kind"] == "categorical":  # one bin per reference code, then one for unseen codes
        codes = np.asarray(spec["codes"], dtype=np.float64)
        idx = np.searchsorted(codes, present)
        known = (idx < len(codes)) & (codes[np.minimum(idx, max(len(codes) - 1, 0))] == present)
        counts = np.bincount(np.where(known, idx, len(codes)), minlength=len(codes) + 1)
    else:
        edges = np.asarray(spec["edges"], dtype=np.float64)
        counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return np.append(counts, missing.sum())


def profile(matrix: np.ndarray, names: list[str], categorical: list[int], bins: int = 10) -> Profile:
    """The reference profile of an (n, k) feature matrix."""
    out: Profile = {}
    cats = set(categorical)
    for j, name in enumerate(names):
        col = matrix[:, j]
        present = col[~np.isnan(col)]
        if j in cats:
            spec: dict[str, Any] = {"kind": "categorical", "codes": np.unique(present).tolist()}
        else:
            q = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]) if len(present) else []
            spec = {"kind": "numeric", "edges": np.unique(q).tolist()}
            some = len(present) > 0
            spec.update(
                {
                    k: float(f(present)) if some else None
                    for k, f in (("min", np.min), ("max", np.max), ("mean", np.mean))
                }
            )
        counts = _counts(col, spec)
        out[name] = {**spec, "shares": (counts / max(len(col), 1)).tolist(), "rows": len(col)}
    return out


def shares(spec: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """The share of `values` in each of the profile entry's bins (the last: missing)."""
    return _counts(np.asarray(values, dtype=np.float64), spec) / max(len(values), 1)


def distances(spec: dict[str, Any], values: np.ndarray) -> dict[str, float]:
    """PSI, Jensen-Shannon distance (base 2: 0 same, 1 disjoint), L-infinity (the largest
    change of one bin's share) and the change of the missing share of `values` against one
    profile entry."""
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(spec["shares"]), shares(spec, values)
    pf, qf = np.maximum(p, EPS), np.maximum(q, EPS)
    return {
        "psi": float(np.sum((qf - pf) * np.log(qf / pf))),
        "js": float(jensenshannon(p, q, base=2)) if q.sum() else 0.0,
        "linf": float(np.max(np.abs(q - p))),
        "missing_change": float(q[-1] - p[-1]),
    }


def beyond_noise(spec: dict[str, Any], values: np.ndarray) -> dict[str, float]:
    """`distances` less what sampling alone gives: n values drawn from the reference itself
    have a PSI of about (k-1)/n and a squared Jensen-Shannon distance of about
    (k-1)/(8 n ln 2), k the occupied bins (the chi-square approximation, checked by
    simulation). A day's 400 records over 100 airports are not drift."""
    d = distances(spec, values)
    k, n = max(int(np.count_nonzero(spec["shares"])) - 1, 0), max(len(values), 1)
    d["psi"] = max(0.0, d["psi"] - k / n)
    d["js"] = float(np.sqrt(max(0.0, d["js"] ** 2 - k / (8 * n * np.log(2)))))
    return d


def psi(reference: Profile, matrix: np.ndarray, names: list[str]) -> dict[str, float]:
    """Feature -> population stability index of `matrix` against the profile (0: same)."""
    return {name: distances(reference[name], matrix[:, j])["psi"] for j, name in enumerate(names)}


def missing_change(reference: Profile, matrix: np.ndarray, names: list[str]) -> dict[str, float]:
    """Feature -> change in the share of missing values (current minus reference)."""
    return {name: float(np.isnan(matrix[:, j]).mean() - reference[name]["shares"][-1]) for j, name in enumerate(names)}


def expected(name: str, patterns: Any) -> bool:
    """Whether a feature is declared to drift (`expected_drift`: fnmatch patterns, e.g. `wx_*`)."""
    return any(fnmatch.fnmatch(name, p) for p in patterns)
