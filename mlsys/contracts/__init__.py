"""Contracts: typed YAML (conf/contract/) compiled to Pandera, validated lazily.

`validate_table` returns every failure at once, splits failing rows into a quarantine
frame with their reasons (policy `quarantine`), and reconciles rows in = passed +
quarantined. Frame-level failures (missing column, wrong dtype, row count, missing
fraction) always fail, whatever the policy.

Columns marked `pii: true` are personal data: their values never reach a report (`PII`
stands in for them); the quarantine files are data, not reports, and keep them.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from omegaconf import DictConfig, OmegaConf
from pandera.extensions import register_check_method

from mlsys.errors import ConfigError, MlsysError

REASONS = "_reasons"
# What a personal value (`pii: true`) becomes in a report, the request log or an example. A
# fixed marker rather than a hash: it leaks nothing (a hash of a short, guessable value, such
# as a registration number, is reversed by trying them all) and it cannot pass for data.
PII = "<pii>"
# Frame-level failure cases that state a fact of the schema, not a value of the data.
SCHEMA_FACTS = ("dtype(", "column_in_dataframe", "column_in_schema")


@register_check_method(statistics=["max_fraction"], supported_types=[pd.Series])
def max_missing(series: pd.Series, *, max_fraction: float) -> bool:
    """Fraction of nulls in the column is at most `max_fraction` (frame-level)."""
    return missing_within(int(series.isna().sum()), len(series), max_fraction)


@register_check_method(statistics=["pattern"], supported_types=[pd.Series])
def str_fullmatch(series: pd.Series, *, pattern: str) -> pd.Series:
    """The whole value matches `pattern` (Python's `re.fullmatch`, as the server's request
    model checks it: no `^`/`$` needed, and a trailing newline is not let through)."""
    return series.str.fullmatch(_grouped(pattern), na=False)


@functools.cache
def _grouped(pattern: str) -> re.Pattern[str]:
    """`pattern` in a group, its leading global flags (`(?i)`) as flags: pandas rewrites a
    pattern that starts with `^` and ends with `$` into a search (it takes "A1" for `^A|1$`),
    and sends inline flags RE2 lacks (`(?x)`) to pyarrow, which refuses them; compiled flags
    other than IGNORECASE make it use Python's `re`."""
    lead, flags = _GLOBAL_FLAGS.match(pattern).group(), re.compile(pattern).flags
    close = "\n)" if flags & re.VERBOSE else ")"  # verbose: a trailing `# comment` must not swallow it
    return re.compile(f"(?:{pattern[len(lead) :]}{close}", flags)


def whole_value_pattern(pattern: str) -> str:
    """`pattern` as a whole-value JSON Schema pattern (an API's documentation of the rule)."""
    return f"^{_grouped(pattern).pattern}$"


_GLOBAL_FLAGS = re.compile(r"(?:\(\?[aiLmsux]+\))*")


@register_check_method(statistics=["min_rows", "max_rows"], supported_types=[pd.DataFrame])
def row_count(frame: pd.DataFrame, *, min_rows: int | None, max_rows: int | None) -> bool:
    """Row count within bounds (frame-level)."""
    return rows_within(len(frame), min_rows, max_rows)


def missing_within(nulls: int, rows: int, max_fraction: float) -> bool:
    """`nulls` of `rows` is at most `max_fraction` (no rows: no share to judge, a failure)."""
    return rows > 0 and nulls / rows <= max_fraction


def rows_within(rows: int, min_rows: int | None, max_rows: int | None) -> bool:
    return (min_rows is None or rows >= min_rows) and (max_rows is None or rows <= max_rows)


def missing_check(max_fraction: float) -> pa.Check:
    """The `max_missing` check of a column (whole-table: never run on a slice)."""
    return pa.Check.max_missing(max_fraction=max_fraction, ignore_na=False)


def rows_check(table: DictConfig) -> pa.Check | None:
    """The `min_rows` / `max_rows` check of a table, if it declares one (whole-table)."""
    if table.min_rows is None and table.max_rows is None:
        return None
    return pa.Check.row_count(min_rows=table.min_rows, max_rows=table.max_rows)


def custom_check(spec: DictConfig | dict, key: str) -> pa.Check:
    """`{_target_: pkg.fn, **kwargs}` as a Pandera check calling fn(data, **kwargs): the door
    for a check YAML cannot express, one Python function referenced from the contract."""
    from hydra.utils import get_method

    spec = dict(OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec)
    target = spec.pop("_target_", None)
    if not target:
        raise ConfigError(f"{key}._target_: required (the dotted path of a check function)")
    try:
        fn = get_method(target)
    except Exception as exc:  # Hydra wraps import and attribute errors alike
        raise ConfigError(f"{key}._target_: {target!r} cannot be imported as a function: {exc}") from exc
    name = f"{target.rsplit('.', 1)[-1]}({', '.join(f'{k}={v!r}' for k, v in spec.items())})"
    return pa.Check(functools.partial(fn, **spec), name=name)


def pii_columns(cfg: DictConfig) -> frozenset[str]:
    """Names of the personal columns (`pii: true`), as a request, the request log and the
    built dataset name them: the primary table's, `contract.dataset`'s, and each joined
    table's under its joined name (`prefix + column`, as `mlsys.serving.request.lookup_specs`
    names it). `cfg`: the whole config or a stage's part holding `contract` and `data`; given
    a `contract` alone (no joins known), every table's personal names, unprefixed."""
    if "contract" not in cfg:
        tables = list(cfg.tables.values()) + ([cfg.dataset] if cfg.get("dataset") is not None else [])
        return frozenset(c for t in tables for c, spec in t.columns.items() if spec.get("pii", False))
    contract, data = cfg.contract, cfg.data
    own = [contract.tables[data.primary]] + ([contract.dataset] if contract.get("dataset") is not None else [])
    out = {c for t in own for c, spec in t.columns.items() if spec.get("pii", False)}
    for join in [*data.asof_joins, *data.lookup_joins]:
        source = contract.tables[join.source].columns
        out.update(join.prefix + c for c in join.columns if c in source and source[c].get("pii", False))
    from mlsys.data.derive import reads

    for name, spec in data.get("derived", {}).items():  # computed from personal data: personal too
        if not out.isdisjoint(reads(spec)):
            out.add(name)
    return frozenset(out)


def mask(record: dict[str, Any], pii: frozenset[str] | set[str]) -> dict[str, Any]:
    """`record` with each personal field present replaced by `PII` (a new dict if any is; never in place)."""
    if not pii or pii.isdisjoint(record):
        return record
    return {k: PII if k in pii else v for k, v in record.items()}


def _masked_form(found: Any, declared: str | None) -> bool:
    """`found` is the nullable form of the declared numpy dtype (Int64 for int64: numbers read
    from text keep their gaps' rows apart until those are quarantined)."""
    numpy = getattr(found, "numpy_dtype", None)
    return numpy is not None and declared is not None and str(numpy) == str(declared) != str(found)


def check_column(column: DictConfig, key: str) -> None:
    """A canonical dtype (`float64`, not `float`: the server types a request by the name), and
    rules that fit it: bounds in order on a number or time, a pattern that compiles on text,
    allowed values of the column's kind, a missing share in [0, 1]."""
    kind = None
    if column.dtype is not None:
        try:
            canonical = str(pd.api.types.pandas_dtype(column.dtype))
        except TypeError as exc:
            raise ConfigError(f"{key}.dtype: {column.dtype!r} is not a dtype ({exc})") from exc
        if canonical != column.dtype:
            raise ConfigError(f"{key}.dtype: write {canonical!r}, the dtype {column.dtype!r} reads as")
        declared = pd.api.types.pandas_dtype(canonical)
        numeric = pd.api.types.is_numeric_dtype(declared) or pd.api.types.is_bool_dtype(declared)
        kind = "number" if numeric else "time" if canonical.startswith("datetime") else "text"
    if column.min is not None and column.max is not None and column.min > column.max:
        raise ConfigError(f"{key}: min {column.min} is above max {column.max}")
    if kind in ("text", "time") and (column.min is not None or column.max is not None):
        raise ConfigError(f"{key}: min/max bound numbers; this column is {column.dtype}")
    if column.regex is not None:
        if kind not in (None, "text"):
            raise ConfigError(f"{key}.regex: a pattern reads text; this column is {column.dtype}")
        try:
            _grouped(column.regex)  # what runs, not only what was written
        except re.error as exc:
            raise ConfigError(f"{key}.regex: {column.regex!r} is not a regular expression: {exc}") from exc
    if column.isin is not None and kind in ("text", "number"):
        odd = [v for v in column.isin if isinstance(v, str) != (kind == "text")]
        if odd:
            raise ConfigError(
                f"{key}.isin: {odd} are not {'text' if kind == 'text' else 'numbers'} like the column "
                f"({column.dtype}); quote text in YAML ('007', not 007, which YAML reads as 7)"
            )
    if column.max_missing is not None and not 0 <= column.max_missing <= 1:
        raise ConfigError(f"{key}.max_missing: {column.max_missing} is not a share in [0, 1]")


def check_table(table: DictConfig, key: str, known: set[str] | None = None) -> None:
    """Columns that make sense (`check_column`), a uniqueness key of `known` columns (default:
    the table's), a loss bound in [0, 1], and custom checks that import."""
    for i, spec in enumerate(table.checks):
        custom_check(spec, f"{key}.checks[{i}]")
    for col, column in table.columns.items():
        check_column(column, f"{key}.columns.{col}")
        for i, spec in enumerate(column.checks):
            custom_check(spec, f"{key}.columns.{col}.checks[{i}]")
    known = set(table.columns) if known is None else known
    if missing := [c for c in table.unique if c not in known]:
        raise ConfigError(f"{key}.unique: {missing} are not columns of this table: {sorted(known)}")
    if not 0 <= table.max_quarantine_fraction <= 1:
        raise ConfigError(f"{key}.max_quarantine_fraction: {table.max_quarantine_fraction} not in [0, 1]")


def compile_schema(name: str, table: DictConfig, part: str = "all", spec: dict | None = None) -> pa.DataFrameSchema:
    """The Pandera schema a `contract.tables.<name>` entry declares: all of it, or the part a
    slice of rows can check (`rows`: types, bounds, sets, patterns, custom row checks), or its
    uniqueness rules alone (`unique`: `mlsys.contracts.whole` runs them on the rows whose keys
    repeat). Compiled once per contract text (`spec`: the entry as a container, when the
    caller has it)."""
    if spec is None:
        spec = OmegaConf.to_container(table, resolve=True)
    key = (name, part, json.dumps(spec, default=str))
    if (schema := _SCHEMAS.get(key)) is None:
        schema = _SCHEMAS[key] = _compile(name, table, part)
    return schema


_SCHEMAS: dict[tuple[str, str, str], pa.DataFrameSchema] = {}


def _compile(name: str, table: DictConfig, part: str) -> pa.DataFrameSchema:
    if part == "unique":
        return _unique_schema(name, table)
    rows = part == "rows"
    columns = {}
    for col, spec in table.columns.items():
        checks = []
        if spec.min is not None and spec.max is not None:
            checks.append(pa.Check.in_range(spec.min, spec.max))
        elif str(spec.dtype).startswith(("float", "Float")):  # an infinity is no measurement (nor JSON)
            lo, hi = -np.inf if spec.min is None else spec.min, np.inf if spec.max is None else spec.max
            checks.append(pa.Check.in_range(lo, hi, include_min=spec.min is not None, include_max=spec.max is not None))
        elif spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        elif spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        if spec.isin is not None:
            checks.append(pa.Check.isin(list(spec.isin)))
        if spec.regex is not None:
            checks.append(pa.Check.str_fullmatch(pattern=spec.regex))
        if spec.max_missing is not None and not rows:
            checks.append(missing_check(spec.max_missing))
        checks.extend(
            custom_check(c, f"contract.tables.{name}.columns.{col}.checks[{i}]") for i, c in enumerate(spec.checks)
        )
        try:
            columns[col] = pa.Column(
                spec.dtype,
                checks=checks,
                nullable=spec.nullable,
                unique=spec.unique and not rows,
                required=spec.required,
                report_duplicates="exclude_first",
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"contract.tables.{name}.columns.{col}: {exc}") from exc
    frame_checks = [custom_check(c, f"contract.tables.{name}.checks[{i}]") for i, c in enumerate(table.checks)]
    if (count := rows_check(table)) is not None and not rows:
        frame_checks.append(count)
    return pa.DataFrameSchema(
        columns,
        checks=frame_checks,
        unique=None if rows else list(table.unique) or None,
        strict=table.strict,
        report_duplicates="exclude_first",
        name=name,
    )


def _unique_schema(name: str, table: DictConfig) -> pa.DataFrameSchema:
    """The uniqueness rules alone (`unique: true` columns, the table's `unique` key)."""
    columns = {
        col: pa.Column(nullable=True, unique=True, required=False, report_duplicates="exclude_first")
        for col, spec in table.columns.items()
        if spec.unique
    }
    return pa.DataFrameSchema(columns, unique=list(table.unique) or None, report_duplicates="exclude_first", name=name)


def without_column(table: DictConfig, column: str) -> DictConfig:
    """The same contract without `column` and without row-count bounds: the serving form
    (e.g. rows that have no label yet)."""
    out = table.copy()
    out.columns = {k: v for k, v in table.columns.items() if k != column}
    out.min_rows = out.max_rows = None
    return out


def python_schema(name: str, table: DictConfig) -> pa.DataFrameSchema | None:
    """The escape hatch: `python_schema: {_target_: pkg.module.fn}` returning a schema."""
    if table.python_schema is None:
        return None
    from hydra.utils import instantiate

    try:
        schema = instantiate(table.python_schema)
    except Exception as exc:
        raise ConfigError(f"contract.tables.{name}.python_schema: {exc}") from exc
    if not isinstance(schema, pa.DataFrameSchema):
        raise ConfigError(f"contract.tables.{name}.python_schema: must return a pandera DataFrameSchema")
    return schema


@dataclass
class ValidationResult:
    passed: pd.DataFrame
    quarantined: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


def row_cases(name: str, table: DictConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The failure cases of the row checks on a slice of a table, indexed by the slice's own
    index: `validate_table(..., sliced=True)` adds the rest (whole-table checks, `user_cases`)."""
    return schema_cases(compile_schema(name, table, "rows"), frame)


def user_cases(name: str, table: DictConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The failure cases of the table's `python_schema`, always on the whole table: a user's
    schema may check across rows (uniqueness, a share, a total), so it never runs per slice."""
    extra = python_schema(name, table)
    return no_cases() if extra is None else schema_cases(extra, frame, ours=False)


def schema_cases(schema: pa.DataFrameSchema, frame: pd.DataFrame, ours: bool = True) -> pd.DataFrame:
    """Pandera's failure cases of `frame`; a schema `ours` (compiled here: it checks, never
    coerces) reads the frame in place, a user's `python_schema` a copy it may change."""
    try:
        schema.validate(frame, lazy=True, inplace=ours)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return no_cases()


def join_cases(cases: list[pd.DataFrame]) -> pd.DataFrame:
    """Failure-case frames as one (the empty ones left out); none: `no_cases()`."""
    found = [c for c in cases if len(c)]
    return pd.concat(found, ignore_index=True) if found else no_cases()


def no_cases() -> pd.DataFrame:
    """No failure case, in the shape of Pandera's."""
    return pd.DataFrame(columns=["schema_context", "column", "check", "failure_case", "index"])


def validate_table(
    name: str,
    table: DictConfig,
    frame: pd.DataFrame,
    extra_failures: pd.DataFrame | None = None,
    raw: pd.DataFrame | None = None,
    sliced: bool = False,
) -> ValidationResult:
    """Validate `frame` lazily; split passed / quarantined rows; build the report.

    `extra_failures` are row failures found before Pandera (e.g. unparseable timestamps),
    in the same shape as Pandera's failure cases; quarantined rows are taken from `raw`
    (the frame as read, before parsing) when given, so nothing is lost. `sliced`: every
    check ran elsewhere (the row checks on slices of `frame`, `row_cases`; the whole-table
    ones from the slices' counts, `mlsys.contracts.whole`; `user_cases` on the whole table),
    their cases in `extra_failures`.
    """
    frame = frame.reset_index(drop=True)
    raw = frame if raw is None else raw.reset_index(drop=True)
    spec = OmegaConf.to_container(table, resolve=True)
    cases = (
        []
        if sliced
        else [schema_cases(compile_schema(name, table, "all", spec), frame), user_cases(name, table, frame)]
    )
    if extra_failures is not None and len(extra_failures):
        cases.append(extra_failures)
    fc = join_cases(cases)
    fc = fc.assign(column=fc["column"].astype(object).where(fc["column"].notna(), "<frame>"))
    # A column without its declared dtype fails the frame once (Pandera lists every row), unless
    # only rows failing another check make it so (a cut last line's NaN turns int64 to float64).
    typed = fc["check"].astype(str).str.startswith("dtype(") & fc["column"].isin(list(table.columns))
    other = set(fc.loc[~typed & fc["index"].notna(), "index"])
    explained = {c for c, rows in fc.loc[typed].groupby("column")["index"] if rows.notna().all() and set(rows) <= other}
    lost = typed & fc["column"].isin(explained)  # cast back below; its rows are quarantined for their own reasons
    fc, typed = fc[~lost], typed[~lost]
    is_row = fc["index"].notna() & ~typed
    frame_fc, row_fc = fc[~is_row & ~typed], fc[is_row]
    # Once each: checked slice by slice, a frame-level failure (a missing column) is found per slice.
    frame_fc = frame_fc[~frame_fc[["column", "check", "failure_case"]].astype(str).duplicated()]
    frame_fc = frame_fc.iloc[np.lexsort((frame_fc["check"].astype(str), frame_fc["column"].astype(str)))]

    pii = {str(c) for c, spec in table.columns.items() if spec.get("pii", False)}
    frame_failures = [
        {
            "column": str(col),
            "check": f"dtype({table.columns[col].dtype})",
            "failure_case": f"declared {table.columns[col].dtype}, found {frame[col].dtype}",
        }
        for col in dict.fromkeys(fc.loc[typed, "column"])
    ]
    frame_failures += [
        {
            "column": str(r.column),
            "check": str(r.check),
            "failure_case": _plain(r.failure_case)
            if r.column not in pii or str(r.check).startswith(SCHEMA_FACTS)
            else PII,
        }
        for r in frame_fc.itertuples()
    ]
    row_failures = []
    for (col, check), grp in row_fc.groupby(["column", "check"], sort=True):
        examples = grp.drop_duplicates("failure_case").head(table.examples)
        row_failures.append(
            {
                "column": str(col),
                "check": str(check),
                "rows": int(grp["index"].nunique()),
                "examples": [
                    {"row": int(i), "value": PII if col in pii else _plain(v)}
                    for i, v in zip(examples["index"], examples["failure_case"], strict=True)
                ],
            }
        )

    idx = row_fc["index"].astype(np.int64).to_numpy()
    reasons = (
        row_fc.assign(index=idx, reason=row_fc["column"].astype(str) + ": " + row_fc["check"].astype(str))
        .groupby("index")["reason"]
        .agg(lambda r: "; ".join(sorted(set(r))))
    )
    bad = np.zeros(len(frame), dtype=bool)
    bad[reasons.index.to_numpy()] = True
    quarantined = raw[bad].copy()  # data, not a report: kept raw (pii too), like data/validated/
    quarantined[REASONS] = reasons.reindex(quarantined.index).to_numpy()
    quarantined.insert(0, "_row", quarantined.index.to_numpy())
    passed = frame[~bad].reset_index(drop=True)
    nullable = {c for c, spec in table.columns.items() if c in passed and _masked_form(passed[c].dtype, spec.dtype)}
    for col in explained | nullable:  # its dtype lost to rows now quarantined (a blank int): the rest get it back
        declared = table.columns[col].dtype
        try:
            passed[col] = passed[col].astype(declared)
        except (TypeError, ValueError) as exc:  # not only to them after all: the column fails
            found = f"declared {declared}, found {frame[col].dtype} ({exc})"
            frame_failures.append({"column": str(col), "check": f"dtype({declared})", "failure_case": found})
    if len(passed) + len(quarantined) != len(frame):  # explicit: it must hold under `python -O` too
        raise MlsysError(
            f"contract {name}: {len(passed)} passed + {len(quarantined)} quarantined != {len(frame)} rows in"
        )

    share = len(quarantined) / len(frame) if len(frame) else 0.0
    if share > table.max_quarantine_fraction:
        frame_failures.append(
            {
                "column": "<frame>",
                "check": f"max_quarantine_fraction({table.max_quarantine_fraction})",
                "failure_case": f"{len(quarantined):,} of {len(frame):,} rows ({share:.2%}) would be quarantined",
            }
        )
    if frame_failures:
        status = "failed"
    elif len(quarantined):
        status = "failed" if table.policy == "fail" else "quarantined"
    else:
        status = "passed"
    report = {
        "table": name,
        "policy": table.policy,
        "status": status,
        "rows_in": len(frame),
        "rows_passed": len(passed),
        "rows_quarantined": len(quarantined),
        "quarantine_fraction": share,
        "frame_failures": frame_failures,
        "row_failures": row_failures,
        "contract": spec,
    }
    return ValidationResult(passed=passed, quarantined=quarantined, report=report)


def _plain(value: Any) -> Any:
    """JSON-friendly scalar."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def summary(report: dict[str, Any]) -> str:
    """Human-readable lines for one table's report."""
    lines = [
        f"contract {report['table']}: {report['status']} - {report['rows_in']} rows in, "
        f"{report['rows_passed']} passed, {report['rows_quarantined']} quarantined "
        f"(policy {report['policy']})"
    ]
    for f in report["frame_failures"]:
        lines.append(f"  frame  {f['column']}: {f['check']} (got {f['failure_case']})")
    for f in report["row_failures"]:
        ex = ", ".join(repr(e["value"]) for e in f["examples"])
        lines.append(f"  rows   {f['column']}: {f['check']} x{f['rows']} (e.g. {ex})")
    return "\n".join(lines)
