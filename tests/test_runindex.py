"""The run index: one merge rule, one scan per command, reuse across MLflow experiments."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from mlflow_runs import log_trial, make_experiment, result, trials_of
from sweepctl.backends import Outcome
from sweepctl.clients.mlflow_store import RunRecord
from sweepctl.runindex import RunIndex, scan
from sweepctl.usecases.launch import LaunchOptions, launch
from sweepctl.usecases.plan import build_plans
from sweepctl.workspace import Workspace


def record(run_id: str, status: str, start: int, trial_id: str = "t1", experiment: str = "e",
           attempt: str | None = None, mlflow_id: str = "1") -> RunRecord:
    tags = {"sweepctl.experiment": experiment, "sweepctl.trial_id": trial_id}
    if attempt is not None:
        tags["sweepctl.attempt"] = attempt
    return RunRecord(run_id, status, trial_id, f"{experiment}-x", tags=tags, start_time=start,
                     experiment_id=mlflow_id)


def test_the_newest_finished_run_wins_and_attempts_are_counted() -> None:
    index = RunIndex.from_runs("sqlite:///x", [
        record("old-ok", "FINISHED", 1), record("new-failed", "FAILED", 3),
        record("mid-killed", "KILLED", 2, attempt="2"), record("other", "RUNNING", 5, "t2")],
        experiment_ids={"m": "1"})
    runs = index.get("t1")
    assert runs is not None
    assert [r.run_id for r in runs.runs] == ["new-failed", "mid-killed", "old-ok"]
    assert runs.latest.run_id == "old-ok"            # FINISHED wins over newer failures
    assert runs.attempts == 4                        # 1 + 2 (a resumed run) + 1
    assert index.latest("t2").run_id == "other"      # no FINISHED: the newest
    assert index.failed_ids(["t1", "t2", "t3"]) == frozenset()
    assert [r.run_id for r in index.runs_of("m", "e")] == ["other", "new-failed",
                                                          "mid-killed", "old-ok"]
    assert index.runs_of("another-mlflow-experiment", "e") == []


def test_a_failure_after_no_success_is_failed() -> None:
    index = RunIndex.from_runs("u", [record("a", "FAILED", 2), record("b", "KILLED", 1)])
    assert index.failed_ids(["t1"]) == {"t1"}


def copies(root: Path, count: int) -> list[Path]:
    """``count`` experiments under root/experiments, each with its own name and MLflow
    experiment (so the scan has to cover several)."""
    first, _ = make_experiment(root, source="lora-rank-sweep")
    folders = [first]
    for i in range(1, count):
        folder = first.parent / f"rank-copy-{i}"
        shutil.copytree(first, folder)
        doc = yaml.safe_load((folder / "experiment.yaml").read_text())
        doc["name"] = folder.name
        doc["mlflow"]["experiment"] = f"{doc['mlflow']['experiment']}-{i}"
        (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
        folders.append(folder)
    return folders


@pytest.mark.parametrize("count", [20, 40])
def test_a_launch_of_many_experiments_makes_one_scan(
        tmp_path: Path, mlflow_server: str, count: int) -> None:
    folders = copies(tmp_path, count)
    client = MlflowClient(mlflow_server)
    experiment, trials = trials_of(folders[0])
    log_trial(client, experiment, trials[0], metrics=result(0.4, 9.0))
    workspace = Workspace(env_tracking_uri=mlflow_server)
    report = launch(folders, LaunchOptions(backend="local", dry_run=True,
                                           tracking_uri=mlflow_server,
                                           state_dir=tmp_path / ".sweepctl"),
                    workspace=workspace)
    assert report.ok and len(report.experiments) == count
    # one paged search of trial runs and one of parent runs, whatever the count (the
    # session's server holds far fewer than 1,000 runs: one page each)
    assert workspace.mlflow_calls("search_runs") == 2
    assert workspace.mlflow_calls("search_experiments") == 1
    assert report.mlflow_requests == 3


def test_a_command_on_a_few_trials_reads_them_by_tag_whatever_the_history(
        tmp_path: Path, mlflow_server: str) -> None:
    """status of one experiment must not page through a year of runs: its requests grow
    with its trials, not with the store, and it sees what the full scan would."""
    folder, = copies(tmp_path, 1)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    log_trial(client, experiment, trials[1], status="FAILED")
    log_trial(client, experiment, trials[1], metrics=result(0.4, 9.0))
    elsewhere = replace(experiment, mlflow_experiment=experiment.mlflow_experiment + "-b",
                        name="another-sweep")
    reused = log_trial(client, elsewhere, trials[2], metrics=result(0.3, 9.0))
    workspace = Workspace(env_tracking_uri=mlflow_server)
    resolved = workspace.resolve(workspace.load(folder))
    index = workspace.run_index(mlflow_server)
    # one search of its own runs, one per trial id: 1 + 3
    assert workspace.mlflow_calls("search_runs") == 4
    full = scan(workspace.store(mlflow_server))
    for trial_id in resolved.trial_ids:
        mine, everything = index.get(trial_id), full.get(trial_id)
        assert (mine and [r.run_id for r in mine.runs]) == (
            everything and [r.run_id for r in everything.runs])
    assert index.finished(trials[2].trial_id).run_id == reused
    assert index.get(trials[1].trial_id).attempts == 2


def test_reuse_crosses_mlflow_experiments(tmp_path: Path, mlflow_server: str) -> None:
    """The README's promise: the same work has the same id whichever experiment asks, so a
    new experiment (its own MLflow experiment) reuses a FINISHED run of another."""
    first, second = copies(tmp_path, 2)
    experiment, trials = trials_of(first)
    run_id = log_trial(MlflowClient(mlflow_server), experiment, trials[0],
                       metrics=result(0.4, 9.0))
    options = LaunchOptions(backend="local", dry_run=True, tracking_uri=mlflow_server,
                            state_dir=tmp_path / ".sweepctl")
    report = launch([second], options)  # launch --changed-since names only the new one
    outcomes = {r.trial_id: (r.outcome, r.detail) for r in report.experiments[0].results}
    assert outcomes[trials[0].trial_id] == (Outcome.REUSED, f"run {run_id}")
    [plan] = build_plans(Workspace(env_tracking_uri=mlflow_server), [second])
    assert plan.reused == 1 and plan.trials[0].reused_run == run_id
