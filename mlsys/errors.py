"""Errors a user can act on, each with the exit code a scheduler can branch on.

| code | meaning |
|------|---------|
| 0 | success |
| 1 | internal error (a bug: the traceback is printed) |
| 2 | usage error (bad command line) |
| 3 | config error (unknown key, wrong type, bad value, leakage) |
| 4 | stale params: `conf/` changed but `params.yaml` was not recomposed |
| 5 | missing input (a file or artifact a stage needs) |
| 6 | contract violation (data failed its contract under the `fail` policy) |
| 7 | gate failure (a candidate model did not pass release gates) |
| 8 | upstream data changed while `on_upstream_change: fail` |
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    STALE_PARAMS = 4
    MISSING_INPUT = 5
    CONTRACT = 6
    GATE = 7
    UPSTREAM_CHANGED = 8


class MlsysError(Exception):
    """Base class: carries the exit code; the message names what to fix."""

    code: ExitCode = ExitCode.INTERNAL


class ConfigError(MlsysError):
    code = ExitCode.CONFIG


class StaleParamsError(MlsysError):
    code = ExitCode.STALE_PARAMS


class MissingInputError(MlsysError):
    code = ExitCode.MISSING_INPUT


class ContractError(MlsysError):
    code = ExitCode.CONTRACT


class GateError(MlsysError):
    code = ExitCode.GATE


class UpstreamChangedError(MlsysError):
    code = ExitCode.UPSTREAM_CHANGED
