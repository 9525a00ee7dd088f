"""GitOps prune: the full reconcile deletes the never-started Jobs of work git no longer has,
against kmock's emulator over HTTP and a real MLflow store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kube_emulator import RunningEmulator, running_emulator
from sweepctl.backends import Outcome
from sweepctl.cli.options import experiment_folders
from sweepctl.usecases.launch import LaunchReport, launch
from sweepctl.workspace import Workspace
from test_launch import NAMESPACE, make_experiment, options


@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    with running_emulator() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def add_experiment(folder: Path, name: str) -> Path:
    """A second experiment beside ``folder`` (the demo under another name)."""
    other = folder.parent / name
    shutil.copytree(folder, other)
    doc = yaml.safe_load((other / "experiment.yaml").read_text())
    doc["name"] = name
    doc["mlflow"]["experiment"] = name
    (other / "experiment.yaml").write_text(yaml.safe_dump(doc))
    return other


def reconcile_all(root: Path, emu: RunningEmulator, store: str) -> LaunchReport:
    """What the scheduled run does: `launch` with no experiment (prune on)."""
    workspace = Workspace(shared_tracking=True, env_tracking_uri=store, cwd=root)
    folders = experiment_folders(workspace, [])
    return launch(folders, options(emu, store, prune=True), workspace=workspace)


def jobs_of(emu: RunningEmulator, experiment: str) -> dict[str, dict[str, Any]]:
    return {name: job for name, job in emu.objects("jobs", NAMESPACE).items()
            if job["metadata"]["labels"]["sweepctl.io/experiment"] == experiment}


def lists(emu: RunningEmulator) -> int:
    return sum(1 for r in list(emu.emulator) if r.action == kmock.action.LIST
               and r.resource is not None and r.resource.plural == "jobs")


def deletes(emu: RunningEmulator) -> int:
    return sum(1 for r in list(emu.emulator) if r.action == kmock.action.DELETE)


def test_removing_a_folder_prunes_its_suspended_jobs_reports_running_ones_and_only_once(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    folder = make_experiment(tmp_path, "prune-a")
    other = add_experiment(folder, "gone-demo")
    first = reconcile_all(tmp_path, emu, store)
    assert first.ok, first.not_launched
    assert first.pruned == []
    before = {name: job.get("spec", {}).get("suspend", False)
              for name, job in jobs_of(emu, "gone-demo").items()}
    assert sorted(before.values()) == [False, False, True, True]  # max_parallel 2
    kept = set(jobs_of(emu, "tiny-lora-demo"))

    shutil.rmtree(other)  # the folder left main
    listed = lists(emu)
    second = reconcile_all(tmp_path, emu, store)
    assert lists(emu) - listed == 1  # one list of every sweepctl Job in the namespace
    by_outcome = {r.name: r.outcome for r in second.pruned}
    suspended = {n for n, s in before.items() if s}
    assert {n for n, o in by_outcome.items() if o == Outcome.PRUNED} == suspended
    running = [r for r in second.pruned if r.outcome == Outcome.NOT_IN_GIT]
    assert {r.name for r in running} == set(before) - suspended
    assert all("not in git" in r.detail and "cancel it" in r.detail for r in running)
    assert set(jobs_of(emu, "gone-demo")) == set(before) - suspended
    assert set(jobs_of(emu, "tiny-lora-demo")) == kept   # another sweep is left alone
    assert second.ok

    deleted = deletes(emu)
    third = reconcile_all(tmp_path, emu, store)
    assert deletes(emu) == deleted  # a second prune deletes nothing
    assert {r.outcome for r in third.pruned} == {Outcome.NOT_IN_GIT}


def test_trials_removed_from_a_sweep_lose_their_queued_jobs_but_a_partial_launch_prunes_nothing(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    folder = make_experiment(tmp_path, "prune-b", kubernetes={"queue": "gpu-a100"})
    first = reconcile_all(tmp_path, emu, store)
    assert first.ok
    names = set(jobs_of(emu, "tiny-lora-demo"))
    assert len(names) == 4  # with Kueue every Job waits suspended in the queue
    sweep = yaml.safe_load((folder / "sweep.yaml").read_text())
    sweep["parameters"]["lora_rank"] = sweep["parameters"]["lora_rank"][:1]
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))

    partial = launch([folder], options(emu, store))   # `launch EXP`: never prunes
    assert partial.pruned == [] and set(jobs_of(emu, "tiny-lora-demo")) == names

    full = reconcile_all(tmp_path, emu, store)
    pruned = {r.name for r in full.pruned if r.outcome == Outcome.PRUNED}
    launched_now = {r.name for e in full.experiments for r in e.results}
    assert len(pruned) == 2 and pruned.isdisjoint(launched_now)
    assert all("removed from tiny-lora-demo's sweep" in r.detail for r in full.pruned)
    assert set(jobs_of(emu, "tiny-lora-demo")) == names - pruned


def test_prune_none_in_defaults_leaves_every_job(tmp_path: Path, emu: RunningEmulator,
                                                 store: str) -> None:
    folder = make_experiment(tmp_path, "prune-c")
    other = add_experiment(folder, "kept-demo")
    defaults = folder.parent / "defaults.yaml"
    data = yaml.safe_load(defaults.read_text())
    data["prune"] = "none"
    defaults.write_text(yaml.safe_dump(data))
    assert reconcile_all(tmp_path, emu, store).ok
    before = set(jobs_of(emu, "kept-demo"))
    shutil.rmtree(other)
    report = reconcile_all(tmp_path, emu, store)
    assert report.pruned == [] and set(jobs_of(emu, "kept-demo")) == before


def test_prune_all_stops_running_jobs_of_a_removed_experiment(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    folder = make_experiment(tmp_path, "prune-d")
    other = add_experiment(folder, "stop-demo")
    defaults = folder.parent / "defaults.yaml"
    data = yaml.safe_load(defaults.read_text())
    data["prune"] = "all"
    defaults.write_text(yaml.safe_dump(data))
    assert reconcile_all(tmp_path, emu, store).ok
    shutil.rmtree(other)
    report = reconcile_all(tmp_path, emu, store)
    assert sorted(r.outcome.value for r in report.pruned) == \
        ["cancelled", "cancelled", "pruned", "pruned"]
    assert jobs_of(emu, "stop-demo") == {}
