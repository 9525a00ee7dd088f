"""Runtime settings: experiments/defaults.yaml, overridden key by key by an experiment's
``runtime:``, then by the ecosystem's own environment variables (applied by the CLI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweepctl.errors import SpecError
from sweepctl.spec.yamlload import load_document

DEFAULT_TRACKING_URI = "sqlite:///.sweepctl/mlflow.db"


@dataclass(frozen=True)
class SecretEnv:
    """A secret by reference: one key as one env var, or a whole Secret via envFrom."""

    secret: str
    name: str | None = None  # env var name; None means envFrom the whole secret
    key: str | None = None


@dataclass(frozen=True)
class PodSecurity:
    """The trial pods' securityContext. The defaults pass the Pod Security ``restricted``
    profile; ``run_as_root`` is for images that cannot run as another user (it keeps the
    ``baseline`` profile: no privilege escalation, no capabilities, RuntimeDefault seccomp)."""

    run_as_user: int = 1000
    run_as_group: int = 1000
    run_as_root: bool = False
    read_only_root_filesystem: bool = True


@dataclass(frozen=True)
class KubernetesRuntime:
    namespace: str = "llm-training"
    image: str = "ghcr.io/example/llama-factory-train:0.9.5"
    gpu_resource: str = "nvidia.com/gpu"
    gpus_per_trial: int = 1
    cpu: str | None = None
    memory: str | None = None
    service_account: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    storage_pvc: str | None = None
    storage_mount_path: str = "/storage"
    secret_env: tuple[SecretEnv, ...] = ()
    queue: str | None = None
    backoff_limit: int = 2
    ttl_seconds_after_finished: int = 86400
    nodes_per_trial: int = 1
    shm_size: str = "16Gi"
    ephemeral_storage: str | None = "50Gi"
    security: PodSecurity = field(default_factory=PodSecurity)


@dataclass(frozen=True)
class LocalRuntime:
    tracking_uri: str = DEFAULT_TRACKING_URI
    python: str = ".venv-trainer/bin/python"
    max_parallel: int = 1


@dataclass(frozen=True)
class Runtime:
    tracking_uri: str | None = None  # the shared MLflow server; None -> local store
    kubernetes: KubernetesRuntime = field(default_factory=KubernetesRuntime)
    local: LocalRuntime = field(default_factory=LocalRuntime)
    github_repository: str | None = None
    # what the full reconcile does with the Jobs of trials git no longer has (PRUNE_MODES)
    prune: str = "queued"


PRUNE_MODES = ("queued", "all", "none")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def defaults_path(experiment_dir: Path) -> Path:
    # absolute first: Path(".").parent is "." itself, so `sweepctl render .` inside an
    # experiment would miss the defaults.yaml beside it (and its image, part of every id)
    return Path(experiment_dir).resolve().parent / "defaults.yaml"


def load_defaults(path: Path) -> dict[str, Any]:
    if path.is_symlink():
        # the admin's file: a link would let a PR point it at a copy it controls (issue 10)
        raise SpecError("defaults.yaml is a symbolic link; it must be a regular file (links "
                        "are never followed)", path, 1, 1, "symlink")
    if not path.is_file():
        return {}
    data = load_document(path).data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError("defaults.yaml must be a mapping", path, 1, 1, "schema-type")
    return data


def runtime_from_data(data: Mapping[str, Any]) -> Runtime:
    k8s: Mapping[str, Any] = data.get("kubernetes") or {}
    local: Mapping[str, Any] = data.get("local") or {}
    storage: Mapping[str, Any] = k8s.get("storage") or {}
    secrets = tuple(
        SecretEnv(secret=item["secret"], name=item.get("name"), key=item.get("key"))
        for item in k8s.get("secret_env") or ()
    )
    base_k8s = KubernetesRuntime()
    base_local = LocalRuntime()
    security: Mapping[str, Any] = k8s.get("security") or {}
    base_security = PodSecurity()
    return Runtime(
        tracking_uri=(data.get("mlflow") or {}).get("tracking_uri"),
        kubernetes=KubernetesRuntime(
            namespace=k8s.get("namespace", base_k8s.namespace),
            image=k8s.get("image", base_k8s.image),
            gpu_resource=k8s.get("gpu_resource", base_k8s.gpu_resource),
            gpus_per_trial=k8s.get("gpus_per_trial", base_k8s.gpus_per_trial),
            cpu=k8s.get("cpu"),
            memory=k8s.get("memory"),
            service_account=k8s.get("service_account"),
            node_selector=dict(k8s.get("node_selector") or {}),
            tolerations=tuple(k8s.get("tolerations") or ()),
            storage_pvc=storage.get("pvc"),
            storage_mount_path=storage.get("mount_path", base_k8s.storage_mount_path),
            secret_env=secrets,
            queue=k8s.get("queue"),
            backoff_limit=k8s.get("backoff_limit", base_k8s.backoff_limit),
            ttl_seconds_after_finished=k8s.get("ttl_seconds_after_finished",
                                               base_k8s.ttl_seconds_after_finished),
            nodes_per_trial=k8s.get("nodes_per_trial", base_k8s.nodes_per_trial),
            shm_size=k8s.get("shm_size", base_k8s.shm_size),
            ephemeral_storage=k8s.get("ephemeral_storage", base_k8s.ephemeral_storage),
            security=PodSecurity(
                run_as_user=security.get("run_as_user", base_security.run_as_user),
                run_as_group=security.get("run_as_group", base_security.run_as_group),
                run_as_root=security.get("run_as_root", base_security.run_as_root),
                read_only_root_filesystem=security.get(
                    "read_only_root_filesystem", base_security.read_only_root_filesystem),
            ),
        ),
        local=LocalRuntime(
            tracking_uri=local.get("tracking_uri", base_local.tracking_uri),
            python=local.get("python", base_local.python),
            max_parallel=local.get("max_parallel", base_local.max_parallel),
        ),
        github_repository=(data.get("github") or {}).get("repository"),
        prune=data.get("prune", "queued"),
    )


def resolve_runtime(experiment_dir: Path, overrides: Mapping[str, Any]) -> Runtime:
    """defaults.yaml beside the experiment folders, then the experiment's ``runtime:``."""
    defaults = load_defaults(defaults_path(experiment_dir))
    return runtime_from_data(deep_merge(defaults, overrides))


_SQLITE = "sqlite:///"


def repo_root(experiment_dir: Path) -> Path:
    """The folder holding experiments/: relative paths in defaults.yaml start here."""
    return Path(experiment_dir).resolve().parent.parent


def tracking_uri(runtime: Runtime, shared: bool, root: Path,
                 env_uri: str | None = None) -> str | None:
    """The one rule every command uses to find MLflow: MLFLOW_TRACKING_URI, else the shared
    server (``mlflow.tracking_uri``) when the backend's trials log there (Kubernetes), else
    ``local.tracking_uri``.

    A relative ``sqlite:///`` path is made absolute against the repo root, so trials (run
    as child processes) and later commands open the same file whatever their cwd.
    """
    uri = env_uri or (runtime.tracking_uri if shared else runtime.local.tracking_uri)
    if uri and uri.startswith(_SQLITE) and not uri[len(_SQLITE):].startswith("/"):
        return _SQLITE + str(root / uri[len(_SQLITE):])
    return uri


def local_artifact_root(uri: str, root: Path) -> str | None:
    """Where a local SQLite store keeps artifacts: beside it under .sweepctl/, never a
    ``./mlruns`` in whatever directory a command happened to run in."""
    if not uri.startswith(_SQLITE):
        return None
    return (root / ".sweepctl" / "mlartifacts").as_uri()
