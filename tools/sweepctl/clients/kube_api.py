"""THE Kubernetes module: the only one that imports the official ``kubernetes`` client.

Every request goes through ``KubeApi._call``: one place that maps HTTP statuses to
sweepctl's errors (409 ``KubeConflict``, 404 ``KubeNotFound``, 401/403 ``KubeForbidden``)
and retries what is safe to retry (429, 5xx, timeouts, dropped connections) with capped
exponential backoff and full jitter. A create whose response was lost (the server stored
the object, then the connection or a 500 swallowed the answer) comes back as 409 on the
retry: ``create`` reports it as retried so the caller can recognise its own object.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepctl.errors import KubernetesError

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
LIST_PAGE = 500


class KubeConflict(KubernetesError):
    """409: the object already exists (``retried``: an earlier attempt may have made it)."""

    retried = False


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


class KubeApi:
    """sweepctl's objects over the official client; every request counted (``requests``).

    Methods take the namespace: one client serves every namespace a command touches.
    With ``dry_run`` every create is a server-side dry run and nothing is patched.
    """

    def __init__(self, configuration: Any, *, concurrency: int = 8,
                 retry: RetryPolicy | None = None, dry_run: bool = False,
                 seed: int | None = None) -> None:
        from kubernetes import client

        configuration.connection_pool_maxsize = max(concurrency, 1)
        # retries are ours (they know which statuses are safe); urllib3's would hide 409s
        configuration.retries = False
        self._client = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._client)
        self._batch = client.BatchV1Api(self._client)
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
                last = exc
                _raise_final(what, exc)
            except (Urllib3Error, OSError) as exc:  # timeouts, resets, refused connections
                last = exc
        assert last is not None
        raise KubeUnavailable(f"{what}: gave up after {self.retry.attempts} attempts: "
                              f"{_first_line(last)}") from last

    def _functions(self, kind: str) -> dict[str, Callable[..., Any]]:
        core, batch = self._core, self._batch
        table: dict[str, dict[str, Callable[..., Any]]] = {
            "ConfigMap": {"create": core.create_namespaced_config_map,
                          "read": core.read_namespaced_config_map,
                          "delete": core.delete_namespaced_config_map,
                          "list": core.list_namespaced_config_map},
            "Service": {"create": core.create_namespaced_service,
                        "read": core.read_namespaced_service,
                        "delete": core.delete_namespaced_service,
                        "list": core.list_namespaced_service},
            "Job": {"create": batch.create_namespaced_job,
                    "read": batch.read_namespaced_job,
                    "delete": batch.delete_namespaced_job,
                    "list": batch.list_namespaced_job},
        }
        if kind not in table:
            raise KubernetesError(f"sweepctl does not manage {kind} objects")
        return table[kind]

    def create(self, namespace: str, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create one object: (the stored object, retried); KubeConflict when it exists.
        A conflict after a retried attempt is usually our own create whose answer was lost:
        the caller tells by comparing the existing object (``retried`` says it may be)."""
        kind = str(manifest.get("kind"))
        name = manifest["metadata"]["name"]
        extra: dict[str, Any] = {"dry_run": "All"} if self.dry_run else {}
        retried = [False]

        def mark() -> None:
            retried[0] = True

        try:
            created = self._call(f"create {kind} {name}", self._functions(kind)["create"],
                                 namespace, manifest, on_retry=mark, **extra)
        except KubeConflict as exc:
            exc.retried = retried[0]
            raise
        return created, retried[0]

    def read(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(f"read {kind} {name}",
                                            self._functions(kind)["read"], name, namespace)
        return result

    def delete(self, namespace: str, kind: str, name: str) -> None:
        """Delete with background propagation: the Job's pods (and the objects it owns)
        are removed by the garbage collector. A missing object is not an error."""
        extra: dict[str, Any] = {"dry_run": "All"} if self.dry_run else {}
        try:
            self._call(f"delete {kind} {name}", self._functions(kind)["delete"], name,
                       namespace, propagation_policy="Background", **extra)
        except KubeNotFound:
            return

    def list_objects(self, namespace: str, kind: str, selector: str) -> Iterator[dict[str, Any]]:
        """Every object of a kind matching the label selector, page by page."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": selector, "limit": LIST_PAGE}
            if token:
                kwargs["_continue"] = token
            page = self._call(f"list {kind}s ({selector})", self._functions(kind)["list"],
                              namespace, **kwargs)
            yield from page.get("items") or ()
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def patch_job(self, namespace: str, name: str, body: Mapping[str, Any],
                  what: str = "patch") -> None:
        if not self.dry_run:
            self._call(f"{what} Job {name}", self._batch.patch_namespaced_job, name,
                       namespace, body)

    def patch_config_map(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        if not self.dry_run:
            self._call(f"patch ConfigMap {name}", self._core.patch_namespaced_config_map,
                       name, namespace, body)


def _raise_final(what: str, exc: Any) -> None:
    """Raise the error a non-retryable status means; return for the retryable ones."""
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


def _reason(exc: Any) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason or "")[:300]
    except (ValueError, TypeError):
        return str(exc.reason or "")


