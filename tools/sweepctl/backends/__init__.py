"""Where trials run: one ``Backend`` protocol, one registry by name.

``launch`` and ``status`` (and ``cancel``) are written once against the protocol and
never branch on a backend's name. What differs between backends lives in the backend:
how an experiment's trials are observed, how a trial is prepared (rendered), what an
existing Job or process means (``judge``: a failed Job is immutable and stays, a failed
local trial is simply retried), how prepared trials are started (``submit``), how they
are stopped (``cancel``) and how the work git no longer has is cleaned up (``prune``).

A new backend (Slurm, SkyPilot) is one module with a ``create(settings)`` factory plus
one entry in ``REGISTRY``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sweepctl.errors import UsageError

if TYPE_CHECKING:
    from sweepctl.sweep.trial import Trial
    from sweepctl.workspace import ResolvedExperiment


class Outcome(StrEnum):
    LAUNCHED = "launched"          # created now (or would be, with --dry-run)
    REUSED = "reused"              # a FINISHED MLflow run has this trial id: nothing to do
    RUNNING = "already running"    # a Job / process for this trial already exists
    CHANGED = "changed"            # a Job with this name exists with another spec: not touched
    FAILED = "failed"              # could not be launched (or, locally, the trial failed)
    HELD = "held"                  # not started: budget.max_failed_trials already reached
    GAVE_UP = "gave up"            # not relaunched: budget.max_attempts_per_trial spent
    CANCELLED = "cancelled"        # stopped by `sweepctl cancel` (Job deleted, process signalled)
    PRUNED = "pruned"              # a Job that never started, of a trial git no longer has
    NOT_IN_GIT = "running, not in git"  # a live trial git no longer has: prune only reports it


@dataclass(frozen=True)
class TrialResult:
    trial_id: str
    name: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Observed:
    """A trial the backend already knows about (a Job, or a local process/log)."""

    trial_id: str
    name: str
    phase: str          # pending | suspended | running | succeeded | failed
    spec_hash: str | None = None
    detail: str = ""


Progress = Callable[[TrialResult], None]


@dataclass(frozen=True)
class Work:
    """One experiment's launch as a backend sees it: the resolved experiment plus what
    this launch records on every trial."""

    resolved: ResolvedExperiment
    git_sha: str | None = None
    pr: str | None = None
    parent_run_id: str | None = None
    # told the trial name when a backend starts a trial it then waits for (a local
    # process): a log shows when it started, not only when it ended
    on_start: Callable[[str], None] | None = field(default=None, compare=False)

    @property
    def max_parallel(self) -> int:
        declared = self.resolved.experiment.sweep.get("max_parallel")
        return int(declared or len(self.resolved.trials) or 1)


@dataclass(frozen=True)
class Unit:
    """A trial prepared for its backend: what ``submit`` starts and ``judge`` compares."""

    trial: Trial
    spec_hash: str | None
    payload: Any   # the backend's own: rendered manifests, or a local trial's files

    @property
    def trial_id(self) -> str:
        return self.trial.trial_id

    @property
    def name(self) -> str:
        return self.trial.name


@dataclass(frozen=True)
class BackendSettings:
    """What a command hands a backend when it opens one (the CLI builds it)."""

    dry_run: bool = False
    state_dir: Path = Path(".sweepctl")
    env: Mapping[str, str] = field(default_factory=dict)   # the local trials' environment
    kube_configuration: Any = None   # from clients.kube_api.load_configuration
    kube_concurrency: int = 8
    kube_retry: Any = None           # clients.kube_api.RetryPolicy


class Backend(Protocol):
    name: str

    def observe(self, experiments: Sequence[ResolvedExperiment]
                ) -> dict[str, dict[str, Observed]]:
        """experiment name -> trial id -> what the backend has, for all of them at once
        (one list of sweepctl's Jobs per namespace, not one per experiment)."""
        ...

    def prepare(self, work: Work, trial: Trial) -> Unit:
        """The trial rendered for this backend (nothing is sent)."""
        ...

    def judge(self, work: Work, seen: Observed, unit: Unit) -> TrialResult | None:
        """What an existing Job/process of the trial means; None: (re)start the trial."""
        ...

    def submit(self, work: Work, units: Sequence[Unit], observed: Mapping[str, Observed],
               keep: Sequence[Unit], *, hold: bool, progress: Progress) -> list[TrialResult]:
        """Start ``units``. ``keep`` are trials the backend already has and that are still
        git's work (a suspended one may be released into a free slot unless ``hold``:
        the failure budget is spent)."""
        ...

    def cancel(self, experiments: Sequence[ResolvedExperiment],
               trial_ids: Collection[str] | None = None) -> list[TrialResult]:
        """Stop these experiments' queued and running trials (``trial_ids``: only those):
        one CANCELLED result per trial stopped; the runner ends its run KILLED."""
        ...

    def prune(self, experiments: Sequence[ResolvedExperiment], in_git: Collection[str],
              mode: str) -> list[TrialResult]:
        """The reconcile's clean-up, for the namespaces/state of ``experiments``: trials
        of experiments not in ``in_git`` (names), or no longer in their sweep, that never
        started are deleted (PRUNED; ``mode`` "none": nothing); running ones are reported
        (NOT_IN_GIT), or stopped too with ``mode`` "all" (CANCELLED)."""
        ...

    def close(self) -> None: ...


def trials_in_git(resolved: ResolvedExperiment) -> frozenset[str] | None:
    """The trial ids git asks for, for prune; None: any trial of the experiment may be
    git's (tpe proposes later rounds from MLflow at launch time: its queued trials are
    not in the expansion, and must not look removed)."""
    if resolved.experiment.sweep.get("strategy") == "tpe":
        return None
    return frozenset(resolved.trial_ids)


@dataclass(frozen=True)
class BackendInfo:
    module: str
    shared_tracking: bool   # its trials log to the shared MLflow server (not the local store)


REGISTRY: dict[str, BackendInfo] = {
    "kubernetes": BackendInfo("sweepctl.backends.kubernetes", shared_tracking=True),
    "local": BackendInfo("sweepctl.backends.local", shared_tracking=False),
}
BACKENDS = tuple(REGISTRY)


def info(name: str) -> BackendInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r} (one of {', '.join(BACKENDS)})") from None


def open_backend(name: str, settings: BackendSettings) -> Backend:
    module = importlib.import_module(info(name).module)
    backend: Backend = module.create(settings)
    return backend


def default_backend(env: Mapping[str, str]) -> str:
    """Where trials run when no --backend is given: SWEEPCTL_BACKEND, else kubernetes when
    the environment names a cluster (KUBECONFIG, or running in-cluster), else local."""
    chosen = env.get("SWEEPCTL_BACKEND")
    if chosen in REGISTRY:
        return chosen
    return "kubernetes" if env.get("KUBECONFIG") or env.get("KUBERNETES_SERVICE_HOST") else "local"
