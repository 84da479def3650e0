"""Names of the columns the build stage adds to every modelling table (one module, so code
that only needs a name does not depend on the build code)."""

EVENT_TIME = "event_time"  # UTC
EVENT_LOCAL = "event_local"  # the same instant in data.event_time.tz (calendar features)
PREDICTION_TIME = "prediction_time"  # UTC: event_time - data.prediction_lead
LABEL = "label"  # 0/1, from data.label
