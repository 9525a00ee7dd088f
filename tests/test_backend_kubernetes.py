"""The Kubernetes backend alone, over HTTP against kmock's emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kmock
import pytest
from kube_emulator import RunningEmulator, running_emulator
from sweepctl.backends import Outcome, Unit
from sweepctl.backends.kubernetes import KubernetesBackend, with_queue
from sweepctl.clients.kube_api import RetryPolicy, configuration_for_host
from sweepctl.render.labels import ANNOTATION_SPEC_HASH, LABEL_EXPERIMENT, LABEL_TRIAL_ID
from sweepctl.sweep.trial import Trial

NS = "ml"


def unit(experiment: str, index: int, spec: str = "h1") -> Unit:
    name = f"{experiment}-t{index}"
    meta = {"name": name, "namespace": NS,
            "labels": {LABEL_EXPERIMENT: experiment, LABEL_TRIAL_ID: f"id{index}"},
            "annotations": {ANNOTATION_SPEC_HASH: spec}}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                  "data": {"train.yaml": "lora_rank: 8\n"}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "t", "image": "i"}]}}}}
    trial = Trial(index=index, slug=f"t{index}", params={}, config={}, trial_id=f"id{index}",
                  name=name)
    return Unit(trial, spec, [config_map, job])


def launch_units(kube: KubernetesBackend, units: list[Unit], observed: dict[str, Any],
                 max_parallel: int, queue: str | None) -> list[Any]:
    """What submit does for one sweep: release suspended Jobs into free slots (every
    observed one is still git's work here), then create the rest, suspended past
    max_parallel (or all suspended, with a Kueue queue)."""
    slots = max(0, max_parallel - sum(1 for o in observed.values()
                                      if o.phase in ("pending", "running")))
    if queue is None and slots:
        waiting = sorted(o.name for o in observed.values() if o.phase == "suspended")
        slots -= len(waiting[:slots]) - len(kube.resume(NS, waiting[:slots]))
    prepared = []
    for item in units:
        suspend = queue is None and slots <= 0
        slots -= 0 if suspend or queue else 1
        prepared.append(Unit(item.trial, item.spec_hash,
                             [with_queue(m, queue, suspend) if m["kind"] == "Job" else m
                              for m in item.payload]))
    return kube.apply(NS, prepared)



@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    with running_emulator() as running:
        yield running


def backend(emu: RunningEmulator, **kwargs: Any) -> KubernetesBackend:
    retry = kwargs.pop("retry", RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01))
    return KubernetesBackend(configuration_for_host(emu.url), retry=retry, **kwargs)


def test_observe_filters_by_label_on_the_client_side(emu: RunningEmulator) -> None:
    kube = backend(emu)
    kube.apply(NS, [unit("alpha", 1), unit("beta", 2)])
    # kmock ignores labelSelector: the client must not take beta's Job for alpha's
    assert set(kube.observe_in(NS, ["alpha"])["alpha"]) == {"id1"}
    assert set(kube.observe_in(NS, ["beta"])["beta"]) == {"id2"}


def test_jobs_beyond_max_parallel_wait_suspended_and_a_later_launch_resumes_them(
        emu: RunningEmulator) -> None:
    kube = backend(emu)
    results = launch_units(kube, [unit("s", i) for i in range(3)], {}, 2, None)
    assert [r.outcome for r in results] == [Outcome.LAUNCHED] * 3
    phases = {k: o.phase for k, o in kube.observe_in(NS, ["s"])["s"].items()}
    assert phases == {"id0": "pending", "id1": "pending", "id2": "suspended"}
    # id0 completes: the next launch (merge or scheduled reconcile) releases id2
    emu.emulator.objects[kmock.resource("batch/v1/jobs"), NS, "s-t0"].patch(
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    launch_units(kube, [], kube.observe_in(NS, ["s"])["s"], 2, None)
    phases = {k: o.phase for k, o in kube.observe_in(NS, ["s"])["s"].items()}
    assert phases == {"id0": "succeeded", "id1": "pending", "id2": "pending"}


def test_kueue_queue_label_and_suspend_on_every_job(emu: RunningEmulator) -> None:
    kube = backend(emu)
    launch_units(kube, [unit("q", 1)], {}, 5, "gpu-a100")
    job = emu.objects("jobs", NS)["q-t1"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-a100"
    assert job["spec"]["suspend"] is True


def test_retries_429_and_gives_up_with_a_one_line_reason(emu: RunningEmulator) -> None:
    faults = emu.emulator.faults
    faults.statuses = (429,)
    faults.rate = 1.0
    kube = backend(emu)
    [result] = kube.apply(NS, [unit("r", 1)])
    assert result.outcome == Outcome.FAILED
    assert "gave up after 4 attempts" in result.detail and "\n" not in result.detail
    assert kube.requests == 4
    faults.rate = 0.0
    [result] = kube.apply(NS, [unit("r", 1)])
    assert result.outcome == Outcome.LAUNCHED


def test_forbidden_is_not_retried_and_points_at_the_role(emu: RunningEmulator) -> None:
    faults = emu.emulator.faults
    faults.statuses = (403,)
    faults.rate = 1.0
    kube = backend(emu)
    [result] = kube.apply(NS, [unit("f", 1)])
    assert result.outcome == Outcome.FAILED
    assert "forbidden (403)" in result.detail and "deploy/rbac.yaml" in result.detail
    assert kube.requests == 1


def test_unreachable_api_is_a_failed_trial_not_a_traceback() -> None:
    kube = KubernetesBackend(configuration_for_host("http://127.0.0.1:9"),
                             retry=RetryPolicy(attempts=2, base_delay=0.001, timeout=2))
    [result] = kube.apply(NS, [unit("u", 1)])
    assert result.outcome == Outcome.FAILED
    assert result.detail.startswith("create Job u-t1: gave up after 2 attempts")  # the Job first
