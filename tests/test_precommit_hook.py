"""The `sweepctl-validate` hook, run by a real pre-commit in a real git repository.

The temporary repo's config is built from this repo's .pre-commit-hooks.yaml entry
(same id, entry, files and args) as a `repo: local` / `language: system` hook with
the venv's bin on PATH, so pre-commit installs nothing and needs no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweepctl.cli.main import COMMANDS
from sweepctl.spec.scaffold import scaffold

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PRE_COMMIT = shutil.which("pre-commit", path=str(VENV_BIN)) or "pre-commit"
# the keys of a manifest entry that mean the same in a local hook
_SHARED_KEYS = ("id", "name", "entry", "files", "exclude", "args", "pass_filenames",
                "require_serial", "types", "types_or")


def manifest_hook() -> dict[str, object]:
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "sweepctl-validate"]
    assert isinstance(hook, dict)
    return hook


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def hooked_repo(git_repo: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    local = {k: v for k, v in manifest_hook().items() if k in _SHARED_KEYS}
    local["language"] = "system"
    config = {"repos": [{"repo": "local", "hooks": [local]}]}
    (git_repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "PRE_COMMIT_COLOR": "never"}
    env.pop("SKIP", None)
    run(["git", "add", ".pre-commit-config.yaml"], git_repo, env).check_returncode()
    run(["git", "commit", "-q", "-m", "hooks"], git_repo, env).check_returncode()
    installed = run([PRE_COMMIT, "install"], git_repo, env)
    assert installed.returncode == 0, installed.stderr
    return git_repo, env


def test_hook_passes_a_valid_experiment_and_blocks_a_broken_one(
        hooked_repo: tuple[Path, dict[str, str]]) -> None:
    repo, env = hooked_repo
    scaffold(repo / "experiments", "lora-rank-sweep")
    run(["git", "add", "experiments"], repo, env).check_returncode()
    good = run(["git", "commit", "-m", "Add lora-rank-sweep"], repo, env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert re.search(r"sweepctl validate\.+Passed", good.stdout + good.stderr)

    baseline = repo / "experiments" / "lora-rank-sweep" / "baseline.yaml"
    lines = baseline.read_text().splitlines()
    line_no = next(i for i, line in enumerate(lines) if line.startswith("lora_rank:")) + 1
    lines[line_no - 1] = "lora_rank: eight"
    baseline.write_text("\n".join(lines) + "\n")
    run(["git", "add", str(baseline)], repo, env).check_returncode()
    bad = run(["git", "commit", "-m", "Break the rank"], repo, env)
    output = bad.stdout + bad.stderr
    assert bad.returncode == 1, output
    assert re.search(r"sweepctl validate\.+Failed", output)
    assert f"experiments/lora-rank-sweep/baseline.yaml:{line_no}:12: error:" in output
    assert "Traceback" not in output
    # the commit was blocked: HEAD is still the good commit
    log = run(["git", "log", "--format=%s"], repo, env).stdout.splitlines()
    assert log[0] == "Add lora-rank-sweep"


def test_hook_ignores_files_outside_experiments(hooked_repo: tuple[Path, dict[str, str]]) -> None:
    repo, env = hooked_repo
    (repo / "README.md").write_text("lora_rank: eight\n")
    run(["git", "add", "README.md"], repo, env).check_returncode()
    result = run(["git", "commit", "-m", "readme"], repo, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"sweepctl validate\.+\(no files to check\)Skipped",
                     result.stdout + result.stderr)


def test_manifest_entry_runs_a_real_command() -> None:
    hook = manifest_hook()
    program, verb = str(hook["entry"]).split()
    assert program == "sweepctl" and verb in COMMANDS
    assert hook["language"] == "python"
    assert hook.get("pass_filenames", True) is True
    files = re.compile(str(hook["files"]))
    for path in ("experiments/x/experiment.yaml", "experiments/x/baseline.yml",
                 "experiments/x/notes.md", "experiments/defaults.yaml"):
        assert files.search(path), path
    for path in ("tools/sweepctl/cli/main.py", "README.md", "schemas/sweep.schema.json"):
        assert not files.search(path), path


def test_this_repos_config_dogfoods_the_same_hook() -> None:
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"sweepctl-validate", "ruff", "mypy"} <= set(hooks)
    ours, manifest = hooks["sweepctl-validate"], manifest_hook()
    assert ours["files"] == manifest["files"]
    assert str(ours["entry"]).endswith(str(manifest["entry"]))
    assert all(repo["repo"] == "local" for repo in config["repos"])
