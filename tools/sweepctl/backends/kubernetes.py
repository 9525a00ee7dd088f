"""THE Kubernetes module: the only one that imports the official ``kubernetes`` client.

Creating a trial is create-only and idempotent: ConfigMap, then Job. A 409 means the
object is already there; its ``sweepctl.io/spec-hash`` annotation says whether it is
the same work (already running) or another spec under the same name (reported as
changed, never mutated: a Job's pod template is immutable, and silently replacing a
running trial would lose work). 429, 5xx and timeouts are retried with capped
exponential backoff and full jitter. A create whose response was lost (the server
stored the object, then the connection or a 500 swallowed the answer) comes back as
409 on the retry: that is recognised as our own create, not as a duplicate.

``max_parallel`` is left to the cluster, never to a process that polls:
- with ``kubernetes.queue`` (Kueue), every Job carries the LocalQueue label and is
  created suspended; Kueue admits them as the queue's quota allows.
- without a queue, Jobs beyond ``max_parallel`` are created suspended. Nothing in the
  cluster resumes them, so each ``sweepctl launch`` (the merge workflow and the
  scheduled reconcile both run it) resumes suspended Jobs of the sweep while fewer
  than ``max_parallel`` are active. That is the only patch sweepctl ever sends, and it
  touches ``spec.suspend`` alone.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepctl.backends import Observed, Outcome, Progress, TrialResult
from sweepctl.errors import KubernetesError

LABEL_EXPERIMENT = "sweepctl.io/experiment"
LABEL_TRIAL_ID = "sweepctl.io/trial-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_SPEC_HASH = "sweepctl.io/spec-hash"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
LIST_PAGE = 500


class KubeConflict(KubernetesError):
    """409: the object already exists."""


class KubeNotFound(KubernetesError):
    """404: no such object (or resource)."""


class KubeForbidden(KubernetesError):
    """401/403: the credentials or the RBAC Role do not allow it."""


class KubeUnavailable(KubernetesError):
    """429, 5xx, a timeout or a dropped connection, still failing after every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.25      # seconds; doubles per attempt
    max_delay: float = 8.0        # the cap
    timeout: float = 30.0         # per request (connect and read)

    def delay(self, attempt: int, rng: random.Random) -> float:
        # full jitter: concurrent launchers hitting the same overloaded API spread out
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * (2 ** attempt)))


@dataclass(frozen=True)
class TrialObjects:
    """One trial's rendered objects, in creation order (ConfigMap, then Job)."""

    trial_id: str
    name: str
    spec_hash: str
    manifests: Sequence[Mapping[str, Any]]


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A client Configuration from a kubeconfig path, else in-cluster, else ~/.kube/config."""
    try:
        from kubernetes import config
        from kubernetes.client import Configuration
    except ImportError as exc:  # pragma: no cover - the full extra is missing
        raise KubernetesError("the kubernetes client is not installed "
                              "(pip install 'sweepctl[full]')") from exc
    configuration = Configuration()
    try:
        if kubeconfig is None and _in_cluster():
            kube_config: Any = config  # the loaders are untyped
            kube_config.load_incluster_config(client_configuration=configuration)
        else:
            kube_config = config
            kube_config.load_kube_config(config_file=kubeconfig, context=context,
                                         client_configuration=configuration)
    except Exception as exc:
        raise KubernetesError(f"cannot load the kube config ({kubeconfig or 'default'}): "
                              f"{_first_line(exc)}") from exc
    return configuration


def configuration_for_host(host: str) -> Any:
    """A Configuration for an API server without auth (tests, a local proxy)."""
    from kubernetes.client import Configuration

    configuration = Configuration(host=host)
    return configuration


def _in_cluster() -> bool:
    return Path("/var/run/secrets/kubernetes.io/serviceaccount/token").is_file()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _phase(job: Mapping[str, Any]) -> str:
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("status") == "True" and condition.get("type") in ("Complete",
                                                                            "SuccessCriteriaMet"):
            return "succeeded"
        if condition.get("status") == "True" and condition.get("type") in ("Failed",
                                                                            "FailureTarget"):
            return "failed"
    if spec.get("suspend"):
        return "suspended"
    if status.get("active"):
        return "running"
    return "pending"


class KubernetesBackend:
    """Creates and observes one namespace's sweepctl Jobs over the official client."""

    name = "kubernetes"

    def __init__(self, configuration: Any, namespace: str, *, concurrency: int = 8,
                 retry: RetryPolicy | None = None, dry_run: bool = False,
                 seed: int | None = None) -> None:
        from kubernetes import client

        configuration.connection_pool_maxsize = max(concurrency, 1)
        # retries are ours (they know which statuses are safe); urllib3's would hide 409s
        configuration.retries = False
        self._client = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._client)
        self._batch = client.BatchV1Api(self._client)
        self.namespace = namespace
        self.concurrency = max(concurrency, 1)
        self.retry = retry or RetryPolicy()
        self.dry_run = dry_run
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.requests = 0  # sent, retries included (the benchmark reports it)
        self._count_lock = threading.Lock()

    def close(self) -> None:
        api: Any = self._client
        api.close()

    # -- the HTTP layer: one place for status mapping and retries ---------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              on_retry: Callable[[], None] | None = None, **kwargs: Any) -> Any:
        """Call ``fn`` and return its decoded JSON body, retrying what is safe to retry."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        kwargs.setdefault("_preload_content", False)
        kwargs.setdefault("_request_timeout", self.retry.timeout)
        last: BaseException | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                if on_retry is not None:
                    on_retry()
                with self._rng_lock:
                    pause = self.retry.delay(attempt - 1, self._rng)
                time.sleep(pause)
            with self._count_lock:
                self.requests += 1
            try:
                response = fn(*args, **kwargs)
                data = response.data
                return json.loads(data) if data else {}
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == 409:
                    raise KubeConflict(f"{what}: already exists") from exc
                if status == 404:
                    raise KubeNotFound(f"{what}: not found") from exc
                if status in (401, 403):
                    raise KubeForbidden(f"{what}: forbidden ({status}); "
                                        "see deploy/rbac.yaml for the Role launch needs") from exc
                if status not in RETRYABLE_STATUSES and status != 0:
                    raise KubernetesError(f"{what}: HTTP {status} {_reason(exc)}") from exc
                last = exc
            except (Urllib3Error, OSError) as exc:  # timeouts, resets, refused connections
                last = exc
        assert last is not None
        raise KubeUnavailable(f"{what}: gave up after {self.retry.attempts} attempts: "
                              f"{_first_line(last)}") from last

    def _create(self, manifest: Mapping[str, Any]) -> tuple[bool, bool]:
        """Create one object: (created, retried). A 409 after a retried attempt is ours."""
        kind = manifest.get("kind")
        name = manifest["metadata"]["name"]
        extra: dict[str, Any] = {"dry_run": "All"} if self.dry_run else {}
        retried = [False]

        def mark() -> None:
            retried[0] = True

        if kind == "ConfigMap":
            fn: Callable[..., Any] = self._core.create_namespaced_config_map
        elif kind == "Job":
            fn = self._batch.create_namespaced_job
        else:
            raise KubernetesError(f"{name}: sweepctl does not create {kind} objects")
        try:
            self._call(f"create {kind} {name}", fn, self.namespace, manifest, on_retry=mark,
                       **extra)
        except KubeConflict:
            return False, retried[0]
        return True, retried[0]

    def _read(self, kind: str, name: str) -> dict[str, Any]:
        fn = (self._core.read_namespaced_config_map if kind == "ConfigMap"
              else self._batch.read_namespaced_job)
        result: dict[str, Any] = self._call(f"read {kind} {name}", fn, name, self.namespace)
        return result

    # -- observing ----------------------------------------------------------------------------

    def _list(self, experiment: str) -> Iterator[dict[str, Any]]:
        selector = f"{LABEL_EXPERIMENT}={experiment}"
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": selector, "limit": LIST_PAGE}
            if token:
                kwargs["_continue"] = token
            page = self._call(f"list Jobs of {experiment}", self._batch.list_namespaced_job,
                              self.namespace, **kwargs)
            for item in page.get("items") or ():
                labels = (item.get("metadata") or {}).get("labels") or {}
                # filter again: a server (or kmock) that ignores labelSelector must not
                # make another sweep's Jobs look like ours
                if labels.get(LABEL_EXPERIMENT) == experiment:
                    yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def observe(self, experiment: str) -> dict[str, Observed]:
        """trial id -> its Job, for every Job of this sweep in the namespace."""
        found: dict[str, Observed] = {}
        for job in self._list(experiment):
            meta = job.get("metadata") or {}
            trial_id = (meta.get("labels") or {}).get(LABEL_TRIAL_ID)
            if not trial_id:
                continue
            found[trial_id] = Observed(
                trial_id=trial_id, name=meta.get("name", ""), phase=_phase(job),
                spec_hash=(meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH),
                detail=_condition_text(job))
        return found

    # -- launching ----------------------------------------------------------------------------

    def _apply_one(self, unit: TrialObjects) -> TrialResult:
        try:
            retried_any = False
            created_job = False
            for manifest in unit.manifests:
                created, retried = self._create(manifest)
                retried_any = retried_any or retried
                if created:
                    created_job = created_job or manifest.get("kind") == "Job"
                    continue
                existing = self._read(str(manifest["kind"]), manifest["metadata"]["name"])
                theirs = ((existing.get("metadata") or {}).get("annotations") or {}).get(
                    ANNOTATION_SPEC_HASH)
                if theirs != unit.spec_hash:
                    return TrialResult(unit.trial_id, unit.name, Outcome.CHANGED,
                                       f"{manifest['kind']} {manifest['metadata']['name']} "
                                       f"exists with spec {theirs}, git has {unit.spec_hash}; "
                                       "left untouched (delete it to re-run)")
                if manifest.get("kind") == "Job":
                    if retried:  # our own create, whose response was lost
                        created_job = True
                    else:
                        return TrialResult(unit.trial_id, unit.name, Outcome.RUNNING,
                                           _phase(existing))
            detail = "dry run (server-side)" if self.dry_run else ""
            if created_job and retried_any and not detail:
                detail = "created (after retries)"
            return TrialResult(unit.trial_id, unit.name, Outcome.LAUNCHED, detail)
        except KubernetesError as exc:
            return TrialResult(unit.trial_id, unit.name, Outcome.FAILED, str(exc.args[0]))

    def apply(self, units: Sequence[TrialObjects], progress: Progress | None = None
              ) -> list[TrialResult]:
        """Create every trial's objects with at most ``concurrency`` requests in flight."""
        results: dict[str, TrialResult] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="sweepctl-kube") as pool:
            for result in pool.map(self._apply_one, units):
                results[result.trial_id] = result
                if progress is not None:
                    progress(result)
        return [results[unit.trial_id] for unit in units]

    def resume(self, names: Sequence[str]) -> list[str]:
        """Unsuspend these Jobs (spec.suspend only); returns the names that failed."""
        failed: list[str] = []
        for name in names:
            try:
                if not self.dry_run:
                    self._call(f"resume Job {name}", self._batch.patch_namespaced_job, name,
                               self.namespace, {"spec": {"suspend": False}})
            except KubernetesError:
                failed.append(name)
        return failed


def _reason(exc: Any) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason or "")[:300]
    except (ValueError, TypeError):
        return str(exc.reason or "")


def _condition_text(job: Mapping[str, Any]) -> str:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") == "True":
            return str(condition.get("reason") or condition.get("type") or "")
    return ""


def with_queue(job: Mapping[str, Any], queue: str | None, suspend: bool) -> dict[str, Any]:
    """The Job as created: the Kueue label when a queue is set, and ``spec.suspend``."""
    out: dict[str, Any] = json.loads(json.dumps(job))
    if queue:
        out["metadata"].setdefault("labels", {})[KUEUE_QUEUE_LABEL] = queue
        suspend = True  # Kueue admits (unsuspends) it when the quota allows
    if suspend:
        out["spec"]["suspend"] = True
    return out


def launch_units(backend: KubernetesBackend, units: Sequence[TrialObjects],
                 observed: Mapping[str, Observed], max_parallel: int, queue: str | None,
                 progress: Progress | None = None,
                 resumable: Collection[str] | None = None) -> list[TrialResult]:
    """Release suspended Jobs into free slots, then create the new trials' objects.

    Without a queue, the first free ``max_parallel`` slots go to Jobs created running;
    the rest are created suspended and resumed by a later launch (see the module doc).
    ``resumable`` names the trial ids whose suspended Jobs are still git's work (same
    spec, no finished run); None releases any.
    """
    slots = max(0, max_parallel - sum(1 for o in observed.values()
                                      if o.phase in ("pending", "running")))
    if queue is None and slots:
        waiting = sorted(o.name for o in observed.values() if o.phase == "suspended"
                         and (resumable is None or o.trial_id in resumable))
        to_resume = waiting[:slots]
        failed = set(backend.resume(to_resume))
        slots -= len(to_resume) - len(failed)
    prepared: list[TrialObjects] = []
    for unit in units:
        suspend = queue is None and slots <= 0
        if queue is None and not suspend:
            slots -= 1
        manifests = [with_queue(m, queue, suspend) if m.get("kind") == "Job" else dict(m)
                     for m in unit.manifests]
        prepared.append(TrialObjects(unit.trial_id, unit.name, unit.spec_hash, manifests))
    return backend.apply(prepared, progress)
