"""mlsys: a declarative, config-driven framework for a tabular model in production."""

__version__ = "0.1.0"
