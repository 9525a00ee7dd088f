"""demo/run_demo.sh: `make demo` installs the pre-commit hook (issue 13 item 18).

The trainer steps are stood in for (SWEEPCTL and TRAINER_PYTHON point at `true`): what is
under test is the hook, which the real pre-commit installs and then runs on a commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(repo.parent / "home"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-cache")}
    return subprocess.run(["git", *args], cwd=repo, env=env, text=True, capture_output=True,
                          check=check)


def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "demo").mkdir(parents=True)
    shutil.copy(REPO / "demo" / "run_demo.sh", repo / "demo" / "run_demo.sh")
    shutil.copy(REPO / ".pre-commit-config.yaml", repo / ".pre-commit-config.yaml")
    (repo / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)
    for name in ("model/config.json", "data/dataset_info.json"):
        (repo / ".sweepctl" / "tiny" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / ".sweepctl" / "tiny" / name).write_text("{}")
    git(repo, "init", "-q", "-b", "main")
    return repo


def run_demo(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(repo.parent / "home"),
           "SWEEPCTL": "true", "TRAINER_PYTHON": "true", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1", "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-cache")}
    return subprocess.run(["bash", "demo/run_demo.sh"], cwd=repo, env=env, text=True,
                          capture_output=True, check=False)


def test_make_demo_installs_the_hook_and_it_refuses_a_broken_yaml(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    first = run_demo(repo)
    assert first.returncode == 0, first.stderr
    assert "pre-commit installed at .git/hooks/pre-commit" in first.stdout
    hook = repo / ".git" / "hooks" / "pre-commit"
    installed = hook.read_text()
    again = run_demo(repo)  # idempotent: a second make demo changes nothing
    assert again.returncode == 0 and hook.read_text() == installed
    assert not (hook.parent / "pre-commit.legacy").exists()  # not installed over itself
    broken = repo / "experiments" / "oops" / "experiment.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("name: oops\nbudget: [1, 2\n")
    git(repo, "add", "experiments")
    commit = git(repo, "commit", "-q", "-m", "broken", check=False)
    assert commit.returncode != 0
    assert "experiments/oops/experiment.yaml:" in commit.stdout + commit.stderr
    assert git(repo, "rev-list", "--all").stdout == ""  # nothing was committed


def test_outside_a_git_checkout_the_demo_goes_on_without_a_hook(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    shutil.rmtree(repo / ".git")
    result = run_demo(repo)
    assert result.returncode == 0, result.stderr
    assert "pre-commit" not in result.stdout
    assert not (repo / ".git").exists()
