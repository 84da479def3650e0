"""Errors a user can act on, each with the exit code a scheduler can branch on.

| code | meaning |
|------|---------|
| 0 | success |
| 1 | internal error (a bug: the traceback is printed) |
| 2 | usage error (bad command line) |
| 3 | config error (unknown key, wrong type, bad value, leakage) |
| 4 | stale params: `conf/` changed but `params.yaml` was not recomposed |
| 5 | missing or unusable input: a file or artifact that is absent, corrupt or unwritable |
| 6 | contract violation (data failed its contract, or lost more than it may) |
| 7 | gate failure (a candidate model did not pass release gates) |
| 8 | upstream data changed while `on_upstream_change: fail` |
| 9 | concurrent change (a release or rollback raced another one): rerun |
| 10 | monitoring alert: `mlsys monitor` found a check past its fail bound |
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
    CONCURRENT = 9
    ALERT = 10


class MlsysError(Exception):
    """Base class: carries the exit code; the message names what to fix."""

    code: ExitCode = ExitCode.INTERNAL


class UsageError(MlsysError):
    code = ExitCode.USAGE


class ConfigError(MlsysError):
    code = ExitCode.CONFIG


class StaleParamsError(MlsysError):
    code = ExitCode.STALE_PARAMS


class MissingInputError(MlsysError):
    code = ExitCode.MISSING_INPUT


class IntegrityError(MissingInputError):
    """A file that is there but cannot be trusted: its checksum differs, it is truncated, or
    it does not parse. Same exit code as a missing one: restore it or rerun what makes it."""


class StorageError(MissingInputError):
    """A write that the storage refused (read-only, full, permissions); nothing half-written."""


class ContractError(MlsysError):
    code = ExitCode.CONTRACT


class GateError(MlsysError):
    code = ExitCode.GATE


class UpstreamChangedError(MlsysError):
    code = ExitCode.UPSTREAM_CHANGED


class ConcurrentChangeError(MlsysError):
    """Someone else changed the same thing meanwhile (the live model, the registry lock)."""

    code = ExitCode.CONCURRENT


class AlertError(MlsysError):
    """`mlsys monitor`: a check passed its fail bound."""

    code = ExitCode.ALERT
