"""Checks on `data`: sources, joins and aggregates, and what is known when.

A column a source lists under `after_outcome` is known only after the event's outcome, and
says when: at the event's time plus the minutes in a column (`after`, e.g. a departure is
seen `dep_delay` minutes after its schedule) plus a `lag` (an arrival is surely known a day
later). A point-in-time aggregate may read such a column only if the time it observes a row
at is no earlier than that: otherwise it would let the outcome in before it happened.
"""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from mlsys.config.checks import unknown_names
from mlsys.durations import check_duration, check_zone
from mlsys.errors import ConfigError


def after_outcome_columns(data: DictConfig) -> dict[str, str]:
    """Columns of the built dataset known only after the outcome -> why (every source,
    with the prefix its join gives it)."""
    from mlsys.data.derive import reads

    prefixes = {data.primary: [""]}
    for join in [*data.asof_joins, *data.lookup_joins]:
        prefixes.setdefault(join.source, []).append(join.prefix)
    out = {}
    for name, src in data.sources.items():
        for col in src.after_outcome:
            for prefix in prefixes.get(name, []):
                out[prefix + col] = f"data.sources.{name}.after_outcome lists {col!r}"
    out[data.label.column] = f"it is the label column (data.label.column={data.label.column!r})"
    out["label"] = "it is the label"
    for name, spec in data.derived.items():  # derived from a late column: late too
        late = [c for c in reads(spec) if c in out]
        if late:
            out[name] = f"data.derived.{name} reads {late[0]!r}, which {out[late[0]]}"
    return out


def dtype_kind(dtype: str | None) -> str | None:
    """numeric | datetime | text for a declared dtype; None when not declared."""
    if not dtype:
        return None
    text = str(dtype)
    from mlsys.data.columns import NUMERIC_DTYPES

    if text.startswith((*NUMERIC_DTYPES, "bool")):
        return "numeric"
    return "datetime" if text.startswith("datetime64") else "text"


def joined_columns(data: DictConfig) -> dict[str, tuple[str, str]]:
    """Each joined column's name in the built dataset -> (its source, its name there)."""
    joins = [*data.asof_joins, *data.lookup_joins]
    return {join.prefix + c: (join.source, c) for join in joins for c in join.columns}


def dataset_columns(data: DictConfig, contract: DictConfig) -> dict[str, str | None]:
    """Every column the built dataset will have that the config declares, with its kind
    (`dtype_kind`; None: declared without a dtype): the primary table's contract columns,
    derived columns, joined columns, aggregates, the times the build adds, and
    `contract.dataset`'s columns (whose dtype wins)."""
    from mlsys.data.columns import EVENT_LOCAL, EVENT_TIME, LABEL, PREDICTION_TIME

    tables = contract.tables
    out: dict[str, str | None] = {c: dtype_kind(s.dtype) for c, s in tables[data.primary].columns.items()}
    out.update({name: dtype_kind(spec.dtype) for name, spec in data.derived.items()})
    for join in [*data.asof_joins, *data.lookup_joins]:
        columns = tables[join.source].columns if join.source in tables else {}
        out.update({join.prefix + c: dtype_kind(columns[c].dtype) if c in columns else None for c in join.columns})
    out.update(dict.fromkeys(data.aggregates, "numeric"))
    out.update({EVENT_TIME: "datetime", EVENT_LOCAL: "datetime", PREDICTION_TIME: "datetime", LABEL: "numeric"})
    if contract.dataset is not None:
        out.update({c: dtype_kind(s.dtype) or out.get(c) for c, s in contract.dataset.columns.items()})
    return out


def check_columns(data: DictConfig, contract: DictConfig) -> None:
    """Derived columns, event-time parts and lookup keys read columns the primary table's
    contract declares (or derived ones), and the parts form a date."""
    from mlsys.data.columns import UNITS
    from mlsys.data.derive import check_derived

    declared = set(contract.tables[data.primary].columns) | set(data.sources[data.primary].time_columns)
    check_derived(data.derived, declared)
    known = declared | set(data.derived)
    spec = data.event_time
    if bool(spec.column) == bool(spec.parts):
        raise ConfigError("data.event_time: give either column (a timestamp column) or parts (date and time parts)")
    if spec.column and spec.column not in known:
        raise ConfigError(f"data.event_time.column: {unknown_names([spec.column], known)} is not a declared column")
    units = set(spec.parts)
    one_date = ({"month", "day"} <= units) != ("day_of_year" in units)
    if spec.parts and (units - set(UNITS) or "year" not in units or not one_date):
        raise ConfigError(
            f"data.event_time.parts: {sorted(units)}: expected year and either month + day or day_of_year, "
            f"then any of hour, minute, second (units: {list(UNITS)})"
        )
    for unit, col in spec.parts.items():
        if not isinstance(col, int) and col not in known:
            raise ConfigError(
                f"data.event_time.parts.{unit}: {unknown_names([col], known)} is not a declared column "
                "(nor an integer constant)"
            )
    joined = set(joined_columns(data))
    for what, names, among in (
        ("data.key", list(data.key), known),
        ("data.label.column", [data.label.column], known | joined),
    ):
        if missing := [c for c in names if c not in among]:
            raise ConfigError(f"{what}: {unknown_names(missing, among)} is not a declared or joined column")
    for i, join in enumerate(data.lookup_joins):  # the key: a primary or derived column; the source's
        if join.key not in known:
            said = unknown_names([join.key], known)
            raise ConfigError(f"data.lookup_joins[{i}].key: {said} is not a declared column")
        right = contract.tables[join.source].columns if join.source in contract.tables else {}
        own = join.right_key or join.key
        if right and own not in right:
            raise ConfigError(
                f"data.lookup_joins[{i}].{'right_key' if join.right_key else 'key'}: {unknown_names([own], right)} "
                f"is not a column of {join.source!r} (set right_key when the names differ)"
            )


def known_after(data: DictConfig, column: str) -> tuple[str | None, pd.Timedelta] | None:
    """When an after-outcome primary column is known: (minutes column or None, lag) after
    the event; None if its source does not say (then no aggregate may read it)."""
    spec = data.sources[data.primary].after_outcome.get(column)
    if spec is None or (spec.after is None and spec.lag is None):
        return None
    return spec.after, check_duration(spec.lag or "0h", f"data.sources.{data.primary}.after_outcome.{column}.lag")


def _observed_late_enough(observed: tuple[str | None, pd.Timedelta], known: tuple[str | None, pd.Timedelta]) -> bool:
    """A row observed at event + `observed` is seen no earlier than its column is `known`:
    the same minutes column (or none on both sides) and at least the same lag."""
    return observed[0] == known[0] and observed[1] >= known[1]


def _describe(when: tuple[str | None, pd.Timedelta]) -> str:
    column, lag = when
    minutes = int(lag.total_seconds() // 60)
    if minutes and minutes % 1440 == 0:
        text = f"{minutes // 1440}d"
    else:
        text = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"
    return " + ".join([f"{column} minutes"] * bool(column) + [text] * (not column or minutes > 0))


def check_data(data: DictConfig) -> None:
    check_zone(data.event_time.tz, "data.event_time.tz")
    for name, src in data.sources.items():
        for col, spec in src.time_columns.items():
            check_zone(spec.tz, f"data.sources.{name}.time_columns.{col}.tz")
    if data.primary not in data.sources:
        raise ConfigError(f"data.primary: {data.primary!r} is not a source; sources: {list(data.sources)}")
    for name, src in data.sources.items():
        if src.kind == "package" and not src.package:
            raise ConfigError(f"data.sources.{name}.package: required when kind is 'package'")
        sql = src.kind == "sql"
        for key, needed in (("path", not sql), ("url", sql), ("query", sql)):
            if needed and not src[key]:
                raise ConfigError(f"data.sources.{name}.{key}: required when kind is {src.kind!r}")
            if not needed and src[key]:
                raise ConfigError(f"data.sources.{name}.{key}: only a {'file' if sql else 'sql'} source has one")
        if (src.available == "at_prediction") != (name == data.primary):
            raise ConfigError(
                f"data.sources.{name}.available: only the primary source "
                f"({data.primary!r}) is 'at_prediction'; others are 'timestamped' or 'static'"
            )
        if src.volume is not None and not 0 <= src.volume.min_ratio <= 1 <= src.volume.max_ratio:
            raise ConfigError(
                f"data.sources.{name}.volume: min_ratio {src.volume.min_ratio} <= 1 <= max_ratio "
                f"{src.volume.max_ratio} expected"
            )
        for col, spec in src.after_outcome.items():
            if spec.lag is not None:
                check_duration(spec.lag, f"data.sources.{name}.after_outcome.{col}.lag")
    check_duration(data.prediction_lead, "data.prediction_lead")
    for i, join in enumerate(data.asof_joins):
        key = f"data.asof_joins[{i}]"
        if join.source not in data.sources:
            raise ConfigError(f"{key}.source: {join.source!r} is not a source; sources: {list(data.sources)}")
        if join.time not in data.sources[join.source].time_columns:
            raise ConfigError(f"{key}.time: {join.time!r} must be declared in data.sources.{join.source}.time_columns")
        if data.sources[join.source].available != "timestamped":
            raise ConfigError(
                f"{key}.source: as-of joins read 'timestamped' sources; "
                f"data.sources.{join.source}.available is {data.sources[join.source].available!r}"
            )
        check_duration(join.lag, f"{key}.lag")
        check_duration(join.tolerance, f"{key}.tolerance")
    for i, join in enumerate(data.lookup_joins):
        if join.source not in data.sources:
            raise ConfigError(f"data.lookup_joins[{i}].source: {join.source!r} is not a source")
        if data.sources[join.source].available != "static":
            raise ConfigError(
                f"data.lookup_joins[{i}].source: a plain lookup would see future rows of "
                f"{join.source!r}; lookups read 'static' sources (use an as-of join)"
            )
    for name, agg in data.aggregates.items():
        _check_aggregate(data, f"data.aggregates.{name}", agg)


def _check_aggregate(data: DictConfig, key: str, agg: DictConfig) -> None:
    """An aggregate reads only what is known by the time it observes each row."""
    leaky = after_outcome_columns(data)
    check_duration(agg.window, f"{key}.window")
    lag = check_duration(agg.observed_lag, f"{key}.observed_lag")
    if agg.stat != "count" and not agg.value:
        raise ConfigError(f"{key}.value: required for stat={agg.stat!r}")
    if agg.known == "schedule":
        if agg.value in leaky:
            raise ConfigError(f"{key}: a schedule aggregate cannot read {agg.value!r}: {leaky[agg.value]}")
        return
    observed = (agg.observed_after, lag)
    for role, column in (("value", agg.value), ("observed_after", agg.observed_after)):
        if column is None or column not in leaky:
            continue
        known = known_after(data, column) if column in data.sources[data.primary].after_outcome else None
        if known is None:
            raise ConfigError(
                f"{key}.{role}: {column!r} is known only after the outcome ({leaky[column]}) and its source does "
                f"not say when: declare data.sources.{data.primary}.after_outcome.{column}: {{after: <minutes "
                "column>, lag: <duration>}"
            )
        if not _observed_late_enough(observed, known):
            raise ConfigError(
                f"{key}: {column!r} is known at the event + {_describe(known)}, but this aggregate observes a row "
                f"at the event + {_describe(observed)}: that can be earlier. Observe it as its source declares "
                f"(observed_after: {known[0]}, observed_lag: {known[1]} or more)"
            )
