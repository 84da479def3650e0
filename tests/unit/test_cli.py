"""The CLI: fast help (heavy libraries imported lazily), documented exit codes."""

from __future__ import annotations

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
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, f"exit code {code.name} missing from the README table"


def test_config_error_exit_code_and_message(tmp_path):
    proc = run(["mlsys", "show", "train", "+model.params.num_leves=3"], REPO, check=False)
    assert proc.returncode == ExitCode.CONFIG
    assert "model.params.num_leves" in proc.stderr and "Traceback" not in proc.stderr


def test_outside_a_project_is_a_config_error(tmp_path):
    proc = run(["mlsys", "train"], tmp_path, check=False)
    assert proc.returncode == ExitCode.CONFIG
    assert "conf/config.yaml" in proc.stderr
