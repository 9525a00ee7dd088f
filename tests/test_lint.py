"""The code stays as the README promises: ruff-clean, `mypy --strict`, layered imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("argv", [
    ["ruff", "check", "tools", "tests", "bench", "scripts", "demo"],
    ["mypy"],
    ["lint-imports", "--no-cache"],
], ids=["ruff", "mypy-strict", "import-linter"])
def test_linter_passes(argv: list[str]) -> None:
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
