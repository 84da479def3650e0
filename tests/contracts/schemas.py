"""A Python Pandera schema used through the `python_schema: {_target_: ...}` escape hatch."""

import pandera.pandas as pa


def short_flights_only() -> pa.DataFrameSchema:
    return pa.DataFrameSchema({"distance": pa.Column(checks=pa.Check(lambda s: s <= 4000, name="short_haul"))})


def distance_as_float() -> pa.DataFrameSchema:
    """Coerces a column: validated on a copy, the frame the stage writes must keep its dtype."""
    return pa.DataFrameSchema({"distance": pa.Column(float, coerce=True)})


def one_row_per_tailnum() -> pa.DataFrameSchema:
    """A check across rows: a repeat in another slice than its first copy must still be found."""
    return pa.DataFrameSchema({"tailnum": pa.Column(unique=True)})
