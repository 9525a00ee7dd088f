"""The policy in defaults.yaml: what an experiment's runtime: may override."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
from sweepctl.spec.folder import ValidationFailed, load_experiment
from sweepctl.spec.model import Experiment
from sweepctl.spec.policy import (
    Policy,
    image_allowed,
    override_violations,
    policy_from_data,
    policy_violations,
    runtime_overrides,
)

EXAMPLES = Path(__file__).resolve().parent / "examples"
DEFAULTS: dict[str, Any] = {
    "kubernetes": {"namespace": "llm-training", "image": "ghcr.io/example/train:1",
                   "queue": "gpu-a100", "storage": {"pvc": "llm-storage", "mount_path": "/s"}},
    "mlflow": {"tracking_uri": "http://mlflow:5000"},
}
WHERE = "(policy in experiments/defaults.yaml)"


def _refusals(runtime: dict[str, Any], policy: Policy | None = None,
              defaults: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    found = override_violations(runtime, DEFAULTS if defaults is None else defaults,
                                policy or Policy())
    return [(".".join(map(str, v.key)), v.rule) for v in found]


def test_without_a_policy_section_the_policy_is_strict() -> None:
    assert policy_from_data({}) == Policy(max_gpus_per_trial=8, queues=(), images=(),
                                          require_image_digest=False, allow_overrides=(),
                                          allow_trust_remote_code=False)


def test_policy_is_read_and_mistyped_fields_stay_strict() -> None:
    policy = policy_from_data({"policy": {"max_gpus_per_trial": 2, "queues": ["a", 3],
                                          "images": ["ghcr.io/x/"], "allow_trust_remote_code":
                                          "yes", "allow_overrides": ["kubernetes.namespace"]}})
    assert policy == Policy(max_gpus_per_trial=2, queues=("a",), images=("ghcr.io/x/",),
                            allow_overrides=("kubernetes.namespace",))
    assert policy_from_data({"policy": {"max_gpus_per_trial": True}}).max_gpus_per_trial == 8


@pytest.mark.parametrize("key", ["service_account", "secret_env", "namespace", "storage",
                                 "node_selector", "tolerations", "gpu_resource",
                                 "backoff_limit", "some_future_knob"])
def test_trust_widening_kubernetes_keys_are_refused(key: str) -> None:
    assert _refusals({"kubernetes": {key: "x"}}) == [(f"runtime.kubernetes.{key}",
                                                      "policy-override")]


def test_tracking_uri_and_repository_are_refused() -> None:
    runtime = {"mlflow": {"tracking_uri": "https://evil"}, "github": {"repository": "a/b"}}
    assert _refusals(runtime) == [("runtime.mlflow.tracking_uri", "policy-override"),
                                  ("runtime.github.repository", "policy-override")]


def test_scheduling_knobs_are_allowed() -> None:
    runtime = {"local": {"max_parallel": 4},
               "kubernetes": {"gpus_per_trial": 8, "cpu": "16", "memory": "128Gi"}}
    assert _refusals(runtime) == []


def test_the_local_program_and_store_are_not_scheduling_knobs() -> None:
    """A merged experiment must not choose the program a local launch runs (a script in
    the PR) or the host local trials send the machine's MLflow credentials to."""
    runtime = {"local": {"python": "./evil.sh", "tracking_uri": "https://evil/mlflow"}}
    assert _refusals(runtime) == [("runtime.local.python", "policy-override"),
                                  ("runtime.local.tracking_uri", "policy-override")]
    allowed = Policy(allow_overrides=("local.python", "local.tracking_uri"))
    assert _refusals(runtime, allowed) == []


def test_limits_on_gpus_queue_and_image() -> None:
    policy = Policy(max_gpus_per_trial=4, queues=("gpu-h100",), images=("ghcr.io/example/train",))
    assert _refusals({"kubernetes": {"gpus_per_trial": 5, "queue": "prod",
                                     "image": "docker.io/evil:1"}}, policy) == [
        ("runtime.kubernetes.gpus_per_trial", "policy-gpus"),
        ("runtime.kubernetes.queue", "policy-queue"),
        ("runtime.kubernetes.image", "policy-image")]
    assert _refusals({"kubernetes": {"gpus_per_trial": 4, "queue": "gpu-h100",
                                     "image": "ghcr.io/example/train:2"}}, policy) == []


def test_digest_can_be_required() -> None:
    policy = Policy(images=("ghcr.io/example/",), require_image_digest=True)
    tagged = {"kubernetes": {"image": "ghcr.io/example/train:2"}}
    pinned = {"kubernetes": {"image": "ghcr.io/example/train@sha256:" + "a" * 64}}
    assert _refusals(tagged, policy) == [("runtime.kubernetes.image", "policy-image")]
    assert _refusals(pinned, policy) == []


def test_setting_what_defaults_already_say_widens_nothing() -> None:
    runtime = {"kubernetes": {"namespace": "llm-training", "queue": "gpu-a100",
                              "image": "ghcr.io/example/train:1",
                              "storage": {"pvc": "llm-storage"}},
               "mlflow": {"tracking_uri": "http://mlflow:5000"}}
    assert _refusals(runtime) == []
    # without a defaults.yaml there is nothing to equal: the built-in defaults are not a grant
    assert _refusals({"kubernetes": {"namespace": "llm-training"}}, defaults={}) == [
        ("runtime.kubernetes.namespace", "policy-override")]


def test_allow_overrides_names_keys_or_sections_and_lifts_limits() -> None:
    policy = Policy(allow_overrides=("kubernetes.node_selector", "mlflow", "kubernetes.image"))
    runtime = {"kubernetes": {"node_selector": {"pool": "h100"}, "image": "docker.io/any:1",
                              "namespace": "other"},
               "mlflow": {"tracking_uri": "https://other"}}
    assert _refusals(runtime, policy) == [("runtime.kubernetes.namespace", "policy-override")]


@pytest.mark.parametrize(("image", "allowed"), [
    ("ghcr.io/example/train", True), ("ghcr.io/example/train:1", True),
    ("ghcr.io/example/train@sha256:" + "a" * 64, True), ("ghcr.io/example/train/sub:1", True),
    ("ghcr.io/example/train-evil:1", False), ("ghcr.io/example/trainer", False),
    ("ghcr.io/other/train:1", False), ("evil.io/ghcr.io/example/train:1", False),
])
def test_image_prefix_ends_at_a_repository_boundary(image: str, allowed: bool) -> None:
    assert image_allowed(image, ("ghcr.io/example/train",)) is allowed
    assert image_allowed(image, ("ghcr.io/example/",)) is image.startswith("ghcr.io/example/")


def _experiment(tmp_path: Path) -> Experiment:
    case = tmp_path / "experiments"
    shutil.copytree(EXAMPLES / "valid" / "grid", case)
    return load_experiment(case / "demo-sweep")


def test_runtime_overrides_lists_every_override_in_file_order(tmp_path: Path) -> None:
    experiment = dataclasses.replace(_experiment(tmp_path), runtime={
        "kubernetes": {"image": "img@sha256:1", "gpus_per_trial": 2},
        "local": {"max_parallel": 2}})
    assert runtime_overrides(experiment) == [("kubernetes.image", "img@sha256:1"),
                                             ("kubernetes.gpus_per_trial", 2),
                                             ("local.max_parallel", 2)]


def test_policy_violations_for_launch(tmp_path: Path) -> None:
    # what launch checks again on an Experiment, whatever validate said before
    experiment = dataclasses.replace(
        _experiment(tmp_path), runtime={"kubernetes": {"service_account": "admin"}},
        tags={"sweepctl.pr": "7"}, baseline={"trust_remote_code": True}, sweep={})
    assert policy_violations(experiment, DEFAULTS) == [
        f"runtime.kubernetes.service_account may not be overridden by an experiment {WHERE} "
        "[policy-override]",
        "tag 'sweepctl.pr' is reserved: sweepctl.* and mlflow.* tags are set by sweepctl and "
        "MLflow, not by an experiment [reserved-tag]",
        "trust_remote_code runs code from the model's repository in the trial; it needs "
        f"policy.allow_trust_remote_code: true {WHERE} [trust-remote-code]"]
    allowing = {**DEFAULTS, "policy": {"allow_overrides": ["kubernetes.service_account"],
                                       "allow_trust_remote_code": True}}
    assert len(policy_violations(experiment, allowing)) == 1  # the tag is never allowed


def test_load_experiment_refuses_a_policy_violation(tmp_path: Path) -> None:
    # launch loads through load_experiment: a skipped pre-commit hook does not get through
    case = tmp_path / "experiments"
    shutil.copytree(EXAMPLES / "invalid" / "policy-service-account", case)
    with pytest.raises(ValidationFailed) as caught:
        load_experiment(case / "demo-sweep")
    assert [f.rule for f in caught.value.findings] == ["policy-override"]


def test_trust_remote_code_allowed_by_policy(tmp_path: Path) -> None:
    case = tmp_path / "experiments"
    shutil.copytree(EXAMPLES / "invalid" / "baseline-trust-remote-code", case)
    (case / "defaults.yaml").write_text("policy:\n  allow_trust_remote_code: true\n")
    assert load_experiment(case / "demo-sweep").baseline["trust_remote_code"] is True
