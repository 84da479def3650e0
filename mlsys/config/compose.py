"""Composition: `conf/` + overrides -> params.yaml (with DVC's own function), the guard that
stops a run on stale params, and the typed, checked sections a stage receives."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mlsys.config.schema import SECTIONS, register
from mlsys.errors import ConfigError, StaleParamsError

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CHECKED = ".mlsys/checked.json"  # git-ignored: what already passed the checks, by content hash


def project_root(start: Path | None = None) -> Path:
    """The nearest folder holding `conf/` (the project), from `start` or the cwd up."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONF_DIR / "config.yaml").is_file():
            return folder
    raise ConfigError(f"no {CONF_DIR}/config.yaml in {here} or any parent: run mlsys inside a project")


def compose_yaml(root: Path, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Compose `conf/` + overrides into params.yaml text with DVC's own function.

    DVC's `compose_and_dump` is what `dvc exp run` calls, so the CLI, the stale-params
    guard and the tests produce byte-for-byte what DVC would.
    """
    import tempfile

    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / PARAMS_FILE
        try:
            compose_and_dump(out, str(root / CONF_DIR), None, "config", str(root), list(overrides))
        except (HydraException, OmegaConfBaseException) as exc:
            raise ConfigError(f"{CONF_DIR}/: {_hydra_message(exc)}") from exc
        finally:
            from hydra.core.global_hydra import GlobalHydra

            GlobalHydra.instance().clear()
        return out.read_text(encoding="utf-8")


def _hydra_message(exc: BaseException) -> str:
    """Hydra wraps the useful OmegaConf message in its cause: lead with the full key it names."""
    parts, cause, key = [str(exc).strip()], exc.__cause__, getattr(exc, "full_key", None)
    while cause is not None:
        key = key or getattr(cause, "full_key", None)
        text = str(cause).strip()
        if text and text not in parts[-1]:
            parts.append(text)
        cause = cause.__cause__
    if key:  # e.g. "data.label.op: Invalid value 'between', expected one of [gt, ...]"
        detail = next((ln for p in parts for ln in p.splitlines() if "full_key" not in ln and "merging" not in ln), "")
        return f"{key}: {detail}\n" + "\n".join(parts)
    return "\n".join(parts)


def write_params(root: Path) -> Path:
    """Compose `conf/`, check and write params.yaml; returns its path.

    No overrides on purpose: params.yaml must stay the composition of `conf/` (the guard
    checks it); one-off variants are `dvc exp run -S key=value` or `mlsys <stage> key=value`.
    """
    from mlsys.config.checks import check

    text = compose_yaml(root)
    check(load_sections(OmegaConf.create(text), tuple(SECTIONS), source=f"{CONF_DIR}/"))
    path = root / PARAMS_FILE
    path.write_text(text, encoding="utf-8")
    return path


def _digest(root: Path, folders: tuple[str, ...], files: tuple[str, ...] = ()) -> str:
    """sha256 over the files (and every file under the folders), by path and content."""
    digest = hashlib.sha256()
    paths = [root / f for f in files] + sorted(p for d in folders for p in (root / d).rglob("*") if p.is_file())
    for path in paths:
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def _checked(root: Path) -> dict:
    try:
        return json.loads((root / CHECKED).read_text())
    except (OSError, ValueError):
        return {}


def _mark(root: Path, **keys: str) -> None:
    """Record what passed (best effort: a read-only checkout just checks again next time)."""
    from mlsys.io import write_json

    try:
        write_json(root / CHECKED, {**_checked(root), **keys})
    except Exception:
        return


def _code_key(root: Path) -> str:
    """params.yaml and the code that checks it: the same key means the same verdict."""
    import mlsys

    package = Path(mlsys.__file__).parent
    return _digest(root, (), (PARAMS_FILE,)) + _digest(package.parent, (package.name,))


def guard(root: Path) -> str:
    """Stop a plain `dvc repro` from running on params.yaml that is stale against `conf/`.

    Under `dvc exp run` (DVC sets DVC_EXP_BASELINE_REV), DVC has just composed params.yaml
    from `conf/` + `-S` overrides, so it is fresh by construction. When `conf/`,
    params.yaml, `hydra_plugins/` and the code are byte for byte what last passed, the
    composition (seconds of Hydra) is not repeated: a hash says so.
    """
    from mlsys.config.checks import check

    key = _code_key(root) + _digest(root, (CONF_DIR, "hydra_plugins"))
    if _checked(root).get("guard") == key:
        return "params.yaml matches conf/ (unchanged since it was last composed and checked)"
    params = read_params(root)
    check(load_sections(params, tuple(SECTIONS), source=PARAMS_FILE), lightgbm=False)  # no-op runs stay fast
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return "params.yaml composed by dvc exp run"
    if (root / PARAMS_FILE).read_text(encoding="utf-8") != compose_yaml(root):
        raise StaleParamsError(
            f"{PARAMS_FILE} is stale: it differs from the composition of {CONF_DIR}/.\n"
            "  Run `mlsys compose` (then `dvc repro`), or `dvc exp run` which composes first."
        )
    _mark(root, guard=key, config=_code_key(root))
    return "params.yaml matches conf/"


def read_params(root: Path) -> DictConfig:
    """params.yaml as written (untyped); `load_sections` types it."""
    path = root / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `mlsys compose` to create it from {CONF_DIR}/")
    return OmegaConf.load(path)  # type: ignore[return-value]


def load_sections(raw: DictConfig, sections: tuple[str, ...], source: str) -> DictConfig:
    """Merge the given top-level sections of `raw` onto their typed schema."""
    from omegaconf.errors import OmegaConfBaseException

    out = {}
    for name in sections:
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {name!r}; known: {sorted(SECTIONS)}")
        if name not in raw:
            raise ConfigError(f"{source}: section {name!r} is missing")
        try:
            node = OmegaConf.merge(OmegaConf.structured(SECTIONS[name]), raw[name])
            OmegaConf.to_container(node, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{source}: {name}.{_omegaconf_key(exc)}") from exc
        out[name] = node
    return OmegaConf.create(out)


def _omegaconf_key(exc: Exception) -> str:
    key = getattr(exc, "full_key", "") or ""
    msg = getattr(exc, "msg", str(exc)).split("\n")[0]
    return f"{key}: {msg}" if key else msg


def stage_config(keys: tuple[str, ...], overrides: list[str] | tuple[str, ...] = ()) -> tuple[DictConfig, Path]:
    """The params `keys` (dotted) a stage declares, from params.yaml or, with overrides,
    from `conf/` + overrides.

    The whole config is checked first (a leaky feature is an error whichever stage runs;
    LightGBM's own parameter check only where a stage reads `model`), then the stage
    receives only its declared keys. params.yaml that already passed the same checks (same
    bytes, same code: `CHECKED`) is not checked again, which keeps every stage's start light.
    """
    from mlsys.config.checks import check, check_lightgbm

    root = project_root()
    lightgbm = "model" in {k.split(".")[0] for k in keys}
    if overrides:
        raw = OmegaConf.create(compose_yaml(root, overrides))
        source = f"{CONF_DIR}/ + {' '.join(overrides)}"
        full = load_sections(raw, tuple(SECTIONS), source)
        check(full, lightgbm=lightgbm)
        return select(full, keys), root
    raw, source = read_params(root), PARAMS_FILE
    key, done = _code_key(root), _checked(root)
    if done.get("config") == key:  # checked already: only the sections the stage reads are typed (~0.2 s less)
        sections = dict.fromkeys(k.split(".")[0] for k in keys)
        first = lightgbm and done.get("lightgbm") != key  # the first stage reading `model`: LightGBM's check
        typed = load_sections(raw, tuple(sections | dict.fromkeys(("data", "model") if first else ())), source)
        if first:
            check_lightgbm(typed)
            _mark(root, lightgbm=key)
        return select(typed, keys), root
    full = load_sections(raw, tuple(SECTIONS), source)
    check(full, lightgbm=lightgbm)
    _mark(root, config=key, **({"lightgbm": key} if lightgbm else {}))
    return select(full, keys), root


def select(full: DictConfig, keys: tuple[str, ...]) -> DictConfig:
    """Only the given (dotted) keys of `full`, nested as in params.yaml."""
    out: dict = {}
    for key in keys:
        *parents, leaf = key.split(".")
        node, target = full, out
        for part in parents:
            node, target = node[part], target.setdefault(part, {})
        target[leaf] = node[leaf]
    return OmegaConf.create(out)


def config_hash(cfg: DictConfig) -> str:
    """Hash of exactly the sections a stage received (sorted JSON)."""
    blob = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def provenance(stage: str, cfg: DictConfig) -> dict[str, object]:
    """What a stage saves with its artifacts: its name, config and the config's hash."""
    return {"stage": stage, "config_hash": config_hash(cfg), "config": OmegaConf.to_container(cfg, resolve=True)}
