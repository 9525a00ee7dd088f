"""Where the run index is kept: in the tracking store itself, so that a fresh runner
(nothing on disk) refreshes what the last one kept instead of reading a year of runs;
and what a forged or broken kept file can and cannot do."""

from __future__ import annotations

import gzip
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import serving_mlflow
from mlflow.tracking import MlflowClient
from mlflow_runs import copies, log_trial, result, trials_of
from pytest_httpserver import HTTPServer
from sweepctl import keptindex
from sweepctl.backends import Outcome
from sweepctl.cli.options import INDEX_CACHE, index_keeper
from sweepctl.clients import index_cache
from sweepctl.clients.index_cache import Snapshot
from sweepctl.clients.mlflow_store import KEPT_EXPERIMENT, MlflowStore, RunRecord
from sweepctl.keptindex import InFolder, InTrackingStore, inflate
from sweepctl.runindex import REREAD_EVERY_MS, scan
from sweepctl.usecases.launch import LaunchOptions, launch
from sweepctl.workspace import Workspace

HOUR = 3_600_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own: the kept file is one per store."""
    root = tmp_path_factory.mktemp("kept-mlflow")
    with serving_mlflow(root, f"sqlite:///{root / 'mlflow.db'}") as uri:
        yield uri


def _snapshot(uri: str, taken_at: int = 5) -> Snapshot:
    run = RunRecord("r1", "FINISHED", "t1", "sweep-t1", params={"lora_rank": "8"},
                    metrics={"eval_loss": 0.5},
                    tags={"sweepctl.trial_id": "t1", "sweepctl.trial": "sweep-t1"},
                    start_time=1, end_time=2, experiment_id="1")
    return Snapshot(uri, taken_at, (run,), (), due_at={"1": taken_at + 7})


def _kept_run(uri: str) -> str:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(KEPT_EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id])
    return str(run.info.run_id)


def test_the_choice_of_the_environment() -> None:
    assert index_keeper({}) == InFolder(INDEX_CACHE)
    assert index_keeper({"SWEEPCTL_INDEX_CACHE": "/var/cache/sweepctl"}) == \
        InFolder(Path("/var/cache/sweepctl"))
    assert index_keeper({"SWEEPCTL_INDEX_CACHE": " MLflow "}) == InTrackingStore()
    assert index_keeper({"SWEEPCTL_INDEX_CACHE": "off"}) is None


def test_the_tracking_store_keeps_the_index_whatever_uri_reaches_it(
        server: str, tmp_path: Path) -> None:
    keeper = InTrackingStore()
    assert keeper.write(MlflowStore(server), tmp_path, _snapshot(server))
    # the same server by another name (the workflow's secret vs a laptop's URI)
    other = server.replace("127.0.0.1", "localhost")
    assert keeper.read(MlflowStore(other), tmp_path) == _snapshot(other)
    assert keeper.write(MlflowStore(other), tmp_path, _snapshot(other, taken_at=9))
    assert keeper.read(MlflowStore(server), tmp_path) == _snapshot(server, taken_at=9)
    # one run holds it, replaced in place; nothing of it is a trial run or a sweep
    client = MlflowClient(server)
    kept = client.get_experiment_by_name(KEPT_EXPERIMENT)
    assert len(client.search_runs([kept.experiment_id])) == 1
    index = scan(MlflowStore(server), with_parents=True)
    assert all(r.experiment_id != kept.experiment_id
               for runs in index.trials.values() for r in runs.runs)
    assert not index.parents
    assert list(tmp_path.iterdir()) == []          # nothing on the runner's disk


def test_a_kept_file_that_is_not_ours_is_ignored(server: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    keeper, store = InTrackingStore(), MlflowStore(server)
    assert keeper.write(store, tmp_path, _snapshot(server))
    good = gzip.compress(index_cache.encode(_snapshot(server)))
    for broken in (b"not gzip at all", gzip.compress(b"{"), good[:-8], good + b"trailing",
                   gzip.compress(index_cache.encode(_snapshot(server)).replace(
                       b'"version":3', b'"version":2')),
                   gzip.compress(b'{"version":3,"tracking_uri":"x","taken_at":1,'
                                 b'"runs":[{"run_id":"r"}],"parents":[],"due_at":{}}')):
        path = tmp_path / keptindex.KEPT_FILE
        path.write_bytes(broken)
        MlflowClient(server).log_artifact(_kept_run(server), str(path))
        assert keeper.read(store, tmp_path) is None, broken[:40]
    assert keeper.write(store, tmp_path, _snapshot(server))
    assert keeper.read(store, tmp_path) is not None
    # larger than the limit: not even downloaded
    monkeypatch.setattr(keptindex, "KEPT_LIMIT", 64)
    before = store.calls["download_artifacts"]
    assert keeper.read(store, tmp_path) is None
    assert store.calls["download_artifacts"] == before
    # a few KB that would inflate to far more than 16 times their size: not inflated
    monkeypatch.setattr(keptindex, "KEPT_LIMIT", 2**20)
    padded = index_cache.encode(_snapshot(server)).replace(
        b'"runs":[', b'"runs":[' + b" " * 2_000_000)
    path.write_bytes(gzip.compress(padded))
    MlflowClient(server).log_artifact(_kept_run(server), str(path))
    assert index_cache.decode(padded) is not None          # valid, only too inflated
    assert keeper.read(store, tmp_path) is None
    # and never past INFLATED_LIMIT, whatever the ratio
    monkeypatch.setattr(keptindex, "INFLATE_RATIO", 10**6)
    assert keeper.read(store, tmp_path) is not None
    monkeypatch.setattr(keptindex, "INFLATED_LIMIT", 1_000_000)
    assert keeper.read(store, tmp_path) is None


def test_a_bomb_is_not_inflated_past_its_limit() -> None:
    bomb = gzip.compress(b"0" * 10_000_000)
    assert len(bomb) < 20_000
    assert inflate(bomb, 1_000_000) is None
    assert inflate(bomb, 10_000_000) == b"0" * 10_000_000


def test_a_deleted_kept_experiment_is_neither_read_nor_written(
        server: str, tmp_path: Path) -> None:
    keeper = InTrackingStore()
    assert keeper.write(MlflowStore(server), tmp_path, _snapshot(server))
    client = MlflowClient(server)
    kept = client.get_experiment_by_name(KEPT_EXPERIMENT).experiment_id
    client.delete_experiment(kept)
    try:  # the next commands (a store per command)
        assert keeper.read(MlflowStore(server), tmp_path) is None
        assert keeper.write(MlflowStore(server), tmp_path, _snapshot(server)) is False
    finally:
        client.restore_experiment(kept)
    assert keeper.read(MlflowStore(server), tmp_path) == _snapshot(server)


def test_the_copy_in_mlflow_carries_no_uri_and_a_local_store_keeps_none(
        server: str, tmp_path: Path) -> None:
    keeper = InTrackingStore()
    assert keeper.write(MlflowStore(server), tmp_path, _snapshot(server))
    raw = MlflowStore(server).kept(keptindex.KEPT_FILE, 2**20)
    assert raw is not None and server.encode() not in gzip.decompress(raw)
    # a local store: its artifacts would land in the working folder; nothing is made
    local = MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert keeper.write(local, tmp_path, _snapshot("x")) is False
    assert keeper.read(local, tmp_path) is None and local.requests == 0
    assert not (tmp_path / "mlruns").exists()


def test_a_store_that_refuses_costs_only_the_head_start(tmp_path: Path,
                                                        httpserver: HTTPServer) -> None:
    """A token without the right to read or make the kept experiment: no error, no file."""
    httpserver.expect_request("").respond_with_json(
        {"error_code": "PERMISSION_DENIED", "message": "no"}, status=403)
    store = MlflowStore(httpserver.url_for("").rstrip("/"))
    assert InTrackingStore().read(store, tmp_path) is None
    assert InTrackingStore().write(store, tmp_path, _snapshot("x")) is False
    assert store.requests >= 2


def _launch(folders: list[Path], uri: str, state: Path) -> tuple[dict[str, Outcome], int]:
    outcomes, runs_read, _ = _launch_counted(folders, uri, state)
    return outcomes, runs_read


def _launch_counted(folders: list[Path], uri: str, state: Path
                    ) -> tuple[dict[str, Outcome], int, int]:
    """The outcomes, the runs read and the lookups of the kept file's experiment."""
    workspace = Workspace(env_tracking_uri=uri, index_keeper=InTrackingStore())
    report = launch(folders, LaunchOptions(backend="local", dry_run=True, tracking_uri=uri,
                                           state_dir=state), workspace=workspace)
    assert report.ok
    outcomes = {r.trial_id: r.outcome for e in report.experiments for r in e.results}
    return (outcomes, workspace.store(uri).runs_read,
            workspace.mlflow_calls("get_experiment_by_name"))


def test_a_fresh_runner_refreshes_what_the_last_one_kept(tmp_path: Path) -> None:
    """launch.yml on GitHub-hosted runners: each run is a fresh clone with nothing on
    disk. The second one reads the index the first kept in MLflow and asks only for what
    changed (here: one trial FINISHED in between), not the 40 history runs again."""
    root = tmp_path / "server"
    root.mkdir()
    with serving_mlflow(root, f"sqlite:///{root / 'mlflow.db'}") as uri:
        first_clone = tmp_path / "runner-1"
        folders = copies(first_clone, 20)
        client = MlflowClient(uri)
        experiment, _ = trials_of(folders[0])
        eid = client.create_experiment(experiment.mlflow_experiment)
        for i in range(40):  # a retired sweep's runs
            run = client.create_run(eid, tags={
                "sweepctl.experiment": "retired", "sweepctl.trial_id": f"old{i}",
                "sweepctl.role": "trial"}, start_time=int(time.time() * 1000) - 3 * HOUR)
            client.set_terminated(run.info.run_id, end_time=int(time.time() * 1000) - 3 * HOUR)
        first, read_first, _ = _launch_counted(folders, uri, first_clone / ".sweepctl")
        experiment, trials = trials_of(folders[3])
        log_trial(client, experiment, trials[0], metrics=result(0.4, 9.0))
        second_clone = tmp_path / "runner-2"
        shutil.copytree(first_clone / "experiments", second_clone / "experiments")
        second, read_second, lookups = _launch_counted(
            [second_clone / "experiments" / f.name for f in folders], uri,
            second_clone / ".sweepctl")
        assert first[trials[0].trial_id] == Outcome.LAUNCHED
        assert lookups == 1   # the kept file's run found once: read and kept share it
        assert second[trials[0].trial_id] == Outcome.REUSED
        assert read_first >= 40 > read_second
        assert not (second_clone / ".sweepctl" / "index").exists()


def test_a_forged_kept_index_cannot_make_launch_reuse_what_is_not_there(
        server: str, tmp_path: Path) -> None:
    """Whoever can write to the tracking store can write the kept file. A forged one that
    says a trial in git FINISHED (a run id MLflow does not have, or a real run of another
    trial relabelled) does not skip its training: launch reads every run it decides on
    again by id, and keeps what MLflow says."""
    folders = copies(tmp_path, 20)
    experiment, trials = trials_of(folders[0])
    client = MlflowClient(server)
    now = int(time.time() * 1000)
    # the real run is old (no refresh by time finds it), in an MLflow experiment of a
    # sweep no longer in git (so only the trial ids in git make launch read it again)
    other = replace(experiment, name="retired-sweep",
                    mlflow_experiment=f"{experiment.mlflow_experiment}-retired")
    real = log_trial(client, other, trials[1], metrics=result(0.4, 9.0),
                     start=now - 3 * HOUR)
    client.set_terminated(real, status="FINISHED", end_time=now - 3 * HOUR)
    store = MlflowStore(server)
    ids = store.experiment_ids()
    eid = ids[other.mlflow_experiment]

    def finished(run_id: str, trial_id: str) -> RunRecord:
        return RunRecord(run_id, "FINISHED", trial_id, f"x-{trial_id}", metrics={
            "eval_loss": 0.01}, tags={"sweepctl.trial_id": trial_id,
                                      "sweepctl.experiment": other.name,
                                      "sweepctl.role": "trial"},
            start_time=now - 3 * HOUR, end_time=now - 3 * HOUR, experiment_id=eid)

    forged = Snapshot(server, now, (finished("f" * 32, trials[0].trial_id),
                                    finished(real, trials[2].trial_id)),
                      (), due_at=dict.fromkeys(ids.values(), now + REREAD_EVERY_MS))
    assert InTrackingStore().write(store, tmp_path, forged)
    outcomes, _ = _launch(folders, server, tmp_path / ".sweepctl")
    assert outcomes[trials[0].trial_id] == Outcome.LAUNCHED
    assert outcomes[trials[2].trial_id] == Outcome.LAUNCHED
    assert outcomes[trials[1].trial_id] == Outcome.REUSED      # what MLflow does say


def test_the_cli_keeps_it_in_mlflow_and_prints_none_of_mlflow_s_chatter(
        tmp_path: Path) -> None:
    """SWEEPCTL_INDEX_CACHE=mlflow, as the workflows set it: the output is sweepctl's own
    (no "View run" URL lines, no download progress bars), nothing is left on disk."""
    with serving_mlflow(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}") as server:
        _cli_twice(server, tmp_path / "repo")


def _cli_twice(server: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    folders = copies(tmp_path, 20)
    env = {**os.environ, "SWEEPCTL_INDEX_CACHE": "mlflow", "MLFLOW_TRACKING_URI": server}
    for how in ("full scan (nothing usable kept)", "refreshed what the last command kept"):
        done = subprocess.run(
            [sys.executable, "-m", "sweepctl", "launch", "--backend", "local", "--dry-run",
             *map(str, folders)], capture_output=True, text=True, cwd=tmp_path, env=env,
            timeout=300)
        assert done.returncode == 0, done.stderr
        assert "launched" in done.stdout
        assert f"run index: {how}, " in done.stdout
        assert "; kept in MLflow (sweepctl-kept/run-index.json.gz)" in done.stdout
        for chatter in ("View run", "View experiment", "Downloading artifacts", "%|"):
            assert chatter not in done.stdout + done.stderr
    assert MlflowClient(server).get_experiment_by_name(KEPT_EXPERIMENT) is not None
    assert not (tmp_path / ".sweepctl" / "index").exists()
