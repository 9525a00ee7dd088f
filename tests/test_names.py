"""Experiment names (issue 13 items 10, 11, 15): every command takes a bare name from the
repo root, and launch never cuts a name, in its table or in a log."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow_runs import REPO_ROOT, log_trial, make_experiment, result, trials_of
from rich.console import Console
from sweepctl.backends import Outcome, TrialResult
from sweepctl.cli.launch import print_report
from sweepctl.cli.main import main
from sweepctl.usecases.launch import ExperimentLaunch, LaunchReport

NAME = "lora-rank-sweep"


@pytest.fixture
def repo(git_repo: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed repo with one experiment (a finished baseline in MLflow), cwd at its root."""
    folder, _ = make_experiment(git_repo)
    (git_repo / "schemas").symlink_to(REPO_ROOT / "schemas")
    subprocess.run(["git", "-C", str(git_repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(git_repo), "commit", "-q", "-m", "propose"], check=True)
    experiment, trials = trials_of(folder)
    log_trial(MlflowClient(mlflow_server), experiment, trials[0], metrics=result(0.45, 10.0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("SWEEPCTL_BACKEND", "local")
    monkeypatch.chdir(git_repo)
    return git_repo


@pytest.mark.parametrize(("args", "shows"), [
    (["status", NAME], "baseline"),
    (["compare", NAME], "| baseline"),
    (["plan", NAME, "--offline"], "lora-rank-sweep-baseline-"),
    (["render", NAME, "--output", "rendered"], ""),
    (["report", NAME], "<!-- sweepctl:report:lora-rank-sweep -->"),
    (["launch", NAME, "--dry-run"], "lora-rank-sweep"),
    (["history", NAME], "propose"),
    (["promote", NAME, "--to", "rank-next"], "created experiments/rank-next/"),
])
def test_every_command_takes_a_bare_name_from_the_repo_root(
        repo: Path, capsys: pytest.CaptureFixture[str], args: list[str], shows: str) -> None:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "does not exist" not in err and "no experiment" not in err
    assert shows in out
    if args[0] == "render":
        assert any((repo / "rendered").iterdir())


def test_launch_into_a_log_prints_a_line_per_trial(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # capsys is not a terminal: what a CI log gets (rich's progress bar would print nothing)
    capsys.readouterr()
    assert main(["launch", NAME, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    _, trials = trials_of(repo / "experiments" / NAME)
    assert lines[0] == f"{NAME}: {len(trials)} trial(s)"
    reused = f"{NAME} [1/{len(trials)}] {trials[0].name}: reused"
    assert any(line.startswith(reused) for line in lines), lines
    for k, trial in enumerate(trials[1:], start=2):
        assert f"{NAME} [{k}/{len(trials)}] {trial.name}: launched (dry run)" in lines


def _report(name: str) -> LaunchReport:
    entry = ExperimentLaunch(name, Path(name), results=[
        TrialResult("t0", f"{name}-baseline", Outcome.LAUNCHED),
        TrialResult("t1", f"{name}-r16", Outcome.FAILED, "exit 1")])
    return LaunchReport("local", False, [entry])


def test_the_launch_table_never_cuts_a_long_name() -> None:
    name = "dropout-lr-ofat-" + "x" * 44
    assert len(name) == 60
    out = io.StringIO()
    # wide enough for the whole table (a CI log's console is 120+ columns; the table has
    # grown a "gave up" column since)
    print_report(_report(name), Console(file=out, width=140, color_system=None))
    text = out.getvalue()
    row = next(line for line in text.splitlines() if "dropout" in line)
    assert f"│ {name} │" in row and "…" not in text
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells == [name, "1", "0", "0", "0", "1", "0", "0"]
    assert f"  {name}-r16: failed: exit 1" in text


def test_a_console_too_narrow_for_the_table_gets_one_line_per_experiment() -> None:
    name = "dropout-lr-ofat-" + "x" * 44
    out = io.StringIO()
    print_report(_report(name), Console(file=out, width=80, color_system=None))
    assert (f"  {name}: launched 1, reused 0, already running 0, changed 0, failed 1, "
            "held 0, gave up 0") in out.getvalue().splitlines()
