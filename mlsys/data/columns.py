"""Names of the columns the build stage adds to every modelling table (one module, so code
that only needs a name does not depend on the build code)."""

EVENT_TIME = "event_time"  # UTC
EVENT_LOCAL = "event_local"  # the same instant in data.event_time.tz (calendar features)
PREDICTION_TIME = "prediction_time"  # UTC: event_time - data.prediction_lead
LABEL = "label"  # 0/1, from data.label

# Dtype names (prefixes) of numbers, as contracts declare them.
NUMERIC_DTYPES = ("int", "Int", "float", "Float", "uint", "UInt")

# Units of `data.event_time.parts`: a date (year + month + day, or year + day_of_year), then a time.
TIME_UNITS = {"hour": 3600, "minute": 60, "second": 1}  # seconds in each
UNITS = ("year", "month", "day", "day_of_year", *TIME_UNITS)

# Column prefixes of the request log (and of a model profile's answer entries).
INPUT, ANSWER, FEATURE = "input.", "answer.", "feature."
