"""Per trial, a ConfigMap and a batch/v1 Job (plus a headless Service for a multi-node
trial) as plain dicts (design.md "Kubernetes", "Trial lifecycle on a cluster").

No value from a YAML file ever reaches a shell: the container's command is a fixed argv
list, the train config, the runner's metadata and the runner itself travel as ConfigMap
data, and secrets are referenced by name only. Runtime values that Kubernetes treats as
identifiers (namespace, secret and env names, queue, node selector) are checked and
rejected when invalid, because silently rewriting them would point at a different object.

Pods are hardened by default (they pass the Pod Security ``restricted`` profile): a
non-root uid, no privilege escalation, no capabilities, RuntimeDefault seccomp, no service
account token, a read-only root with /tmp (also HOME) and /dev/shm as emptyDirs.
``kubernetes.security.run_as_root`` relaxes only the user (``baseline`` still holds).

ConfigMaps cannot be swapped: they are ``immutable``, carry the sha256 of their data
(``sweepctl.io/config-hash``, see ``config_data_hash``), and the pod template carries the
same hash. The container starts with a fixed check that hashes the mounted files and
exits with ``EXIT_BAD_CONFIG`` (failing the Job at once through its podFailurePolicy)
when they are not the rendered ones, so a ConfigMap someone created first under the
trial's name never runs, whatever the order objects were created in.

Creation order (the backend's job): the Job first, then the ConfigMap and the Service
passed through ``owned_by`` with the created Job's uid. An ownerReference needs the
owner's uid, which exists only once the Job does; in return Kubernetes' garbage
collector deletes the ConfigMap and Service with their Job (its TTL, cancel, prune), so
nothing is left behind. Until the ConfigMap exists the pod waits in ContainerCreating
(the kubelet retries the mount), which is harmless. ``blockOwnerDeletion`` is left unset:
setting it needs the ``jobs/finalizers`` update permission, which launch does not have.

Failure semantics (issue 11): a pod disruption (preemption, drain, eviction: condition
DisruptionTarget) is retried without counting against ``backoffLimit``; the runner's
bad-config exit code fails the Job at once; anything else is retried ``backoffLimit``
times. podFailurePolicy requires ``restartPolicy: Never``, which every pod has.

Multi-node (``nodes_per_trial > 1``): an Indexed Job (one pod per node, all at once) and
a headless Service named like the Job. Indexed pods get the hostname
``<job>-<index>`` and ``subdomain: <service>``, so ``MASTER_ADDR=<job>-0.<service>``
resolves to the index-0 pod (``publishNotReadyAddresses``: before it is Ready). NODE_RANK
comes from the pod's completion-index annotation. With a Kueue queue the Job is ONE
Workload with one podset of ``parallelism`` pods: Kueue reserves quota for all of them
or none. sweepctl never sets ``kueue.x-k8s.io/job-min-parallelism`` (partial admission
would start a torchrun that can never rendezvous); that all pods are also *scheduled*
together is Kueue's ``waitForPodsReady`` (a cluster setting, see the README).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import yaml

from sweepctl.render.identifiers import (
    ABSOLUTE_PATH,
    DNS_1035,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    IMAGE,
    LABEL_VALUE,
    QUANTITY,
    check,
    env_literal,
    label_key,
    plain_tracking_uri,
    tolerations,
    whole_number,
)
from sweepctl.render.identifiers import RenderError as RenderError  # callers catch it here
from sweepctl.render.identifiers import label_value as label_value
from sweepctl.render.labels import (
    ANNOTATION_COMPLETION_INDEX,
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_EXPERIMENT_SPEC,
    ANNOTATION_GIT_SHA,
    ANNOTATION_PR,
    ANNOTATION_TRIAL,
    LABEL_EXPERIMENT,
    LABEL_JOB_NAME,
    LABEL_QUEUE,
    LABEL_TRIAL_ID,
    MANAGED_BY,
    MANAGED_BY_VALUE,
)

# re-exported until launch.py imports it from render.labels (the lead's move, issue 9)
from sweepctl.render.labels import ANNOTATION_SPEC_HASH as ANNOTATION_SPEC_HASH
from sweepctl.render.trainconfig import runner_meta, train_config
from sweepctl.runtime import KubernetesRuntime
from sweepctl.spec.model import Experiment
from sweepctl.sweep.trial import Trial

CONFIG_MOUNT = "/etc/sweepctl"
TRAIN_FILE = "train.yaml"
META_FILE = "meta.json"
RUNNER_FILE = "trial_runner.py"
# CONTRACT with runner/trial_runner.py (which repeats the number): exit code for a bad
# config, so the podFailurePolicy fails the Job at once instead of burning retries
EXIT_BAD_CONFIG = 78  # EX_CONFIG of sysexits.h
CONTAINER = "trainer"
CONFIG_HASH_ENV = "SWEEPCTL_CONFIG_HASH"
# Hashes the mounted files as config_data_hash does and execs the runner only when they
# are the rendered ones (ConfigMap files are the data's UTF-8 bytes). Fixed text: no
# value of a YAML file is in it; the paths come as argv.
VERIFY_AND_RUN = "\n".join([
    "import hashlib, json, os, sys",
    "folder, names = sys.argv[1], sys.argv[2:]",
    "data = {}",
    "for name in names:",
    "    with open(os.path.join(folder, name), 'rb') as handle:",
    "        data[name] = handle.read().decode('utf-8')",
    "text = json.dumps(data, sort_keys=True, ensure_ascii=True, separators=(',', ':'))",
    f"if hashlib.sha256(text.encode()).hexdigest() != os.environ.get('{CONFIG_HASH_ENV}'):",
    "    sys.stderr.write('sweepctl: the mounted ConfigMap is not the one this Job was '",
    "                     'rendered with; refusing to run it\\n')",
    f"    sys.exit({EXIT_BAD_CONFIG})",
    "paths = [os.path.join(folder, name) for name in names]",
    "os.execv(sys.executable, [sys.executable, paths[0], '--config', paths[1],",
    "                          '--meta', paths[2]])",
])
COMMAND = ["python", "-c", VERIFY_AND_RUN, CONFIG_MOUNT, RUNNER_FILE, TRAIN_FILE, META_FILE]
MASTER_PORT = 29500  # torchrun's default rendezvous port
DISTRIBUTED_ENV = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
HOME = "/tmp"  # an emptyDir: the root filesystem is read-only and the uid has no home
# the estimate in budget.hours_per_trial is a guess: the deadline only stops runaways
DEADLINE_FACTOR = 1.5
DEADLINE_MIN_SECONDS = 1800

def _secret_env(runtime: KubernetesRuntime, reserved: set[str]) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    env: list[dict[str, Any]] = []
    env_from: list[dict[str, Any]] = []
    for secret in runtime.secret_env:
        name = check(DNS_SUBDOMAIN, secret.secret, "secret name")
        if secret.name is None:
            # explicit env wins over envFrom, so a Secret's keys cannot shadow sweepctl's
            env_from.append({"secretRef": {"name": name}})
            continue
        var = check(ENV_NAME, secret.name, "env var name")
        if var in reserved:  # the last duplicate wins: it would replace sweepctl's value
            raise RenderError(f"kubernetes.secret_env must not set {var}: sweepctl sets it")
        key = check(re.compile(r"^[-._A-Za-z0-9]{1,253}$"), secret.key or secret.name,
                     "secret key")
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}})
    return env, env_from


def _distributed_env(runtime: KubernetesRuntime, job_name: str,
                     service: str | None) -> list[dict[str, Any]]:
    """CONTRACT with the runner: it reads exactly these and starts torchrun (LLaMA-Factory's
    FORCE_TORCHRUN) when NPROC_PER_NODE > 1 or NNODES > 1."""
    gpus = runtime.gpus_per_trial
    if service is None:
        return [{"name": "NPROC_PER_NODE", "value": str(gpus)}] if gpus > 1 else []
    index = f"metadata.annotations['{ANNOTATION_COMPLETION_INDEX}']"
    return [
        {"name": "NPROC_PER_NODE", "value": str(max(gpus, 1))},
        {"name": "NNODES", "value": str(runtime.nodes_per_trial)},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": index}}},
        {"name": "MASTER_ADDR", "value": f"{job_name}-0.{service}"},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
    ]


def _env(runtime: KubernetesRuntime, tracking_uri: str, job_name: str,
         service: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    config_hash = f"metadata.annotations['{ANNOTATION_CONFIG_HASH}']"
    env: list[dict[str, Any]] = [
        {"name": "MLFLOW_TRACKING_URI", "value": env_literal(plain_tracking_uri(tracking_uri))},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "HOME", "value": HOME},
        {"name": CONFIG_HASH_ENV, "valueFrom": {"fieldRef": {"fieldPath": config_hash}}},
        *_distributed_env(runtime, job_name, service),
    ]
    # the runner's distributed contract is reserved on one node too: a Secret's NNODES
    # would turn a single pod into a rendezvous that never completes
    reserved = {item["name"] for item in env} | set(DISTRIBUTED_ENV)
    secret_env, env_from = _secret_env(runtime, reserved)
    return env + secret_env, env_from


def _resources(runtime: KubernetesRuntime) -> dict[str, Any]:
    gpu = label_key(runtime.gpu_resource)
    gpus = whole_number(runtime.gpus_per_trial, "kubernetes.gpus_per_trial", 0)
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if gpus:
        limits[gpu] = str(gpus)
    for name, value in (("cpu", runtime.cpu), ("memory", runtime.memory),
                        ("ephemeral-storage", runtime.ephemeral_storage)):
        if value is not None:
            key = name.replace("-", "_")
            limits[name] = requests[name] = check(QUANTITY, str(value), f"kubernetes.{key}")
    spec: dict[str, Any] = {}
    if limits:
        spec["limits"] = limits
    if requests:
        spec["requests"] = requests
    return spec


def _security_contexts(runtime: KubernetesRuntime) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) securityContext: Pod Security ``restricted`` unless run_as_root."""
    security = runtime.security
    seccomp = {"type": "RuntimeDefault"}
    pod: dict[str, Any] = {"seccompProfile": dict(seccomp)}
    box: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": bool(security.read_only_root_filesystem),
        "seccompProfile": dict(seccomp),
    }
    if not security.run_as_root:
        uid = whole_number(security.run_as_user, "kubernetes.security.run_as_user", 1)
        gid = whole_number(security.run_as_group, "kubernetes.security.run_as_group", 0)
        # fsGroup makes the claim writable for the uid; OnRootMismatch skips the recursive
        # chown of a large shared volume on every pod start once its root is right
        pod.update({"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid,
                    "fsGroup": gid, "fsGroupChangePolicy": "OnRootMismatch"})
        box.update({"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid})
    return pod, box


def deadline_seconds(hours_per_trial: float) -> int:
    return max(DEADLINE_MIN_SECONDS, math.ceil(hours_per_trial * 3600 * DEADLINE_FACTOR))


def output_dir(runtime: KubernetesRuntime, experiment: Experiment, trial: Trial) -> str:
    # the experiment name passed its schema; sanitized anyway, as it becomes a path
    return f"{runtime.storage_mount_path.rstrip('/')}/{label_value(experiment.name)}/{trial.name}"


def runner_source() -> str:
    return resources.files("sweepctl.runner").joinpath(RUNNER_FILE).read_text(encoding="utf-8")


def spec_hash_of(job_spec: Mapping[str, Any], train_yaml: str,
                 service_spec: Mapping[str, Any] | None = None) -> str:
    """What launch compares: the Job's spec (without the config hash, which follows the
    commit metadata in meta.json), the Service's and the trial's config."""
    work: dict[str, Any] = {"job": job_spec, "train": train_yaml}
    if service_spec is not None:
        work["service"] = service_spec
    canonical = json.dumps(work, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_data_hash(configmap: Mapping[str, Any]) -> str:
    """sha256 of a ConfigMap's data, as the pod's start check computes it over the mounted
    files. The backend compares it on a 409 to tell its own ConfigMap from a foreign one."""
    payload: dict[str, Any] = dict(configmap.get("data") or {})
    if configmap.get("binaryData"):
        payload["/binaryData"] = configmap["binaryData"]  # "/" is never in a ConfigMap key
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def owned_by(obj: Mapping[str, Any], job_name: str, job_uid: str) -> dict[str, Any]:
    """``obj`` (the trial's ConfigMap or Service) owned by its created Job, so Kubernetes'
    garbage collector deletes it with the Job. A copy: the rendered object is unchanged."""
    if obj["metadata"]["name"] != job_name:
        raise RenderError(f"{obj['metadata']['name']!r} does not belong to Job {job_name!r}")
    owned: dict[str, Any] = json.loads(json.dumps(obj))
    owned["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid}]
    return owned


def _train_yaml(config: Mapping[str, Any]) -> str:
    """The config as LLaMA-Factory will read it back. PyYAML's emitter with allow_unicode
    writes NEL (U+0085) raw inside a quoted scalar, where its reader folds it into a space:
    the trial would train on another value than its id names. Escaped output is exact."""
    text = yaml.safe_dump(dict(config), sort_keys=True, allow_unicode=True)
    if yaml.safe_load(text) != config:
        text = yaml.safe_dump(dict(config), sort_keys=True, allow_unicode=False)
    return text


def _volumes(runtime: KubernetesRuntime, name: str, mount_path: str) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the config, the storage, a writable /tmp and a large /dev/shm
    (PyTorch's data loader workers pass batches through it; the runtime's default is
    64Mi). A memory-backed emptyDir counts against the container's memory limit."""
    shm = check(QUANTITY, str(runtime.shm_size), "kubernetes.shm_size")
    storage: dict[str, Any] = {"name": "storage", "emptyDir": {}}
    if runtime.storage_pvc:
        claim = check(DNS_SUBDOMAIN, runtime.storage_pvc, "kubernetes.storage.pvc")
        storage = {"name": "storage", "persistentVolumeClaim": {"claimName": claim}}
    volumes: list[dict[str, Any]] = [
        {"name": "sweepctl", "configMap": {"name": name}},
        storage,
        {"name": "tmp", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "sweepctl", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "storage", "mountPath": mount_path},
        {"name": "tmp", "mountPath": HOME},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    return volumes, mounts


def _mount_path(runtime: KubernetesRuntime) -> str:
    mount_path = check(ABSOLUTE_PATH, runtime.storage_mount_path, "kubernetes.storage.mount_path")
    taken = (CONFIG_MOUNT, HOME, "/dev/shm", "/dev", "/")
    if mount_path.rstrip("/") in taken or "/../" in f"{mount_path}/":
        raise RenderError(f"kubernetes.storage.mount_path {mount_path!r} is not allowed")
    return mount_path


def _pod_spec(runtime: KubernetesRuntime, name: str, tracking_uri: str,
              service: str | None) -> dict[str, Any]:
    volumes, mounts = _volumes(runtime, name, _mount_path(runtime))
    env, env_from = _env(runtime, tracking_uri, name, service)
    pod_security, container_security = _security_contexts(runtime)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": check(IMAGE, runtime.image, "kubernetes.image"),
        "command": list(COMMAND),
        "env": env,
        "volumeMounts": mounts,
        "securityContext": container_security,
    }
    if env_from:
        container["envFrom"] = env_from
    container_resources = _resources(runtime)
    if container_resources:
        container["resources"] = container_resources
    pod_spec: dict[str, Any] = {
        # podFailurePolicy requires Never: the Job, not the kubelet, decides on retries
        "restartPolicy": "Never",
        # the trainer calls no Kubernetes API: a mounted token would only be a credential
        # for code from a model repository to steal
        "automountServiceAccountToken": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if service is not None:
        pod_spec["subdomain"] = service
    if runtime.service_account:
        pod_spec["serviceAccountName"] = check(DNS_SUBDOMAIN, runtime.service_account,
                                                "kubernetes.service_account")
    if runtime.node_selector:
        pod_spec["nodeSelector"] = {
            label_key(key): check(LABEL_VALUE, value, "node selector value")
            for key, value in runtime.node_selector.items()}
    if runtime.tolerations:
        pod_spec["tolerations"] = tolerations(runtime.tolerations)
    return pod_spec


def _failure_policy() -> dict[str, Any]:
    # first match wins: a disrupted pod is retried whatever its exit code was
    return {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                              "values": [EXIT_BAD_CONFIG]}},
    ]}


def _job_spec(experiment: Experiment, runtime: KubernetesRuntime, labels: Mapping[str, str],
              pod_spec: dict[str, Any]) -> dict[str, Any]:
    nodes = whole_number(runtime.nodes_per_trial, "kubernetes.nodes_per_trial", 1)
    spec: dict[str, Any] = {
        "backoffLimit": whole_number(runtime.backoff_limit, "kubernetes.backoff_limit", 0),
        "activeDeadlineSeconds": deadline_seconds(experiment.budget.hours_per_trial),
        "ttlSecondsAfterFinished": runtime.ttl_seconds_after_finished,
        "podFailurePolicy": _failure_policy(),
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if nodes > 1:
        # every node's pod at once; the Job succeeds when every index has succeeded
        spec.update({"completionMode": "Indexed", "completions": nodes, "parallelism": nodes})
    return spec


def _service(name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The headless Service that gives each Indexed pod the DNS name <job>-<index>.<name>."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"clusterIP": "None",
                     "selector": {LABEL_JOB_NAME: name},
                     # the index-0 pod must resolve before it is Ready: torchrun's
                     # rendezvous is what makes the pods start training at all
                     "publishNotReadyAddresses": True,
                     "ports": [{"name": "rendezvous", "port": MASTER_PORT,
                                "targetPort": MASTER_PORT, "protocol": "TCP"}]}}


def _multi_node_service(runtime: KubernetesRuntime, name: str) -> str | None:
    """The Service name for a multi-node trial (its Job's name), None for one node."""
    nodes = whole_number(runtime.nodes_per_trial, "kubernetes.nodes_per_trial", 1)
    if nodes == 1:
        return None
    # a Service name is an RFC 1035 label, and each pod's hostname <job>-<index> must stay
    # a DNS label, or MASTER_ADDR would name no pod
    if not DNS_1035.match(name) or len(f"{name}-{nodes - 1}") > 63:
        raise RenderError(f"trial name {name!r} is too long or starts with a digit for a "
                          f"{nodes}-node trial; shorten the experiment name")
    return name


def _configmap(name: str, namespace: str, labels: Mapping[str, str], train_yaml: str,
               meta: Mapping[str, Any], annotations: Mapping[str, str]) -> dict[str, Any]:
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                     "annotations": dict(annotations)},
        # immutable: the API server refuses any change of data, so what the pods mount
        # is what launch created (and kubelets stop watching it)
        "immutable": True,
        "data": {
            TRAIN_FILE: train_yaml,
            META_FILE: json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
            RUNNER_FILE: runner_source(),
        },
    }
    config_map["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] = config_data_hash(config_map)
    return config_map


def _annotations(trial: Trial, spec_hash: str, git_sha: str | None, pr: int | str | None,
                 experiment_spec: str | None) -> dict[str, str]:
    annotations = {ANNOTATION_TRIAL: trial.name, ANNOTATION_SPEC_HASH: spec_hash}
    if git_sha:
        annotations[ANNOTATION_GIT_SHA] = git_sha
    if pr is not None and str(pr):
        annotations[ANNOTATION_PR] = str(pr)
    if experiment_spec:
        annotations[ANNOTATION_EXPERIMENT_SPEC] = experiment_spec
    return annotations


def render_trial(experiment: Experiment, trial: Trial, runtime: KubernetesRuntime, *,
                 git_sha: str | None, pr: int | str | None, spec_hash: str | None,
                 parent_run_id: str | None, tracking_uri: str,
                 suspend: bool = False) -> list[dict[str, Any]]:
    """[ConfigMap, Job], or [ConfigMap, Service, Job] for a multi-node trial. ``suspend``
    creates the Job held back (queue-less ``max_parallel``: a later launch releases it);
    a Kueue queue implies it."""
    name = check(DNS_LABEL, trial.name, "trial name")
    namespace = check(DNS_LABEL, runtime.namespace, "kubernetes.namespace")
    labels = {MANAGED_BY: MANAGED_BY_VALUE, LABEL_EXPERIMENT: label_value(experiment.name),
              LABEL_TRIAL_ID: label_value(trial.trial_id)}
    service_name = _multi_node_service(runtime, name)
    train_yaml = _train_yaml(train_config(trial, output_dir(runtime, experiment, trial)))
    job_spec = _job_spec(experiment, runtime, labels,
                         _pod_spec(runtime, name, tracking_uri, service_name))
    service = None if service_name is None else _service(service_name, namespace, labels)
    # suspension is a scheduling state (Kueue or launch release the Job), not part of the hash
    annotations = _annotations(
        trial, spec_hash_of(job_spec, train_yaml, service and service["spec"]), git_sha, pr,
        spec_hash)
    # where the adapter can be found from outside the pod: the claim and the path in it
    inside = output_dir(runtime, experiment, trial)[len(runtime.storage_mount_path.rstrip("/")):]
    output_uri = f"pvc://{runtime.storage_pvc}{inside}" if runtime.storage_pvc else None
    meta = runner_meta(experiment, trial, git_sha=git_sha, pr=pr,
                       parent_run_id=parent_run_id, spec_hash=spec_hash, output_uri=output_uri)
    config_map = _configmap(name, namespace, labels, train_yaml, meta, annotations)
    # after the spec hash: the config hash follows meta.json's commit metadata
    job_spec["template"]["metadata"]["annotations"] = {
        ANNOTATION_CONFIG_HASH: config_map["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]}
    if suspend or runtime.queue:
        job_spec["suspend"] = True
    job_labels = dict(labels)
    if runtime.queue:  # Kueue reads the queue from the Job's own labels
        job_labels[LABEL_QUEUE] = check(DNS_LABEL, runtime.queue, "kubernetes.queue")
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": namespace, "labels": job_labels,
                        "annotations": annotations},
           "spec": job_spec}
    return [config_map, job] if service is None else [config_map, service, job]


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
