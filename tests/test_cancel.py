"""`sweepctl cancel`: Jobs deleted in kmock's emulator, a local trial's process group
stopped, runs left RUNNING ended KILLED in a real MLflow store, status says "cancelled";
and status's live progress of a running local trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_emulator import RunningEmulator, running_emulator
from sweepctl.backends import BackendSettings, Outcome
from sweepctl.cli.main import main
from sweepctl.clients.kube_api import configuration_for_host
from sweepctl.usecases.cancel import cancel
from sweepctl.usecases.launch import launch
from sweepctl.usecases.status import status
from test_backend_kubernetes import unit
from test_backend_local import fake_site  # noqa: F401  (a fixture)
from test_launch import NAMESPACE, make_experiment, options


@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    with running_emulator() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def kube_settings(emu: RunningEmulator) -> BackendSettings:
    return BackendSettings(kube_configuration=configuration_for_host(emu.url))


def stale_run(store: str, folder: Path, trial_name: str, trial_id: str) -> str:
    """A run left RUNNING: its pod was killed before the runner could end it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("cancel-k8s").experiment_id
    run = client.create_run(experiment, tags={
        "sweepctl.experiment": folder.name, "sweepctl.trial": trial_name,
        "sweepctl.trial_id": trial_id, "sweepctl.role": "trial"})
    return str(run.info.run_id)


def test_cancel_deletes_exactly_the_sweeps_jobs_and_ends_a_stale_run_killed(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    from mlflow.tracking import MlflowClient

    folder = make_experiment(tmp_path, "cancel-k8s")
    assert launch([folder], options(emu, store)).ok
    from sweepctl.backends.kubernetes import KubernetesBackend

    KubernetesBackend(configuration_for_host(emu.url)).apply(NAMESPACE, [unit("other", 1)])
    jobs = set(emu.objects("jobs", NAMESPACE)) - {"other-t1"}
    assert len(jobs) == 4
    first = sorted(jobs)[0]
    table = status(folder, backend="kubernetes", tracking_uri=store,
                   settings=kube_settings(emu))
    trial_id = next(r.trial_id for r in table.rows if r.name == first)
    run_id = stale_run(store, folder, first, trial_id)

    one = cancel(folder, backend="kubernetes", trials=[first], tracking_uri=store,
                 settings=kube_settings(emu))
    assert [(r.name, r.outcome) for r in one.stopped] == [(first, Outcome.CANCELLED)]
    assert set(emu.objects("jobs", NAMESPACE)) == (jobs - {first}) | {"other-t1"}
    assert one.ended_runs == [(first, run_id)]
    run = MlflowClient(tracking_uri=store).get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["sweepctl.cancelled"] == "true"
    after = status(folder, backend="kubernetes", tracking_uri=store,
                   settings=kube_settings(emu))
    assert {(r.name, r.backend, r.run_status) for r in after.rows if r.name == first} == \
        {(first, "-", "cancelled")}

    rest = cancel(folder, backend="kubernetes", tracking_uri=store,
                  settings=kube_settings(emu))
    assert {r.name for r in rest.stopped} == jobs - {first}
    assert set(emu.objects("jobs", NAMESPACE)) == {"other-t1"}  # another sweep's Job stays
    # owned ConfigMaps go with their Job through the garbage collector (not kmock's part)
    with pytest.raises(Exception, match="nothing to cancel"):
        cancel(folder, backend="kubernetes", trials=["no-such-trial"], tracking_uri=store,
               settings=kube_settings(emu))


def _launch_in_terminal(tmp_path: Path, folder: Path, store: str,
                        site: Path) -> subprocess.Popen[str]:
    """`sweepctl launch EXP --backend local` in its own process, as from a terminal, with
    trials that train for two minutes (max_parallel 2 of 4)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(site),
           "FAKE_TRAINER_STAMPS": str(tmp_path / "stamps"), "FAKE_TRAINER_SLEEP": "120",
           "HOME": str(tmp_path)}
    (tmp_path / "stamps").mkdir(exist_ok=True)
    code = ("import sys; from sweepctl.cli.main import main; "
            f"sys.exit(main(['launch', {str(folder)!r}, '--backend', 'local']))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _started(tmp_path: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 90
    while True:
        found = sorted(p.name[len("started-"):] for p in (tmp_path / "stamps").glob("started-*"))
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"only {found} started"
        time.sleep(0.1)


def _trial_runs(store: str, mlflow_experiment: str) -> dict[str, tuple[str, str | None]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name(mlflow_experiment).experiment_id],
                              "tags.`sweepctl.role` = 'trial'")
    return {r.data.tags["sweepctl.trial"]: (r.info.status, r.data.tags.get("sweepctl.cancelled"))
            for r in runs}


def test_status_shows_running_local_trials_progress_then_cancel_stops_them_and_the_queue(
        tmp_path: Path, store: str, fake_site: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_experiment(tmp_path, "cancel-local")
    launcher = _launch_in_terminal(tmp_path, folder, store, fake_site)
    try:
        running = _started(tmp_path, 2)
        _wait_for_metric(store, "cancel-local", 2)
        settings = BackendSettings(state_dir=tmp_path / ".sweepctl")
        table = status(folder, backend="local", tracking_uri=store, settings=settings)
        live = [row for row in table.rows if row.progress is not None]
        assert sorted(row.name for row in live) == running
        for row in live:
            assert (row.backend, row.run_status) == ("running", "RUNNING")
            assert row.progress is not None
            assert (row.progress.step, row.progress.epoch, row.progress.loss) == (20, 0.4, 1.0)
            assert row.progress.eta_seconds is not None and row.progress.eta_seconds > 0

        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
        assert main(["cancel", "tiny-lora-demo", "--backend", "local"]) == 0
        out = capsys.readouterr().out
        assert all(f"{name}: cancelled: process group sent SIGTERM" in out for name in running)
        launcher.communicate(timeout=90)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert _started(tmp_path, 2) == running  # the two queued trials never started
    assert _trial_runs(store, "cancel-local") == {name: ("KILLED", "true") for name in running}
    after = status(folder, backend="local", tracking_uri=store, settings=settings)
    assert {(row.name, row.backend, row.run_status) for row in after.rows
            if row.name in running} == {(name, "cancelled", "cancelled") for name in running}


def _wait_for_metric(store: str, mlflow_experiment: str, count: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    deadline = time.monotonic() + 60
    while True:
        found = client.get_experiment_by_name(mlflow_experiment)
        runs = client.search_runs([found.experiment_id], "metrics.loss < 100") if found else []
        if len(runs) >= count:
            return
        assert time.monotonic() < deadline, "the trials never logged a loss"
        time.sleep(0.2)


def test_closing_the_terminal_stops_the_local_trials_and_names_them(
        tmp_path: Path, store: str, fake_site: Path) -> None:  # noqa: F811
    folder = make_experiment(tmp_path, "hangup-local")
    launcher = _launch_in_terminal(tmp_path, folder, store, fake_site)
    try:
        running = _started(tmp_path, 2)
        launcher.send_signal(signal.SIGHUP)
        _, stderr = launcher.communicate(timeout=90)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 130
    assert f"stopped 2 trial(s): {', '.join(running)}" in stderr
    assert "re-run `sweepctl launch` to resume them" in stderr
    assert _started(tmp_path, 2) == running
    assert {status for status, _ in _trial_runs(store, "hangup-local").values()} == {"KILLED"}


def test_a_job_cancel_could_not_delete_keeps_its_run_running(
        tmp_path: Path, emu: RunningEmulator, store: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the backend fails to stop a trial (no delete permission, the API down), the
    trial still runs: its RUNNING run is live, not stale, and must not be ended KILLED
    and shown "cancelled" while its pod keeps training."""
    from mlflow.tracking import MlflowClient
    from sweepctl.clients.kube_api import KubeApi, KubeForbidden

    folder = make_experiment(tmp_path, "cancel-k8s")
    assert launch([folder], options(emu, store)).ok
    first = sorted(emu.objects("jobs", NAMESPACE))[0]
    table = status(folder, backend="kubernetes", tracking_uri=store,
                   settings=kube_settings(emu))
    trial_id = next(r.trial_id for r in table.rows if r.name == first)
    run_id = stale_run(store, folder, first, trial_id)   # its runner is training

    def forbidden(self: KubeApi, namespace: str, kind: str, name: str) -> None:
        raise KubeForbidden(f"delete {kind} {name}: forbidden (403)")

    monkeypatch.setattr(KubeApi, "delete", forbidden)
    report = cancel(folder, backend="kubernetes", trials=[first], tracking_uri=store,
                    settings=kube_settings(emu))
    assert [(r.name, r.outcome) for r in report.stopped] == [(first, Outcome.FAILED)]
    assert first in emu.objects("jobs", NAMESPACE)
    assert report.ended_runs == []
    run = MlflowClient(tracking_uri=store).get_run(run_id)
    assert run.info.status == "RUNNING" and "sweepctl.cancelled" not in run.data.tags
