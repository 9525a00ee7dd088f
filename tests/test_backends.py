"""One conformance suite for every backend in the registry: kubernetes against kmock's
emulator, local with the fake trainer of test_backend_local. What the protocol promises
(observe, submit, idempotent re-submit through usecases.launch.reconcile, failure
reporting, cancel) holds for both; what differs is said per backend in ``Harness``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import pytest
from kube_emulator import RunningEmulator, running_emulator
from sweepctl.backends import BACKENDS, Backend, BackendSettings, Outcome, open_backend
from sweepctl.backends.local import LocalProcesses
from sweepctl.clients.kube_api import configuration_for_host
from sweepctl.usecases.launch import LaunchOptions, LaunchReport, launch
from sweepctl.workspace import Workspace
from test_backend_local import RUNNER, _slow_trial, _wait_for, fake_site, local_options  # noqa: F401
from test_launch import NAMESPACE, make_experiment, options


@dataclass
class Harness:
    name: str
    tmp_path: Path
    store: str
    emu: RunningEmulator | None = None
    site: Path | None = None

    def options(self, **env: str) -> LaunchOptions:
        if self.emu is not None:
            return options(self.emu, self.store)
        assert self.site is not None
        return local_options(self.tmp_path, self.store, self.site, **env)

    def backend(self) -> Backend:
        opts = self.options()
        return open_backend(self.name, BackendSettings(
            state_dir=opts.state_dir, env=opts.env, kube_configuration=opts.kube_configuration,
            kube_retry=opts.kube_retry))

    def fail_rank_16(self) -> LaunchOptions:
        """A launch whose lora_rank 16 trials fail: locally the trainer raises; on the
        cluster their Jobs are marked Failed afterwards (see ``mark_failed``)."""
        return self.options(FAKE_TRAINER_FAIL_RANK="16")

    def mark_failed(self) -> None:
        if self.emu is None:
            return
        for name in self.emu.objects("jobs", NAMESPACE):
            if "-r16-" in name:
                self.emu.emulator.objects[kmock.resource("batch/v1/jobs"), NAMESPACE, name].patch(
                    {"status": {"conditions": [{"type": "Failed", "status": "True",
                                                "reason": "BackoffLimitExceeded"}]}})


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path,
            fake_site: Path) -> Iterator[Harness]:  # noqa: F811
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if request.param == "kubernetes":
        with running_emulator() as emu:
            yield Harness("kubernetes", tmp_path, store, emu=emu)
    else:
        yield Harness("local", tmp_path, store, site=fake_site)


def outcomes(report: LaunchReport) -> dict[str, Outcome]:
    return {r.name: r.outcome for e in report.experiments for r in e.results}


def resolved(folder: Path, store: str, backend: str) -> Any:
    workspace = Workspace(shared_tracking=backend == "kubernetes", env_tracking_uri=store)
    return workspace.resolve(workspace.load(folder))


def test_submit_observe_and_a_resubmit_launches_nothing_twice(harness: Harness) -> None:
    folder = make_experiment(harness.tmp_path, f"conf-{harness.name}")
    first = launch([folder], harness.options())
    assert first.ok and set(outcomes(first).values()) == {Outcome.LAUNCHED}
    backend = harness.backend()
    seen = backend.observe([resolved(folder, harness.store, harness.name)])["tiny-lora-demo"]
    assert {o.name for o in seen.values()} == set(outcomes(first))
    expected = {"kubernetes": {"pending", "suspended"}, "local": {"succeeded"}}[harness.name]
    assert {o.phase for o in seen.values()} <= expected
    again = launch([folder], harness.options())
    # nothing is started twice: a Job is still there, or the run FINISHED and is reused
    assert again.ok and Outcome.LAUNCHED not in outcomes(again).values()
    if harness.emu is not None:
        assert harness.emu.creates("jobs") == 4


def test_failures_are_reported_the_way_the_backend_can_retry_them(harness: Harness) -> None:
    folder = make_experiment(harness.tmp_path, f"fail-{harness.name}")
    launch([folder], harness.fail_rank_16())
    harness.mark_failed()
    report = launch([folder], harness.options())
    failed = {r.name: r for e in report.experiments for r in e.results if "-r16-" in r.name}
    assert len(failed) == 2
    if harness.name == "kubernetes":  # an immutable failed Job stays: a human deletes it
        assert all(r.outcome == Outcome.FAILED and "delete it to retry" in r.detail
                   for r in failed.values())
    else:                              # nothing stays behind locally: simply retried
        assert all(r.outcome == Outcome.LAUNCHED for r in failed.values())


def test_cancel_stops_what_the_backend_runs(harness: Harness) -> None:
    folder = make_experiment(harness.tmp_path, f"stop-{harness.name}")
    experiment = resolved(folder, harness.store, harness.name)
    if harness.emu is not None:
        assert launch([folder], harness.options()).ok
        names = set(harness.emu.objects("jobs", NAMESPACE))
    else:  # a trial that trains while its launcher waits, as `launch` does
        opts = harness.options()
        processes = LocalProcesses(sys.executable, RUNNER, opts.state_dir, harness.store, 1,
                                   opts.env)
        thread = threading.Thread(target=processes.run,
                                  args=("tiny-lora-demo", [_slow_trial()]), daemon=True)
        thread.start()
        _wait_for(harness.tmp_path / "stamps" / "started-slow")
        names = {"slow"}
    backend = harness.backend()
    results = backend.cancel([experiment])
    assert {(r.name, r.outcome) for r in results} == {(n, Outcome.CANCELLED) for n in names}
    seen = backend.observe([experiment])["tiny-lora-demo"]
    assert all(o.phase not in ("running", "pending", "suspended") for o in seen.values())
    assert backend.cancel([experiment]) == []   # nothing left to stop
    if harness.emu is None:
        thread.join(60)
        assert not thread.is_alive()


def test_a_two_node_trial_is_an_indexed_job_with_its_service_and_is_observed(
        tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = make_experiment(tmp_path, "multinode", kubernetes={"nodes_per_trial": 2})
    with running_emulator() as emu:
        emu.emulator.resources["v1/services"] = kmock.ResourceInfo(kind="Service",
                                                                  namespaced=True)
        report = launch([folder], options(emu, store))
        assert report.ok, report.not_launched
        jobs = emu.objects("jobs", NAMESPACE)
        services = emu.objects("services", NAMESPACE)
        assert set(services) == set(jobs) and len(jobs) == 4
        for name, job in jobs.items():
            spec = job["spec"]
            assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == \
                ("Indexed", 2, 2)
            assert services[name]["spec"]["clusterIP"] == "None"
        backend = open_backend("kubernetes", BackendSettings(
            kube_configuration=configuration_for_host(emu.url)))
        seen = backend.observe([resolved(folder, store, "kubernetes")])["tiny-lora-demo"]
        assert {o.name for o in seen.values()} == set(jobs)
        assert launch([folder], options(emu, store)).ok and emu.creates("jobs") == 4
