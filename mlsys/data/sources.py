"""Upstream sources declared in `data.sources`: locate, fingerprint, read, parse times."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mlsys.errors import ConfigError
from mlsys.io import file_sha256, require


def source_path(name: str, src: DictConfig, root: Path) -> Path:
    """The file behind a source; package resources are found without importing the package."""
    if src.kind == "package":
        spec = importlib.util.find_spec(src.package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"data.sources.{name}.package: {src.package!r} is not an installed package")
        return Path(next(iter(spec.submodule_search_locations))) / src.path
    path = Path(src.path)
    return path if path.is_absolute() else root / path


def fingerprint(name: str, src: DictConfig, root: Path) -> dict[str, object]:
    """What identifies this upstream version: content hash and size (+ package version)."""
    path = require(source_path(name, src, root), f"data.sources.{name}.path")
    out: dict[str, object] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    if src.kind == "package":
        out["origin"] = f"{src.package}=={importlib.metadata.version(src.package)}:{src.path}"
    else:
        out["origin"] = src.path
    return out


def read_source(name: str, src: DictConfig, root: Path) -> pd.DataFrame:
    """Read a source as it is upstream (no parsing: the snapshot keeps raw values)."""
    path = require(source_path(name, src, root), f"data.sources.{name}.path")
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes or src.kind == "parquet":
        return pd.read_parquet(path)
    if ".csv" in suffixes or src.kind == "csv":
        return pd.read_csv(path)
    raise ConfigError(f"data.sources.{name}.path: cannot tell the format of {path} (expected .csv or .parquet)")


def parse_times(frame: pd.DataFrame, src: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse declared time columns to UTC; return the frame and failure cases for
    values that were present but unparseable (so they are quarantined, not nulled)."""
    failures = []
    frame = frame.copy()
    for col, spec in src.time_columns.items():
        if col not in frame.columns:
            continue  # the contract reports the missing column
        raw = frame[col]
        if isinstance(raw.dtype, pd.DatetimeTZDtype):
            parsed = raw.dt.tz_convert("UTC")
        else:
            fmt = None if spec.format == "infer" else spec.format
            parsed = pd.to_datetime(raw, format=fmt, errors="coerce", utc=spec.tz == "UTC")
            if spec.tz != "UTC":
                parsed = parsed.dt.tz_localize(spec.tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
        frame[col] = parsed.astype("datetime64[us, UTC]")
        bad = raw.notna() & parsed.isna()
        if bad.any():
            failures.append(
                pd.DataFrame(
                    {
                        "schema_context": "Column",
                        "column": col,
                        "check": f"parse_timestamp(format={spec.format!r}, tz={spec.tz!r})",
                        "failure_case": raw[bad].astype(str).to_numpy(),
                        "index": frame.index[bad].to_numpy(),
                    }
                )
            )
    return frame, (pd.concat(failures, ignore_index=True) if failures else pd.DataFrame())
