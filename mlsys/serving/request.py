"""The serving form of the contract: what a caller sends, as a pydantic model generated from
the contracts (per-request Pandera would cost milliseconds; Pandera checks the logged
requests in batches instead, against the same serving table).

A request carries what the upstream system knows before the event: the primary table's
columns that are not known only after the outcome. Columns that come from other tables
(as-of joins, lookups, aggregates) are looked up in the online feature table; a request may
also carry them, and then its values are used, held to the bounds of the table they come
from (and of `contract.dataset`, where it declares them).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Annotated, Any, Literal

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    WithJsonSchema,
    create_model,
    model_validator,
)

from mlsys.config.schema import ColumnContract, TimeColumn
from mlsys.contracts import whole_value_pattern
from mlsys.data.columns import NUMERIC_DTYPES
from mlsys.data.sources import reads_as_csv

# Strict: "529" and true are not numbers; an int is a float, not the other way round.
TYPES: dict[str, Any] = {
    "int64": Annotated[int, Strict()],
    "Int64": Annotated[int, Strict()],
    "float64": Annotated[float, Strict()],
    "str": Annotated[str, Strict()],
    "bool": Annotated[bool, Strict()],
}
NUMERIC = TYPES["float64"]


def request_columns(cfg: DictConfig) -> list[str]:
    """The primary table's contract columns a caller knows before the outcome (derived
    columns are computed from them, by the server as by the validate stage)."""
    data = cfg.data
    table = cfg.contract.tables[data.primary]
    late = set(data.sources[data.primary].after_outcome) | {data.label.column} | set(data.derived)
    return [c for c in table.columns if c not in late]


def lookup_columns(dataset_columns: list[str], cfg: DictConfig) -> list[str]:
    """Built-dataset columns that come from other tables (the joins' and the aggregates'): the
    online feature table's. A column upstream added to a table (no contract is strict) is not
    one: it is no feature, and no request may carry it."""
    from mlsys.data.checks import joined_columns

    looked = set(joined_columns(cfg.data)) | set(cfg.data.aggregates)
    return [c for c in dataset_columns if c in looked]


def lookup_specs(cfg: DictConfig) -> dict[str, tuple[str, DictConfig]]:
    """Columns a request may carry instead of having them looked up -> (kind, contract):
    joined columns with the spec of their source table's column, aggregates (numeric), each
    overridden by `contract.dataset`'s spec where it declares one. Always nullable."""
    data, contract = cfg.data, cfg.contract
    out: dict[str, tuple[str, DictConfig | None]] = {}
    for join in [*data.asof_joins, *data.lookup_joins]:
        table = contract.tables[join.source].columns
        for col in join.columns:
            spec = table.get(col)
            if spec is None:
                kind = "any"  # not in its table's contract: a number or a text, unbounded
            else:
                kind = "numeric" if str(spec.dtype or "").startswith(NUMERIC_DTYPES) else "categorical"
            out[join.prefix + col] = (kind, spec)
    for name in data.aggregates:
        out[name] = ("numeric", None)
    declared = contract.dataset.columns if contract.dataset is not None else {}
    specs = {}
    for name, (kind, spec) in out.items():
        spec = declared.get(name, spec)
        plain = OmegaConf.structured(ColumnContract) if spec is None else spec.copy()
        plain.dtype, plain.nullable, plain.required, plain.unique, plain.max_missing = None, True, False, False, None
        specs[name] = (kind, plain)
    return specs


def serving_table(cfg: DictConfig) -> DictConfig:
    """The serving contract: the primary table's minus what is known only after the outcome,
    plus the looked-up columns a request may carry; no uniqueness or row-count bounds (the
    same entity may well be asked about twice)."""
    table = cfg.contract.tables[cfg.data.primary].copy()
    columns = {c: table.columns[c] for c in request_columns(cfg)}
    columns.update({name: spec for name, (_, spec) in lookup_specs(cfg).items()})
    table.columns, table.unique, table.min_rows, table.max_rows = columns, [], None, None
    return table


def _field(spec: DictConfig, kind: str | None = None, source: tuple[DictConfig, str] | None = None) -> tuple[Any, Any]:
    """(annotation, field) of one contract column: type, bounds, pattern, allowed values;
    required unless the contract lets it be null. `source`: the source the column comes from
    and its name there: a time is text its `time_columns` entry reads; a text a CSV would
    read as missing (`NA`) is missing here too."""
    time = source[0].time_columns.get(source[1]) if source is not None else None
    dtype = str(spec.dtype or "")
    if dtype.startswith("datetime64"):
        time = time if time is not None else OmegaConf.structured(TimeColumn)
        text = {"type": "string", **({"format": "date-time"} if time.format == "ISO8601" else {})}
        reader = PlainValidator(_time_reader(time.format, time.tz))
        annotation: Any = Annotated[dt.datetime, reader, WithJsonSchema(text)]
    elif kind == "numeric":
        annotation = NUMERIC
    elif kind == "any":
        annotation = NUMERIC | TYPES["str"]
    else:
        annotation = _typed(dtype)
    text = annotation is TYPES["str"]
    if spec.isin is not None:
        annotation = Literal[tuple(spec.isin)]  # type: ignore[valid-type]
        text = all(isinstance(v, str) for v in spec.isin)
    bounds = {"ge": spec.min, "le": spec.max}
    if annotation is TYPES["str"] and spec.regex is not None:  # the whole value, as the batch contract checks it
        annotation = Annotated[annotation, AfterValidator(_full_match(spec.regex))]
        bounds["json_schema_extra"] = {"pattern": whole_value_pattern(spec.regex)}
    info = Field(default=None if spec.nullable else ..., **{k: v for k, v in bounds.items() if v is not None})
    annotation = annotation | None if spec.nullable else annotation
    if text and source is not None and reads_as_csv(source[0]):
        annotation = Annotated[annotation, BeforeValidator(_missing_in_csv(spec.nullable))]
    return annotation, info


def _missing_in_csv(nullable: bool) -> Any:
    """`NA`, `null`, `N/A`, ...: what pandas' CSV reader takes for missing, as the batch path
    reads the source (missing where the column may be; refused where it may not)."""
    from pandas._libs.parsers import STR_NA_VALUES  # read_csv's own list

    def check(value: Any) -> Any:
        if type(value) is not str or value not in STR_NA_VALUES:
            return value
        if nullable:
            return None
        raise ValueError(f"{value!r} is missing as the source's CSV reads it, and this column may not be missing")

    return check


def _typed(dtype: str) -> Any:
    """The strict JSON type of a declared (canonical) dtype: any width of integer an int, of
    float a float; no dtype, text."""
    if not dtype:
        return TYPES["str"]
    declared = pd.api.types.pandas_dtype(dtype)
    for test, name in ((pd.api.types.is_bool_dtype, "bool"), (pd.api.types.is_integer_dtype, "int64")):
        if test(declared):
            return TYPES[name]
    return TYPES["float64"] if pd.api.types.is_float_dtype(declared) else TYPES["str"]


def _full_match(pattern: str) -> Any:
    whole = re.compile(pattern).fullmatch

    def check(value: str) -> str:
        if whole(value) is None:
            raise ValueError(f"does not match the contract's pattern {pattern!r} as a whole")
        return value

    return check


# The ISO 8601 text every reader takes alike: `datetime.fromisoformat` reads it as pandas does,
# ~3 µs with an offset or in UTC, ~35 µs for a local time elsewhere (a one-row `parse_times`,
# where any other text goes, ~1 ms); each text once: the reader remembers it.
_PLAIN_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?:Z|[+-]\d{2}:\d{2})?")


def _time_reader(fmt: str, tz: str) -> Any:
    """Text -> the UTC instant `parse_times` makes of it in a batch (`fmt`; no offset: local
    time in `tz`, by `localize`'s rule); not a time there: refused. Plain ISO 8601 text is
    also taken where the source writes another format (what JSON callers send, and what
    `request_body` writes). Remembered: requests share times."""
    from mlsys.data.sources import parse_times

    spec = OmegaConf.create({"time_columns": {"t": {"format": fmt, "tz": tz}}})

    def read(value: Any) -> dt.datetime:
        if type(value) is not str:
            raise ValueError("a time is text")
        out = parsed(value)
        if isinstance(out, str):  # refusals are remembered too: a caller repeating one pays once
            raise ValueError(out)
        return out

    @functools.lru_cache(maxsize=1 << 14)
    def parsed(value: str) -> dt.datetime | str:
        plain = _PLAIN_ISO.fullmatch(value) is not None
        refused = f"not a time as the source writes it (format {fmt!r}, zone {tz!r}) nor ISO 8601"
        try:
            if fmt != "ISO8601" or not plain:
                frame, failures, _ = parse_times(pd.DataFrame({"t": [value]}, dtype="str"), spec)
                if not len(failures):
                    return frame["t"].iloc[0].to_pydatetime()
                if not plain:
                    return refused
            instant = dt.datetime.fromisoformat(value)
            if instant.tzinfo is None:
                local = pd.Timestamp(instant).tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
                return local.tz_convert("UTC").to_pydatetime()
            return instant.astimezone(dt.UTC)
        except (ValueError, OverflowError, NotImplementedError) as exc:  # 30 February; year 9999 in a zone
            return f"{refused}: {exc}"

    return read


def _event_time_check(event_time: DictConfig) -> Any:
    """A model validator: the event time's local parts form a real date and time (30 February
    is refused with a 422, as the batch path quarantines it)."""
    from mlsys.data.build import naive_time

    parts = dict(event_time.parts) if not event_time.column else {}
    columns = {unit: col for unit, col in parts.items() if not isinstance(col, int)}

    def check(self: BaseModel) -> BaseModel:
        values = {unit: getattr(self, col, None) for unit, col in columns.items()}
        if values and None not in values.values():
            try:
                naive_time({**parts, **{unit: int(v) for unit, v in values.items()}})
            except ValueError as exc:
                raise ValueError(f"{', '.join(columns.values())} do not form a date and time: {exc}") from exc
        return self

    return model_validator(mode="after")(check)


def request_model(cfg: DictConfig) -> type[BaseModel]:
    """The request model: contract columns (required unless nullable) + optional lookups
    (bounded like their tables). Unknown fields, NaN, infinities and non-strict types are
    refused; an impossible event time too."""
    table = serving_table(cfg)
    kinds = {name: kind for name, (kind, _) in lookup_specs(cfg).items()}
    sources = _sources(cfg)
    fields: dict[str, Any] = {c: _field(table.columns[c], kinds.get(c), sources.get(c)) for c in table.columns}
    config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no length of its own: the body bound holds
    validators = {"event_time": _event_time_check(cfg.data.event_time)}
    return create_model("Request", __config__=config, __validators__=validators, **fields)


def _sources(cfg: DictConfig) -> dict[str, tuple[DictConfig, str]]:
    """Request field -> (the source it comes from, its name there): the primary table's
    columns, joined ones by their prefix."""
    from mlsys.data.checks import joined_columns

    data = cfg.data
    out = {c: (data.primary, c) for c in cfg.contract.tables[data.primary].columns} | joined_columns(data)
    return {name: (data.sources[source], column) for name, (source, column) in out.items()}


def request_body(row: pd.Series, columns: list[str]) -> dict[str, Any]:
    """A JSON body a caller could POST: one built row's `columns` (missing values left out)."""
    out = {}
    for name in columns:
        v = row.get(name)
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            continue
        out[name] = v.isoformat() if isinstance(v, pd.Timestamp) else (v.item() if hasattr(v, "item") else v)
    return out
