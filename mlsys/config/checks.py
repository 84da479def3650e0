"""Checks beyond types on a whole config. Each domain owns its checks (data, contracts,
features, release gates, LightGBM parameters, backtest periods); this module runs them and
holds only what crosses domains."""

from __future__ import annotations

from omegaconf import DictConfig

from mlsys.errors import ConfigError


def check(cfg: DictConfig, lightgbm: bool = True) -> None:
    """Every domain's checks on a whole config (`lightgbm=False` skips importing LightGBM:
    the no-op path, `guard` and `snapshot`, stays fast)."""
    from mlsys.contracts import check_table
    from mlsys.data.checks import check_columns, check_data, dataset_columns
    from mlsys.durations import check_duration
    from mlsys.features import check_features
    from mlsys.model import calibration
    from mlsys.release.gates import check_release
    from mlsys.split import check_backtest, check_split
    from mlsys.tasks import Task

    check_data(cfg.data)
    missing = sorted(set(cfg.data.sources) - set(cfg.contract.tables))
    if missing:
        raise ConfigError(f"contract.tables: no contract for sources {missing}; every boundary needs one")
    check_columns(cfg.data, cfg.contract)  # before the tables: a key's typo is data.key's, not the contract's
    for name, table in cfg.contract.tables.items():  # the primary's checks run after its derived columns
        derived = set(cfg.data.derived) if name == cfg.data.primary else set()
        check_table(table, f"contract.tables.{name}", set(table.columns) | derived)
    if cfg.contract.dataset is not None:
        check_table(cfg.contract.dataset, "contract.dataset", set(dataset_columns(cfg.data, cfg.contract)))
    check_features(cfg.features, cfg.data, cfg.contract)
    check_duration(cfg.training.holdout, "training.holdout")
    check_split(cfg.split)
    check_backtest(cfg.backtest)
    from mlsys.release.gates import GATES

    unknown = sorted(set(cfg.backtest.skip_gates) - set(GATES))
    if unknown:
        raise ConfigError(f"backtest.skip_gates: {unknown} are not gates; gates: {list(GATES)}")
    task = Task.from_config(cfg.data.label, cfg.model.params)
    task.check(cfg.data.label, cfg.model.params)
    calibration.check(cfg.model.calibration, task)
    check_release(cfg.release, task)
    log = cfg.inference.request_log
    if not 0 <= log.sample_rate <= 1:
        raise ConfigError(f"inference.request_log.sample_rate: {log.sample_rate} not in [0, 1]")
    for key in ("flush_rows", "flush_seconds", "rotate_mb", "max_queue"):
        if not log[key] > 0:
            raise ConfigError(f"inference.request_log.{key}: {log[key]} must be positive")
    from mlsys.contracts import pii_columns

    personal = sorted(set(cfg.evaluation.slices) & pii_columns(cfg))
    if personal:
        raise ConfigError(
            f"evaluation.slices: {personal} are pii (contract): slice names would write their values into "
            "metrics, reports and gates"
        )
    if cfg.release.slices.min_rows < cfg.evaluation.min_slice_rows:
        raise ConfigError(
            f"release.slices.min_rows: {cfg.release.slices.min_rows} is below "
            f"evaluation.min_slice_rows={cfg.evaluation.min_slice_rows}: such slices have no metrics"
        )
    if lightgbm:
        check_lightgbm(cfg)


def check_lightgbm(cfg: DictConfig) -> None:
    """LightGBM's own check of `model.params` (the task's parameters included): the one
    check that imports LightGBM, run where a stage reads `model`."""
    from mlsys.model.params import check_lightgbm_params
    from mlsys.tasks import Task

    task = Task.from_config(cfg.data.label, cfg.model.params)
    check_lightgbm_params(task.lgb_params(cfg.model.params), "model.params")


def unknown_names(names: list[str], known: set[str] | list[str]) -> str:
    """`'a' (did you mean 'b'?), 'c'`: the names not known, each with its closest known one."""
    from difflib import get_close_matches

    said = []
    for name in names:
        close = get_close_matches(name, sorted(map(str, known)), n=1)
        said.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(said)
