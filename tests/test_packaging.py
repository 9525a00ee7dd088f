"""The wheel carries what `pip install sweepctl` (and pre-commit in other repos) needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO_ROOT


def test_wheel_ships_schemas_keys_and_runner(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO_ROOT)], check=True,
                   capture_output=True)
    wheel = next(tmp_path.glob("sweepctl-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in sorted((REPO_ROOT / "schemas").glob("*.schema.json")):
        # schemas/ is the source of truth; the package holds a copy, not a dangling link
        assert f"sweepctl/schemas/{schema.name}" in names
    assert "sweepctl/data/llamafactory_keys.json" in names
    assert "sweepctl/runner/trial_runner.py" in names
    assert "sweepctl/py.typed" in names
