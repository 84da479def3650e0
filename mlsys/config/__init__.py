"""Typed configuration: the schema of every `conf/` group (`schema`), its composition into
params.yaml and the sections a stage receives (`compose`), and the checks a schema cannot
express, run by each domain (`checks`)."""

from mlsys.config.checks import check
from mlsys.config.compose import (
    CONF_DIR,
    PARAMS_FILE,
    compose_yaml,
    config_hash,
    guard,
    load_sections,
    project_root,
    provenance,
    read_params,
    select,
    stage_config,
    write_params,
)
from mlsys.config.schema import SECTIONS, register

__all__ = [
    "CONF_DIR",
    "PARAMS_FILE",
    "SECTIONS",
    "check",
    "compose_yaml",
    "config_hash",
    "guard",
    "load_sections",
    "project_root",
    "provenance",
    "read_params",
    "register",
    "select",
    "stage_config",
    "write_params",
]
