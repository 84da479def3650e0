"""dvc.yaml and the code agree: each stage declares exactly the params keys it reads, and
depends on every source file its code imports, so a change to a gate, a contract or a drift
statistic reruns exactly the stages that use it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from mlsys.stages import PIPELINES, STAGES, record_file

REPO = Path(__file__).resolve().parents[2]
# Run-time validation of the whole config, not computation: every stage runs it, through the
# guard stage's dependency on it (a changed check that passes changes no output). Its own
# imports (every domain's checks) are not followed.
VALIDATION = ("mlsys/config",)
# Code that cannot change an output: exception classes and docstring-only package files.
INERT = {"mlsys/__init__.py", "mlsys/errors.py", "mlsys/release/__init__.py", "mlsys/serving/__init__.py",
         "pipelines/__init__.py"}  # fmt: skip


def _module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(start: Path) -> set[str]:
    """Every mlsys/ and pipelines/ source file `start` imports, at any depth, at module
    level or inside functions (repo-relative paths)."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if _covered(str(path.relative_to(REPO)), list(VALIDATION)):
            continue
        package = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative import
                    base = ".".join([*package.split(".")[: -node.level], node.module])
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for name in names:
                if name.split(".")[0] in ("mlsys", "pipelines"):
                    found = _module_file(name)
                    if found is not None:
                        todo.append(found)
                    parent = _module_file(name.rsplit(".", 1)[0]) if "." in name else None
                    if parent is not None and parent.name == "__init__.py":
                        todo.append(parent)  # importing a.b runs a/__init__.py
    return {str(p.relative_to(REPO)) for p in seen}


def _covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


def _stages() -> dict[str, dict]:
    """Every stage of every pipeline (a study's run at the project root: wdir ..)."""
    out = {}
    for file in PIPELINES:
        for name, stage in yaml.safe_load((REPO / file).read_text())["stages"].items():
            stage = stage["do"] if "do" in stage else stage
            assert file == "dvc.yaml" or stage.get("wdir") == "..", f"{file}:{name} must run at the project root"
            out[name] = stage
    return out


def test_stage_params_match_dvc_yaml():
    stages = _stages()
    assert set(stages) - {"guard"} == set(STAGES)
    for name, stage in STAGES.items():
        if stage.recorded_by:  # DVC tracks its params through the record its recorder writes
            assert "params" not in stages[name], f"stage {name}: its params are recorded, not declared"
            assert f"${{paths.periods}}/{record_file(name)}" in stages[name]["deps"], name
            recorder = STAGES[stage.recorded_by].params
            assert all(any(k == r or k.startswith(r + ".") for r in recorder) for k in stage.params), name
        else:
            assert list(stage.params) == stages[name]["params"], f"stage {name}: dvc.yaml params differ"


def test_every_stage_depends_on_all_the_code_it_runs():
    missing = {}
    for name, stage in _stages().items():
        if name == "guard":
            continue
        code = imported_files(REPO / "pipelines" / f"{name}.py")
        deps = [d for d in stage["deps"] if not str(d).startswith("${")]
        gaps = sorted(f for f in code - INERT if not _covered(f, deps) and not _covered(f, list(VALIDATION)))
        if gaps:
            missing[name] = gaps
    assert not missing, f"dvc.yaml stages miss code deps: {missing}"


def test_inert_files_hold_no_code():
    """What the walk may skip really is inert: docstrings, the version, exception classes."""
    for file in INERT:
        tree = ast.parse((REPO / file).read_text())
        for node in tree.body:
            version = isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["__version__"]
            assert version or isinstance(node, ast.Expr | ast.ImportFrom | ast.ClassDef), (file, ast.dump(node)[:80])
            if isinstance(node, ast.ClassDef):
                assert any(getattr(b, "id", "").endswith(("Error", "Enum", "Exception")) for b in node.bases), file


def test_the_import_walk_finds_imports_inside_functions():
    """The walk must see a function-level import (the infra gate imports the server lazily)."""
    assert "mlsys/serving/app.py" in imported_files(REPO / "mlsys/release/infra.py")


FILE_NAME = re.compile(r"[\w.-]+\.(json|jsonl|parquet|csv|tsv|html|txt|md|sqlite)")


def _string_constants() -> list[tuple[str, str, bool]]:
    """(file, string, whether it is the value of a module-level NAME = "..." definition)."""
    out = []
    for file in sorted([*(REPO / "mlsys").rglob("*.py"), *(REPO / "pipelines").rglob("*.py")]):
        tree = ast.parse(file.read_text())
        defined = {
            id(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and all(getattr(t, "id", "").isupper() for t in node.targets)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((str(file.relative_to(REPO)), node.value, id(node) in defined))
    return out


def test_artifacts_are_named_once():
    """dvc.yaml names every artifact through a `paths` key of params.yaml, the code never spells
    one of those file names itself, and every other file name (a bundle's model.txt, ...) is
    one constant."""
    paths = yaml.safe_load((REPO / "params.yaml").read_text())["paths"]
    for name, stage in _stages().items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path = entry if isinstance(entry, str) else next(iter(entry))
                assert path.startswith("${paths."), f"stage {name} {kind}: {path} is not named in paths"
    for file in PIPELINES:
        text = (REPO / file).read_text()
        assert set(re.findall(r"\$\{paths\.(\w+)\}", text)) <= set(paths)
        dvc = yaml.safe_load(text)
        root = "../" * file.count("/")  # top-level plots are relative to their dvc.yaml
        for plot in dvc.get("plots", []):
            for spec in plot.values():
                assert all(str(k).startswith(root + "${paths.") for k in spec["y"]), spec
        assert all(a["path"].startswith("${paths.") for a in dvc.get("artifacts", {}).values())
    configured = {Path(str(v)).name for v in paths.values() if FILE_NAME.fullmatch(Path(str(v)).name)}
    literals = [(f, v, named) for f, v, named in _string_constants() if FILE_NAME.fullmatch(v)]
    spelled = [(f, v) for f, v, named in literals if v in configured and not named]
    assert not spelled, f"code spells configured artifact names (use cfg.paths.*): {spelled}"
    twice = {v for _, v, _ in literals if sum(1 for _, x, _ in literals if x == v) > 1}
    assert not twice, f"file names spelled in more than one place: {sorted(twice)}"
