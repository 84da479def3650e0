"""Hydra discovers this package on import (DVC loads `hydra_plugins/` from the repo root
before composing), so `dvc exp run` validates params against the same typed schema."""

from mlsys.config import register

register()
