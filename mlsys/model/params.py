"""LightGBM parameters from config, checked by LightGBM itself (names and values)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlsys.errors import ConfigError


def check_lightgbm_params(params: DictConfig | dict, key: str) -> None:
    """Every key must be a LightGBM parameter or alias (LightGBM itself only warns), and
    LightGBM must accept every value.

    The names come from LightGBM's own table (`LGBM_DumpParamAliases`, exposed in 4.x as
    `lightgbm.basic._ConfigAliases`); the range pin `lightgbm<5` in pyproject keeps it there.
    The values are checked by LightGBM itself: one boosting round on a 20-row frame (a few
    ms), and, if that fails, each parameter alone to name the one it refused.
    """
    import difflib

    from lightgbm.basic import _ConfigAliases

    aliases = _ConfigAliases._get_all_param_aliases()
    known = {alias for names in aliases.values() for alias in names}
    for name in params:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{key}.{name}: not a LightGBM parameter{hint}")
    plain = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else dict(params)
    if _lightgbm_refuses(plain) is None:
        return
    objective = {k: v for k, v in plain.items() if k in aliases["objective"] or k in aliases["num_class"]}
    for name, value in plain.items():
        refused = _lightgbm_refuses({**objective, name: value})
        if refused is not None:
            raise ConfigError(f"{key}.{name}: LightGBM refuses {value!r}: {refused}")
    raise ConfigError(f"{key}: LightGBM refuses these parameters together: {_lightgbm_refuses(plain)}")


def _lightgbm_refuses(params: dict[str, Any]) -> str | None:
    """LightGBM's own message if one round with `params` fails, else None."""
    import re

    import lightgbm as lgb
    import numpy as np
    from lightgbm.basic import _ConfigAliases

    aliases = _ConfigAliases._get_all_param_aliases()
    objective = str(next((v for k, v in params.items() if k in aliases["objective"]), "regression"))
    classes = int(next((v for k, v in params.items() if k in aliases["num_class"]), 1) or 1)
    rows = np.arange(20)
    if objective in ("multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"):
        label = rows % max(classes, 2)
    elif objective in ("binary", "cross_entropy", "xentropy", "cross_entropy_lambda", "xentlambda"):
        label = rows % 2
    else:
        label = 1 + rows % 2  # positive: poisson, gamma and tweedie need it
    x = np.column_stack([rows, rows % 3]).astype(float)
    full = {**params, "verbosity": -1, "num_threads": 1}
    try:
        data = lgb.Dataset(x, label=label.astype(float), params=full)
        lgb.train(full, data, num_boost_round=1, valid_sets=[data])  # a valid set makes it parse `metric`
    except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
        return re.sub(r" at \S+, line \d+ ?\.?", "", str(exc)).strip()
    return None
