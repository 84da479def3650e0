"""The CLI: fast help (heavy libraries imported lazily), documented exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys

from mlsys.errors import ExitCode
from tests.conftest import REPO, run


def test_help_imports_no_heavy_library():
    heavy = "('pandas', 'lightgbm', 'hydra', 'dvc', 'pandera', 'sklearn', 'omegaconf')"
    code = (
        "import sys, contextlib, io\n"
        "from mlsys.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        f"print(sorted(m for m in {heavy} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_stages_and_exit_codes():
    out = run(["mlsys", "--help"], REPO).stdout
    for word in ("snapshot", "validate", "build", "featurize", "train", "evaluate", "package", "exit codes"):
        assert word in out


def test_exit_code_table_in_readme_matches_code():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Exit codes") :].split("\n\n")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == [int(c) for c in ExitCode]
    helped = run(["mlsys", "--help"], REPO).stdout
    for code in ExitCode:
        assert f"{int(code)} " in helped.split("exit codes:")[1], f"exit code {code.name} missing from --help"


def test_config_error_exit_code_and_message(tmp_path):
    proc = run(["mlsys", "show", "train", "+model.params.num_leves=3"], REPO, check=False)
    assert proc.returncode == ExitCode.CONFIG
    assert "model.params.num_leves" in proc.stderr and "Traceback" not in proc.stderr


def test_outside_a_project_is_a_config_error(tmp_path):
    proc = run(["mlsys", "train"], tmp_path, check=False)
    assert proc.returncode == ExitCode.CONFIG
    assert "conf/config.yaml" in proc.stderr


def test_guard_and_snapshot_never_import_lightgbm():
    """LightGBM's own parameter check runs where training does, not in the no-op path."""
    code = (
        "import sys\nfrom mlsys import config\nfrom mlsys.stages import STAGES\n"
        "config.guard(config.project_root())\nconfig.stage_config(STAGES['snapshot'].params)\n"
        "print('lightgbm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_value_lightgbm_refuses_is_a_config_error_naming_the_key():
    proc = run(["mlsys", "show", "train", "model.params.learning_rate=-1"], REPO, check=False)
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert "model.params.learning_rate: LightGBM refuses -1" in proc.stderr and "Traceback" not in proc.stderr


def test_once_checked_the_first_model_stage_runs_lightgbm_s_check_alone(tmp_path):
    """A stage reading no `model` checks params.yaml first; the first that reads it then runs
    LightGBM's check alone: a value LightGBM refuses still fails naming the key, and the other
    checks (and their imports) are not repeated."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    params = (REPO / "params.yaml").read_text()
    assert params.count("learning_rate: 0.05") == 1
    (tmp_path / "params.yaml").write_text(params.replace("learning_rate: 0.05", "learning_rate: -1"))
    stage = "import sys\nfrom mlsys import config\nfrom mlsys.errors import ConfigError\n"
    stage += "from mlsys.stages import STAGES\n"
    subprocess.run([sys.executable, "-c", stage + "config.stage_config(STAGES['snapshot'].params)"], cwd=tmp_path,
                   check=True)  # fmt: skip
    code = stage + (
        "try:\n    config.stage_config(STAGES['train'].params)\nexcept ConfigError as exc:\n    print(exc)\n"
        "print('pandera' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    refused, pandera = out.stdout.strip().splitlines()
    assert "model.params.learning_rate: LightGBM refuses -1" in refused and pandera == "False", out.stdout


def test_backtest_arguments_are_declared_so_hydra_deletes_pass_through():
    """Positionals are argparse's, not sniffed from '=' (which took `~key` for a positional)."""
    from mlsys.cli import _parser

    args = _parser().parse_args(
        ["backtest", "2013-09", "2013-09-01", "2013-10-01", "2013-08", "~model.params.cat_smooth", "model.seed=3"]
    )
    assert (args.period, args.start, args.end, args.prev) == ("2013-09", "2013-09-01", "2013-10-01", "2013-08")
    assert args.overrides == ["~model.params.cat_smooth", "model.seed=3"]


def test_only_the_cli_reaches_into_pipelines():
    """The core (mlsys/) never imports a stage's entry point; the CLI dispatches to them."""
    import ast

    for path in (REPO / "mlsys").rglob("*.py"):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "pipelines" for n in names), f"{path} imports pipelines"
