"""Per trial, a ConfigMap and a batch/v1 Job as plain dicts (design.md "Kubernetes").

No value from a YAML file ever reaches a shell: the container's command is a fixed argv
list, the train config, the runner's metadata and the runner itself travel as ConfigMap
data, and secrets are referenced by name only. Runtime values that Kubernetes treats as
identifiers (namespace, secret and env names, queue, node selector) are checked and
rejected when invalid, because silently rewriting them would point at a different object.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml

from sweepctl.errors import SweepctlError
from sweepctl.render.trainconfig import runner_meta, train_config
from sweepctl.runtime import KubernetesRuntime
from sweepctl.spec.model import Experiment
from sweepctl.sweep.trial import Trial

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_EXPERIMENT = "sweepctl.io/experiment"
LABEL_TRIAL_ID = "sweepctl.io/trial-id"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
ANNOTATION_GIT_SHA = "sweepctl.io/git-sha"
ANNOTATION_PR = "sweepctl.io/pr"
ANNOTATION_SPEC_HASH = "sweepctl.io/spec-hash"          # hash of the rendered Job (launch)
ANNOTATION_EXPERIMENT_SPEC = "sweepctl.io/experiment-spec-hash"
ANNOTATION_TRIAL = "sweepctl.io/trial"

CONFIG_MOUNT = "/etc/sweepctl"
TRAIN_FILE = "train.yaml"
META_FILE = "meta.json"
RUNNER_FILE = "trial_runner.py"
COMMAND = ["python", f"{CONFIG_MOUNT}/{RUNNER_FILE}",
           "--config", f"{CONFIG_MOUNT}/{TRAIN_FILE}", "--meta", f"{CONFIG_MOUNT}/{META_FILE}"]
# the estimate in budget.hours_per_trial is a guess: the deadline only stops runaways
DEADLINE_FACTOR = 1.5
DEADLINE_MIN_SECONDS = 1800

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,510}$")  # registries cap names near 255
_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_TOLERATION_KEYS = {"key": str, "operator": str, "value": str, "effect": str,
                    "tolerationSeconds": int}


class RenderError(SweepctlError):
    """A runtime setting cannot become a valid Kubernetes object."""


def label_value(value: str) -> str:
    """A valid label value for ``value``: itself when valid, else a readable prefix + hash."""
    if _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:50].strip("-_.")
    return f"{readable}-{digest}" if readable else digest


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise RenderError(f"{what} {str(value)[:80]!r} is not valid for Kubernetes")
    return value


def _label_key(key: object) -> str:
    text = str(key)
    prefix, _, name = text.rpartition("/")
    if (prefix and not _DNS_SUBDOMAIN.match(prefix)) or not _LABEL_NAME.match(name):
        raise RenderError(f"label key {text[:80]!r} is not valid for Kubernetes")
    return text


def _tolerations(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for item in items:
        if not isinstance(item, Mapping):
            raise RenderError("each kubernetes.tolerations entry must be a mapping")
        toleration: dict[str, Any] = {}
        for key, value in item.items():
            kind = _TOLERATION_KEYS.get(key)
            if kind is None or isinstance(value, bool) or not isinstance(value, kind):
                raise RenderError(f"toleration field {str(key)[:40]!r} is unknown or mistyped")
            toleration[key] = value
        # the API server checks these as a label key and value; fail here, at render time
        if "key" in toleration:
            _label_key(toleration["key"])
        if "value" in toleration:
            _check(_LABEL_VALUE, toleration["value"], "toleration value")
        result.append(toleration)
    return result


def _literal(value: str) -> str:
    """An env value Kubernetes passes as is: it expands ``$(VAR)`` (which could copy a
    secret into another variable) and reads ``$$`` as ``$``."""
    return value.replace("$", "$$")


def _tracking_uri(uri: str) -> str:
    # a password in the URI would land in the Job's spec for anyone who can read Jobs
    try:
        password = urlsplit(uri).password
    except ValueError as exc:
        raise RenderError(f"the MLflow tracking URI {uri[:80]!r} is not a valid URI") from exc
    if password is not None:
        raise RenderError("the MLflow tracking URI must not carry credentials; reference "
                          "MLFLOW_TRACKING_PASSWORD or a token through kubernetes.secret_env")
    return uri


def _env(runtime: KubernetesRuntime, tracking_uri: str) -> tuple[list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
    env: list[dict[str, Any]] = [
        {"name": "MLFLOW_TRACKING_URI", "value": _literal(_tracking_uri(tracking_uri))},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    env_from: list[dict[str, Any]] = []
    for secret in runtime.secret_env:
        name = _check(_DNS_SUBDOMAIN, secret.secret, "secret name")
        if secret.name is None:
            env_from.append({"secretRef": {"name": name}})
            continue
        var = _check(_ENV_NAME, secret.name, "env var name")
        key = _check(re.compile(r"^[-._A-Za-z0-9]{1,253}$"), secret.key or secret.name,
                     "secret key")
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}})
    return env, env_from


def _resources(runtime: KubernetesRuntime) -> dict[str, Any]:
    gpu = _label_key(runtime.gpu_resource)
    if isinstance(runtime.gpus_per_trial, bool) or not isinstance(runtime.gpus_per_trial, int) \
            or runtime.gpus_per_trial < 0:
        raise RenderError("kubernetes.gpus_per_trial must be a whole number >= 0")
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if runtime.gpus_per_trial:
        limits[gpu] = str(runtime.gpus_per_trial)
    for name, value in (("cpu", runtime.cpu), ("memory", runtime.memory)):
        if value is not None:
            limits[name] = requests[name] = _check(_QUANTITY, str(value), f"kubernetes.{name}")
    spec: dict[str, Any] = {}
    if limits:
        spec["limits"] = limits
    if requests:
        spec["requests"] = requests
    return spec


def deadline_seconds(hours_per_trial: float) -> int:
    return max(DEADLINE_MIN_SECONDS, math.ceil(hours_per_trial * 3600 * DEADLINE_FACTOR))


def output_dir(runtime: KubernetesRuntime, experiment: Experiment, trial: Trial) -> str:
    # the experiment name passed its schema; sanitized anyway, as it becomes a path
    return f"{runtime.storage_mount_path.rstrip('/')}/{label_value(experiment.name)}/{trial.name}"


def runner_source() -> str:
    return resources.files("sweepctl.runner").joinpath(RUNNER_FILE).read_text(encoding="utf-8")


def spec_hash_of(job_spec: Mapping[str, Any], train_yaml: str) -> str:
    """What launch compares: the Job's spec and the trial's config, not commit metadata."""
    canonical = json.dumps({"job": job_spec, "train": train_yaml}, sort_keys=True,
                           ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _train_yaml(config: Mapping[str, Any]) -> str:
    """The config as LLaMA-Factory will read it back. PyYAML's emitter with allow_unicode
    writes NEL (U+0085) raw inside a quoted scalar, where its reader folds it into a space:
    the trial would train on another value than its id names. Escaped output is exact."""
    text = yaml.safe_dump(dict(config), sort_keys=True, allow_unicode=True)
    if yaml.safe_load(text) != config:
        text = yaml.safe_dump(dict(config), sort_keys=True, allow_unicode=False)
    return text


def render_trial(experiment: Experiment, trial: Trial, runtime: KubernetesRuntime, *,
                 git_sha: str | None, pr: int | str | None, spec_hash: str | None,
                 parent_run_id: str | None, tracking_uri: str,
                 suspend: bool = False) -> list[dict[str, Any]]:
    """[ConfigMap, Job] for one trial. ``suspend`` creates the Job held back (queue-less
    ``max_parallel``: the cluster's queue releases it); a Kueue queue implies it."""
    name = _check(_DNS_LABEL, trial.name, "trial name")
    namespace = _check(_DNS_LABEL, runtime.namespace, "kubernetes.namespace")
    image = _check(_IMAGE, runtime.image, "kubernetes.image")
    mount_path = _check(_PATH, runtime.storage_mount_path, "kubernetes.storage.mount_path")
    if mount_path == CONFIG_MOUNT or "/../" in f"{mount_path}/":
        raise RenderError(f"kubernetes.storage.mount_path {mount_path!r} is not allowed")

    labels = {
        MANAGED_BY: "sweepctl",
        LABEL_EXPERIMENT: label_value(experiment.name),
        LABEL_TRIAL_ID: label_value(trial.trial_id),
    }
    job_labels = dict(labels)
    if runtime.queue:  # Kueue reads the queue from the Job's own labels
        job_labels[LABEL_QUEUE] = _check(_DNS_LABEL, runtime.queue, "kubernetes.queue")

    train_yaml = _train_yaml(train_config(trial, output_dir(runtime, experiment, trial)))
    meta = runner_meta(experiment, trial, git_sha=git_sha, pr=pr,
                       parent_run_id=parent_run_id, spec_hash=spec_hash)
    env, env_from = _env(runtime, tracking_uri)
    container: dict[str, Any] = {
        "name": "trainer",
        "image": image,
        "command": list(COMMAND),
        "env": env,
        "volumeMounts": [
            {"name": "sweepctl", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "storage", "mountPath": mount_path},
        ],
    }
    if env_from:
        container["envFrom"] = env_from
    container_resources = _resources(runtime)
    if container_resources:
        container["resources"] = container_resources

    storage: dict[str, Any] = {"name": "storage", "emptyDir": {}}
    if runtime.storage_pvc:
        claim = _check(_DNS_SUBDOMAIN, runtime.storage_pvc, "kubernetes.storage.pvc")
        storage = {"name": "storage", "persistentVolumeClaim": {"claimName": claim}}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "sweepctl", "configMap": {"name": name}}, storage],
    }
    if runtime.service_account:
        pod_spec["serviceAccountName"] = _check(_DNS_SUBDOMAIN, runtime.service_account,
                                                "kubernetes.service_account")
    if runtime.node_selector:
        pod_spec["nodeSelector"] = {
            _label_key(key): _check(_LABEL_VALUE, value, "node selector value")
            for key, value in runtime.node_selector.items()}
    if runtime.tolerations:
        pod_spec["tolerations"] = _tolerations(runtime.tolerations)

    job_spec: dict[str, Any] = {
        "backoffLimit": runtime.backoff_limit,
        "activeDeadlineSeconds": deadline_seconds(experiment.budget.hours_per_trial),
        "ttlSecondsAfterFinished": runtime.ttl_seconds_after_finished,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    # suspension is a scheduling state (Kueue or launch release the Job), not part of the hash
    annotations = {ANNOTATION_TRIAL: trial.name,
                   ANNOTATION_SPEC_HASH: spec_hash_of(job_spec, train_yaml)}
    if suspend or runtime.queue:
        job_spec["suspend"] = True
    if git_sha:
        annotations[ANNOTATION_GIT_SHA] = git_sha
    if pr is not None and str(pr):
        annotations[ANNOTATION_PR] = str(pr)
    if spec_hash:
        annotations[ANNOTATION_EXPERIMENT_SPEC] = spec_hash
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": dict(annotations)},
        "data": {
            TRAIN_FILE: train_yaml,
            META_FILE: json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
            RUNNER_FILE: runner_source(),
        },
    }
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": namespace, "labels": job_labels,
                        "annotations": annotations},
           "spec": job_spec}
    return [config_map, job]


class _StreamDumper(yaml.SafeDumper):
    """Multi-line strings (the runner, the train YAML) as readable block scalars."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &id001 anchors: every object reads on its own


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML itself falls back to a quoted style when a block scalar cannot hold the
    # text exactly (trailing spaces, control characters), so this never changes data
    # ...except for NEL (U+0085): a line break to the reader, which the block and
    # single-quoted emitters keep raw. Double quotes escape it (\N) and read back exactly.
    style: str | None = '"' if "\x85" in value else "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_StreamDumper.add_representer(str, _represent_str)


def render_stream(objects: Iterable[Mapping[str, Any]]) -> str:
    """A YAML stream ``kubectl apply -f -`` accepts; each object starts with ``---``."""
    return yaml.dump_all([dict(obj) for obj in objects], Dumper=_StreamDumper,
                         explicit_start=True, sort_keys=False, allow_unicode=True, width=4096)
