"""`sweepctl validate` (the pre-commit hook) must not pay for the heavy libraries.

mlflow alone costs ~1.3 s and pulls pandas; a hook that runs on every commit cannot.
Checked in a fresh interpreter so nothing this test session imported counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("mlflow", "kubernetes", "pandas", "git", "github", "matplotlib", "rich", "tabulate",
         "numpy", "sqlalchemy", "optuna")

PROBE = """
import json, sys
from sweepctl.cli.main import main
code = main(sys.argv[1:])
loaded = sorted({name.split(".")[0] for name in sys.modules})
print("\\n" + json.dumps({"code": code, "modules": loaded}))
"""


def modules_after(args: list[str]) -> tuple[int, set[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


@pytest.mark.parametrize("args", [
    ["validate", "experiments"],
    ["validate", "--format", "json", "experiments"],
    ["validate", "experiments/lora-rank-sweep/baseline.yaml"],  # what pre-commit passes
    ["--help"],
])
def test_validate_leaves_heavy_libraries_unimported(args: list[str]) -> None:
    code, modules = modules_after(args)
    assert code == 0
    assert not modules & set(HEAVY), f"imported: {sorted(modules & set(HEAVY))}"


def test_validate_of_an_invalid_folder_stays_light(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "experiment.yaml").write_text("name: [unclosed\n")
    code, modules = modules_after(["validate", str(folder)])
    assert code == 1
    assert not modules & set(HEAVY)
