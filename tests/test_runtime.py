"""defaults.yaml + runtime: overrides, and the one rule for finding MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweepctl.backends import default_backend
from sweepctl.errors import SpecError
from sweepctl.runtime import (
    LocalRuntime,
    Runtime,
    deep_merge,
    repo_root,
    resolve_runtime,
    tracking_uri,
)


def test_experiment_runtime_overrides_defaults_key_by_key(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    (experiments / "x").mkdir(parents=True)
    (experiments / "defaults.yaml").write_text(
        "mlflow: {tracking_uri: 'http://mlflow:5000'}\n"
        "kubernetes: {namespace: llm, image: 'img:1', node_selector: {pool: a100}}\n"
        "local: {max_parallel: 2}\n")
    runtime = resolve_runtime(experiments / "x", {"kubernetes": {"image": "img:2"}})
    assert runtime.kubernetes.image == "img:2"
    assert runtime.kubernetes.namespace == "llm"           # untouched keys survive
    assert dict(runtime.kubernetes.node_selector) == {"pool": "a100"}
    assert runtime.local.max_parallel == 2
    assert runtime.tracking_uri == "http://mlflow:5000"


def test_deep_merge_replaces_lists_and_merges_maps() -> None:
    merged = deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}})
    assert merged == {"a": {"b": 1, "c": [2]}, "d": 1}


@pytest.mark.parametrize(("env", "backend"), [
    ({}, "local"),
    ({"KUBECONFIG": "/k"}, "kubernetes"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes"),
    ({"KUBECONFIG": "/k", "SWEEPCTL_BACKEND": "local"}, "local"),
    ({"SWEEPCTL_BACKEND": "nonsense"}, "local"),
])
def test_default_backend(env: dict[str, str], backend: str) -> None:
    assert default_backend(env) == backend


def test_tracking_uri_rule(tmp_path: Path) -> None:
    root = repo_root(tmp_path / "experiments" / "x")
    runtime = Runtime(tracking_uri="http://mlflow:5000",
                      local=LocalRuntime(tracking_uri="sqlite:///.sweepctl/mlflow.db"))
    # the environment wins, whatever the backend
    assert tracking_uri(runtime, False, root, "http://other:5000") == "http://other:5000"
    # a cluster launch logs to the shared server
    assert tracking_uri(runtime, True, root) == "http://mlflow:5000"
    # local trials (child processes, any cwd) and later commands share one absolute file
    assert tracking_uri(runtime, False, root) == \
        f"sqlite:///{tmp_path.resolve()}/.sweepctl/mlflow.db"
    assert tracking_uri(Runtime(local=LocalRuntime(tracking_uri="sqlite:////abs/db")),
                        False, root) == "sqlite:////abs/db"
    assert tracking_uri(Runtime(), True, root) is None


def test_defaults_are_found_from_inside_the_experiment_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    experiments = tmp_path / "experiments"
    (experiments / "x").mkdir(parents=True)
    (experiments / "defaults.yaml").write_text("kubernetes: {image: 'img:7'}\n")
    monkeypatch.chdir(experiments / "x")
    assert resolve_runtime(Path("."), {}).kubernetes.image == "img:7"


def test_a_symlinked_defaults_yaml_is_refused_not_read(tmp_path: Path) -> None:
    # every command resolves its runtime here: a linked file would swap the admin's policy
    experiments = tmp_path / "experiments"
    (experiments / "x").mkdir(parents=True)
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("kubernetes: {service_account: cluster-admin}\n")
    (experiments / "defaults.yaml").symlink_to(lenient)
    with pytest.raises(SpecError) as caught:
        resolve_runtime(experiments / "x", {})
    assert str(caught.value) == (
        f"{experiments / 'defaults.yaml'}:1:1: error: defaults.yaml is a symbolic link; it must "
        "be a regular file (links are never followed) [symlink]")
