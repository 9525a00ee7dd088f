"""The Kubernetes backend: each trial is a ConfigMap plus a batch/v1 Job.

Creating a trial is create-only and idempotent: the Job first, then its ConfigMap (and a
multi-node trial's headless Service) owned by the Job, so Kubernetes' garbage collector
removes them with it (see render/kubernetes.py for why this order). A 409 on the Job
means it is already there; its ``sweepctl.io/spec-hash`` annotation says whether it is
the same work (already running; its owned objects are still ensured, so a launch that
died between the two creates is completed) or another spec under the same name (reported
as changed, never mutated: a Job's pod template is immutable, and silently replacing a
running trial would lose work). A 409 on the ConfigMap is compared by its data hash
against the Job's pod template: a ConfigMap someone else created first under the trial's
name is foreign, and the Job that would mount it is deleted at once (its pod's own start
check would refuse it anyway). A Job is immutable and stays after it failed, so a failed
trial is reported ("delete it to retry") until its TTL removes it.

``max_parallel`` is left to the cluster, never to a process that polls:
- with ``kubernetes.queue`` (Kueue), every Job carries the LocalQueue label and is
  created suspended; Kueue admits them as the queue's quota allows.
- without a queue, Jobs beyond ``max_parallel`` are created suspended. Nothing in the
  cluster resumes them, so each ``sweepctl launch`` (the merge workflow and the
  scheduled reconcile both run it) resumes suspended Jobs of the sweep while fewer
  than ``max_parallel`` are active. That is the only patch sweepctl ever sends, and it
  touches ``spec.suspend`` alone.

Observing is one paged list of sweepctl's Jobs per namespace for the whole command, not
one per experiment; the reconcile's prune lists every sweepctl Job of a namespace once
and hands that list to the observe that follows. ``cancel`` deletes Jobs with background
propagation (the garbage collector removes their pods, ConfigMap and Service; the pod's
SIGTERM makes the runner end its run KILLED). The HTTP layer (retries, status mapping) is
``clients.kube_api``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sweepctl.backends import (
    BackendSettings,
    Observed,
    Outcome,
    Progress,
    TrialResult,
    Unit,
    Work,
    trials_in_git,
)
from sweepctl.clients.kube_api import (
    KubeApi,
    KubeConflict,
    KubeForbidden,
    KubeNotFound,
    RetryPolicy,
)
from sweepctl.clients.mlflow_store import safe_uri
from sweepctl.errors import KubernetesError
from sweepctl.render.kubernetes import config_data_hash, owned_by
from sweepctl.render.labels import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_SPEC_HASH,
    LABEL_EXPERIMENT,
    LABEL_QUEUE,
    LABEL_TRIAL_ID,
    MANAGED_BY,
    MANAGED_BY_VALUE,
)

if TYPE_CHECKING:
    from sweepctl.sweep.trial import Trial
    from sweepctl.workspace import ResolvedExperiment

ACTIVE = ("pending", "running")
DONE = ("succeeded", "failed")
ALL_OURS = f"{MANAGED_BY}={MANAGED_BY_VALUE}"


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


def _condition_text(job: Mapping[str, Any]) -> str:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") == "True":
            return str(condition.get("reason") or condition.get("type") or "")
    return ""


def _observed(job: Mapping[str, Any]) -> Observed | None:
    meta = job.get("metadata") or {}
    trial_id = (meta.get("labels") or {}).get(LABEL_TRIAL_ID)
    if not trial_id:
        return None
    return Observed(trial_id=trial_id, name=meta.get("name", ""), phase=_phase(job),
                    spec_hash=(meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH),
                    detail=_condition_text(job))


def _ready(job: Mapping[str, Any]) -> bool:
    """A pod of the Job is Ready: its containers run, so its volumes were mounted."""
    return bool((job.get("status") or {}).get("ready"))


def _config_hash(job: Mapping[str, Any]) -> str | None:
    template = ((job.get("spec") or {}).get("template") or {}).get("metadata") or {}
    value = (template.get("annotations") or {}).get(ANNOTATION_CONFIG_HASH)
    return str(value) if value else None


def _same_owned(existing: Mapping[str, Any], manifest: Mapping[str, Any],
                expected_hash: str | None) -> bool:
    """An existing ConfigMap/Service is the trial's own: the data the Job's pod checks,
    the selector that picks the Job's pods."""
    if manifest.get("kind") == "ConfigMap":
        return config_data_hash(existing) == expected_hash
    return bool((existing.get("spec") or {}).get("selector") ==
                (manifest.get("spec") or {}).get("selector"))


def with_queue(job: Mapping[str, Any], queue: str | None, suspend: bool) -> dict[str, Any]:
    """The Job as created: the Kueue label when a queue is set, and ``spec.suspend``."""
    out: dict[str, Any] = json.loads(json.dumps(job))
    if queue:
        out["metadata"].setdefault("labels", {})[LABEL_QUEUE] = queue
        suspend = True  # Kueue admits (unsuspends) it when the quota allows
    if suspend:
        out["spec"]["suspend"] = True
    return out


def _namespaces(experiments: Sequence[ResolvedExperiment]) -> dict[str, set[str]]:
    """namespace -> the names of the experiments whose Jobs live there."""
    by_namespace: dict[str, set[str]] = {}
    for resolved in experiments:
        by_namespace.setdefault(resolved.runtime.kubernetes.namespace,
                                set()).add(resolved.name)
    return by_namespace


class KubernetesBackend:
    """Creates and observes sweepctl's Jobs over the official client."""

    name = "kubernetes"

    def __init__(self, configuration: Any, *, concurrency: int = 8,
                 retry: RetryPolicy | None = None, dry_run: bool = False,
                 seed: int | None = None) -> None:
        self.api = KubeApi(configuration, concurrency=concurrency, retry=retry,
                           dry_run=dry_run, seed=seed)
        self.dry_run = dry_run
        # namespace -> every sweepctl Job, listed by prune for the observe that follows
        # (taken once: a later observe lists again and sees what this command created)
        self._listed: dict[str, list[dict[str, Any]]] = {}
        # (namespace, name) -> the Job as last listed: submit completes a kept Job whose
        # owned objects a crashed launch never created (it needs the Job's uid)
        self._seen: dict[tuple[str, str], dict[str, Any]] = {}
        # (namespace, kind) -> name -> sweepctl's ConfigMaps/Services as listed once, for
        # the kept Jobs whose owned objects submit checks (a list, not a 409 per Job)
        self._owned: dict[tuple[str, str], dict[str, dict[str, Any]] | None] = {}

    @property
    def requests(self) -> int:
        return self.api.requests

    def close(self) -> None:
        self.api.close()

    # -- observing ----------------------------------------------------------------------

    def _jobs(self, namespace: str, experiments: Collection[str]) -> list[dict[str, Any]]:
        """The Jobs of these experiments in one namespace, from one paged list."""
        wanted = set(experiments)
        listed = self._listed.pop(namespace, None)
        if listed is None:
            selector = (f"{LABEL_EXPERIMENT}={next(iter(wanted))}" if len(wanted) == 1
                        else ALL_OURS)
            listed = list(self.api.list_objects(namespace, "Job", selector))
        # filter again: a server (or kmock) that ignores labelSelector must not make
        # another sweep's Jobs look like ours
        jobs = [job for job in listed
                if ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_EXPERIMENT)
                in wanted]
        for job in jobs:
            self._seen[(namespace, str((job.get("metadata") or {}).get("name")))] = job
        return jobs

    def observe_in(self, namespace: str, experiments: Collection[str]
                   ) -> dict[str, dict[str, Observed]]:
        """experiment -> trial id -> Job, for these experiments' Jobs in one namespace."""
        found: dict[str, dict[str, Observed]] = {name: {} for name in experiments}
        for job in self._jobs(namespace, experiments):
            experiment = job["metadata"]["labels"][LABEL_EXPERIMENT]
            seen = _observed(job)
            if seen is not None:
                found[experiment][seen.trial_id] = seen
        return found

    def observe(self, experiments: Sequence[ResolvedExperiment]
                ) -> dict[str, dict[str, Observed]]:
        found: dict[str, dict[str, Observed]] = {}
        for namespace, names in sorted(_namespaces(experiments).items()):
            found.update(self.observe_in(namespace, names))
        return found

    # -- stopping -------------------------------------------------------------------------

    def cancel(self, experiments: Sequence[ResolvedExperiment],
               trial_ids: Collection[str] | None = None) -> list[TrialResult]:
        """Delete the experiments' Jobs that have not ended (``trial_ids``: only those
        trials, by id or name); ended Jobs are left to their TTL."""
        results: list[TrialResult] = []
        for namespace, names in sorted(_namespaces(experiments).items()):
            for job in self._jobs(namespace, names):
                seen = _observed(job)
                if seen is None or seen.phase in DONE:
                    continue
                if trial_ids is not None and not {seen.trial_id, seen.name} & set(trial_ids):
                    continue
                results.append(self._delete(namespace, seen, Outcome.CANCELLED))
        return results

    def prune(self, experiments: Sequence[ResolvedExperiment], in_git: Collection[str],
              mode: str) -> list[TrialResult]:
        """Delete the never-started Jobs (suspended: also Kueue's queued ones) of trials
        git no longer has; report the live ones (``mode`` "all": delete them too). One
        list of every sweepctl Job per namespace, kept for the observe that follows."""
        if mode == "none":
            return []
        wanted = {r.name: trials_in_git(r) for r in experiments}
        results: list[TrialResult] = []
        for namespace in sorted(_namespaces(experiments)):
            listed = list(self.api.list_objects(namespace, "Job", ALL_OURS))
            kept = []
            for job in listed:
                result = self._prune_one(namespace, job, wanted, set(in_git), mode)
                if result is None or result.outcome == Outcome.NOT_IN_GIT:
                    kept.append(job)
                if result is not None:
                    results.append(result)
            self._listed[namespace] = kept
        return results

    def _prune_one(self, namespace: str, job: Mapping[str, Any],
                   wanted: Mapping[str, frozenset[str] | None], in_git: set[str], mode: str
                   ) -> TrialResult | None:
        experiment = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_EXPERIMENT)
        seen = _observed(job)
        if seen is None or not experiment or seen.phase in DONE:
            return None
        if experiment in wanted:
            trial_ids = wanted[experiment]
            if trial_ids is None or seen.trial_id in trial_ids:
                return None
            gone = f"trial removed from {experiment}'s sweep"
            hint = f"sweepctl cancel {experiment} --trial {seen.name}"
        elif experiment in in_git:
            return None  # in git but not loaded (refused, or not in this namespace)
        else:
            gone = f"experiment {experiment} is not in git"
            hint = f"kubectl delete job {seen.name} -n {namespace}, or prune: all"
        if seen.phase == "suspended":
            return self._delete(namespace, seen, Outcome.PRUNED, f"{gone}; never started")
        if mode == "all":
            return self._delete(namespace, seen, Outcome.CANCELLED, f"{gone}; was {seen.phase}")
        return TrialResult(seen.trial_id, seen.name, Outcome.NOT_IN_GIT,
                           f"{seen.phase}, {gone}: cancel it with {hint}")

    def _delete(self, namespace: str, seen: Observed, outcome: Outcome,
                detail: str = "") -> TrialResult:
        try:
            self.api.delete(namespace, "Job", seen.name)
        except KubernetesError as exc:
            return TrialResult(seen.trial_id, seen.name, Outcome.FAILED, str(exc.args[0]))
        done = "would be deleted (dry run)" if self.dry_run else "deleted"
        return TrialResult(seen.trial_id, seen.name, outcome,
                           f"Job {seen.name} {done}" + (f": {detail}" if detail else
                                                        f" (was {seen.phase})"))

    # -- deciding -----------------------------------------------------------------------

    def prepare(self, work: Work, trial: Trial) -> Unit:
        from sweepctl.render.kubernetes import render_trial

        resolved = work.resolved
        # rendered running: suspension is a scheduling state, not part of the spec hash
        manifests = render_trial(resolved.experiment, trial, resolved.runtime.kubernetes,
                                 git_sha=work.git_sha, pr=work.pr,
                                 spec_hash=resolved.spec_hash,
                                 parent_run_id=work.parent_run_id,
                                 tracking_uri=resolved.require_tracking_uri())
        job_hash = manifests[-1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
        return Unit(trial, job_hash, manifests)

    def judge(self, work: Work, seen: Observed, unit: Unit) -> TrialResult | None:
        trial = unit.trial
        if seen.phase == "failed":
            return TrialResult(trial.trial_id, trial.name, Outcome.FAILED,
                               f"{seen.name} failed ({seen.detail or 'Failed'}); "
                               "delete it to retry")
        if seen.phase == "succeeded":
            # a Job that succeeded while MLflow has no FINISHED run for it (deleted run, or
            # another tracking URI) cannot be re-run in place: Jobs are immutable and
            # sweepctl never deletes one on its own; say so instead of "already running"
            where = safe_uri(work.resolved.tracking_uri or "")
            return TrialResult(trial.trial_id, trial.name, Outcome.FAILED,
                               f"Job {seen.name} succeeded but MLflow at {where} has no "
                               "FINISHED run for it; delete the Job to re-run")
        if seen.spec_hash != unit.spec_hash:
            return TrialResult(trial.trial_id, trial.name, Outcome.CHANGED,
                               f"Job {seen.name} exists with spec {seen.spec_hash}, git has "
                               f"{unit.spec_hash}; left untouched (delete it to re-run)")
        return TrialResult(trial.trial_id, trial.name, Outcome.RUNNING, seen.phase)

    # -- launching ----------------------------------------------------------------------

    def submit(self, work: Work, units: Sequence[Unit], observed: Mapping[str, Observed],
               keep: Sequence[Unit], *, hold: bool, progress: Progress) -> list[TrialResult]:
        """Release suspended Jobs into free slots, then create the new trials' objects.

        Without a queue, the first free ``max_parallel`` slots go to Jobs created running;
        the rest are created suspended and resumed by a later launch (see the module doc).
        Only a kept trial's suspended Job (same spec, still in the sweep, no finished
        run) is released, and none while ``hold`` (the failure budget is spent).
        """
        runtime = work.resolved.runtime.kubernetes
        queue = runtime.queue
        slots = max(0, work.max_parallel - sum(1 for o in observed.values()
                                               if o.phase in ACTIVE))
        to_resume: list[str] = []
        if queue is None and slots and not hold:
            kept = {u.trial_id for u in keep}
            waiting = sorted(o.name for o in observed.values()
                             if o.phase == "suspended" and o.trial_id in kept)
            to_resume = waiting[:slots]
        repaired = self._complete(runtime.namespace, keep, observed, set(to_resume))
        broken = {r.name for r in repaired}
        to_resume = [name for name in to_resume if name not in broken]
        if to_resume:
            slots -= len(to_resume) - len(self.resume(runtime.namespace, to_resume))
        prepared: list[Unit] = []
        for unit in units:
            suspend = queue is None and slots <= 0
            if queue is None and not suspend:
                slots -= 1
            manifests = [with_queue(m, queue, suspend) if m.get("kind") == "Job" else dict(m)
                         for m in unit.payload]
            prepared.append(Unit(unit.trial, unit.spec_hash, manifests))
        return [*repaired, *self.apply(runtime.namespace, prepared, progress)]

    def _complete(self, namespace: str, keep: Sequence[Unit],
                  observed: Mapping[str, Observed], releasing: Collection[str]
                  ) -> list[TrialResult]:
        """Create the owned objects (ConfigMap, Service) of kept Jobs whose pods cannot
        have started without them: a launch that died between the Job and its ConfigMap
        left a pod waiting in ContainerCreating, and the re-run sees the Job and creates
        nothing else. Checked for the Jobs not yet ready and those about to be released,
        against one list of sweepctl's objects of each kind per namespace (a create only
        for what is missing); the failures, FAILED."""
        failed: list[TrialResult] = []
        for unit in keep:
            seen = observed.get(unit.trial_id)
            job = self._seen.get((namespace, unit.name))
            if seen is None or job is None or not (
                    seen.name in releasing or (seen.phase in ACTIVE and not _ready(job))):
                continue
            result = self._ensure_owned(namespace, unit, job)
            if result is not None:
                failed.append(result)
        return failed

    def _ensure_owned(self, namespace: str, unit: Unit, job: Mapping[str, Any]
                      ) -> TrialResult | None:
        *owned, _ = unit.payload
        uid = str((job.get("metadata") or {}).get("uid") or "")
        expected = _config_hash(job)
        try:
            for manifest in owned:
                kind = str(manifest["kind"])
                existing = self._existing_owned(namespace, kind, manifest["metadata"]["name"])
                if existing is not None and _same_owned(existing, manifest, expected):
                    continue
                if kind == "ConfigMap" and expected and config_data_hash(manifest) != expected:
                    # rendered for another commit or parent run than the Job's pod expects:
                    # only an existing one of the Job's own could have served
                    return self._unrecoverable(namespace, unit, "it is missing" if existing
                                               is None else "its content differs")
                foreign = self._create_owned(namespace, unit, manifest, uid, expected)
                if foreign is not None:
                    return foreign
        except KubernetesError as exc:
            return TrialResult(unit.trial_id, unit.name, Outcome.FAILED, str(exc.args[0]))
        return None

    def _existing_owned(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        """The object as listed once per namespace and kind; read alone when the Role
        may not list it (a deploy/rbac.yaml from before ConfigMaps were listed)."""
        key = (namespace, kind)
        if key not in self._owned:
            try:
                self._owned[key] = {
                    str((obj.get("metadata") or {}).get("name")): obj
                    for obj in self.api.list_objects(namespace, kind, ALL_OURS)}
            except KubeForbidden:
                self._owned[key] = None
        listed = self._owned[key]
        if listed is not None:
            return listed.get(name)
        try:
            return self.api.read(namespace, kind, name)
        except KubeNotFound:
            return None

    def _unrecoverable(self, namespace: str, unit: Unit, why: str) -> TrialResult:
        return TrialResult(unit.trial_id, unit.name, Outcome.FAILED,
                           f"Job {unit.name} cannot start: its ConfigMap cannot be rebuilt "
                           f"for it ({why}, and the Job was created at another commit); "
                           f"delete the Job (kubectl delete job {unit.name} -n {namespace}) "
                           "and launch again")

    def apply(self, namespace: str, units: Sequence[Unit], progress: Progress | None = None
              ) -> list[TrialResult]:
        """Create every trial's objects with at most ``concurrency`` requests in flight."""
        results: dict[str, TrialResult] = {}
        with ThreadPoolExecutor(max_workers=self.api.concurrency,
                                thread_name_prefix="sweepctl-kube") as pool:
            for result in pool.map(lambda u: self._apply_one(namespace, u), units):
                results[result.trial_id] = result
                if progress is not None:
                    progress(result)
        return [results[unit.trial_id] for unit in units]

    def _apply_one(self, namespace: str, unit: Unit) -> TrialResult:
        *owned, job = unit.payload
        try:
            created, verdict = self._create_job(namespace, unit, job)
            if verdict is not None and verdict.outcome == Outcome.CHANGED:
                return verdict
            uid = str((created.get("metadata") or {}).get("uid") or "")
            expected = _config_hash(created) or _config_hash(job)
            for manifest in owned:
                foreign = self._create_owned(namespace, unit, manifest, uid, expected)
                if foreign is not None:
                    return foreign
            if verdict is not None:
                return verdict
            detail = "dry run (server-side)" if self.dry_run else (
                "created (after retries)" if created.get("_retried") else "")
            return TrialResult(unit.trial_id, unit.name, Outcome.LAUNCHED, detail)
        except KubernetesError as exc:
            return TrialResult(unit.trial_id, unit.name, Outcome.FAILED, str(exc.args[0]))

    def _create_job(self, namespace: str, unit: Unit, job: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], TrialResult | None]:
        """(the Job as stored, None when it is ours and new | RUNNING | CHANGED)."""
        try:
            created, retried = self.api.create(namespace, job)
            return {**created, "_retried": retried}, None
        except KubeConflict as conflict:
            ours = conflict.retried
        existing = self.api.read(namespace, "Job", job["metadata"]["name"])
        theirs = ((existing.get("metadata") or {}).get("annotations") or {}).get(
            ANNOTATION_SPEC_HASH)
        if theirs != unit.spec_hash:
            return existing, TrialResult(
                unit.trial_id, unit.name, Outcome.CHANGED,
                f"Job {job['metadata']['name']} exists with spec {theirs}, git has "
                f"{unit.spec_hash}; left untouched (delete it to re-run)")
        if ours:  # our own create, whose answer was lost
            return {**existing, "_retried": True}, None
        return existing, TrialResult(unit.trial_id, unit.name, Outcome.RUNNING,
                                     _phase(existing))

    def _create_owned(self, namespace: str, unit: Unit, manifest: Mapping[str, Any],
                      uid: str, expected_hash: str | None) -> TrialResult | None:
        """Create a ConfigMap/Service owned by the Job; a foreign one under the trial's
        name deletes the Job and fails the trial (never mounted, never selected)."""
        kind, name = str(manifest["kind"]), manifest["metadata"]["name"]
        try:
            self.api.create(namespace, owned_by(manifest, name, uid) if uid else manifest)
            return None
        except KubeConflict:
            existing = self.api.read(namespace, kind, name)
        if _same_owned(existing, manifest, expected_hash):
            return None
        self.api.delete(namespace, "Job", name)
        return TrialResult(unit.trial_id, unit.name, Outcome.FAILED,
                           f"{kind} {name} exists and is not this trial's (its content "
                           "differs); the Job was deleted so it never mounts it; delete the "
                           f"{kind} to re-run")

    def resume(self, namespace: str, names: Sequence[str]) -> list[str]:
        """Unsuspend these Jobs (spec.suspend only); returns the names that failed."""
        failed: list[str] = []
        for name in names:
            try:
                self.api.patch_job(namespace, name, {"spec": {"suspend": False}}, "resume")
            except KubernetesError:
                failed.append(name)
        return failed


def create(settings: BackendSettings) -> KubernetesBackend:
    """The backend for a command: the given client configuration (tests, the emulator),
    else the first file of KUBECONFIG in ``settings.env``, else in-cluster, else
    ~/.kube/config."""
    from sweepctl.clients.kube_api import load_configuration

    configuration = settings.kube_configuration
    if configuration is None:
        kubeconfig = settings.env.get("KUBECONFIG")
        configuration = load_configuration(kubeconfig.split(os.pathsep)[0] if kubeconfig
                                           else None)
    return KubernetesBackend(configuration,
                             concurrency=settings.kube_concurrency,
                             retry=settings.kube_retry, dry_run=settings.dry_run)
