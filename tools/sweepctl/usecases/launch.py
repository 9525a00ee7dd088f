"""`sweepctl launch`: reconcile what git asks for with what MLflow and the backend have.

Per experiment: refuse it when it is invalid or its checklist is incomplete; a trial with
a FINISHED MLflow run (by trial id, in any MLflow experiment the command reads) is
reused; one the backend already has (a Job, a local process) is judged by the backend;
exactly the rest is launched. The decision is recomputed from the live systems on every
run, so re-running after a failure, or two runs racing, never starts a trial twice (the
backend's create is the last guard: a Job name is unique, a local trial is claimed with
an flock its runner inherits).

The whole command reads MLflow through one run index per tracking store and observes the
backend once, whatever the number of experiments; it is written once against the
``Backend`` protocol and never asks which backend it talks to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sweepctl.backends import (
    Backend,
    BackendSettings,
    Observed,
    Outcome,
    TrialResult,
    Unit,
    Work,
    info,
    open_backend,
)
from sweepctl.clients import mlflow_store
from sweepctl.errors import SweepctlError
from sweepctl.runindex import RunIndex
from sweepctl.runtime import local_artifact_root
from sweepctl.usecases.adaptive import next_round
from sweepctl.workspace import ResolvedExperiment, Workspace

__all__ = ["LaunchOptions", "LaunchReport", "changed_since", "launch"]
EXPERIMENT_FILES = ("experiment.yaml", "baseline.yaml", "sweep.yaml", "checklist.yaml")
# what exit 1 names: trials git asks for that neither run nor finished
NOT_LAUNCHED = (Outcome.FAILED, Outcome.CHANGED, Outcome.HELD, Outcome.GAVE_UP)


class LaunchProgress(Protocol):
    def start(self, experiment: str, total: int) -> None: ...
    def started(self, trial: str) -> None: ...
    def advance(self, result: TrialResult) -> None: ...


@dataclass(frozen=True)
class LaunchOptions:
    backend: str = "local"
    dry_run: bool = False
    tracking_uri: str | None = None        # MLFLOW_TRACKING_URI, when set
    git_sha: str | None = None
    pr: str | None = None
    kube_configuration: Any = None         # from clients.kube_api.load_configuration
    kube_concurrency: int = 8
    kube_retry: Any = None                 # clients.kube_api.RetryPolicy
    state_dir: Path = Path(".sweepctl")
    env: Mapping[str, str] = field(default_factory=dict)   # the local children's environment
    # a full reconcile (every experiment of the checkout): clean up the work git no longer
    # has (defaults.yaml `prune:`); never on a partial launch, which did not look at it all
    prune: bool = False

    def settings(self) -> BackendSettings:
        return BackendSettings(dry_run=self.dry_run, state_dir=self.state_dir, env=self.env,
                               kube_configuration=self.kube_configuration,
                               kube_concurrency=self.kube_concurrency,
                               kube_retry=self.kube_retry)


@dataclass
class ExperimentLaunch:
    name: str
    path: Path
    refused: list[str] = field(default_factory=list)
    results: list[TrialResult] = field(default_factory=list)
    parent_run_id: str | None = None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)


@dataclass
class LaunchReport:
    backend: str
    dry_run: bool
    experiments: list[ExperimentLaunch] = field(default_factory=list)
    mlflow_requests: int = 0
    backend_requests: int = 0
    index_notes: list[str] = field(default_factory=list)  # how the run index was read
    pruned: list[TrialResult] = field(default_factory=list)  # prune's deletions and reports

    @property
    def not_launched(self) -> list[TrialResult]:
        return [r for e in self.experiments for r in e.results
                if r.outcome in NOT_LAUNCHED]

    @property
    def refused(self) -> list[ExperimentLaunch]:
        return [e for e in self.experiments if e.refused]

    @property
    def ok(self) -> bool:
        return not self.not_launched and not self.refused


def changed_since(folders: Sequence[Path], rev: str) -> list[Path]:
    """The folders whose experiment files (or defaults.yaml) differ from ``rev``."""
    from sweepctl.clients import gitrepo

    if not folders:
        return []
    repo = gitrepo.open_repo(folders[0])

    def differs(path: Path) -> bool:
        now = path.read_bytes() if path.is_file() else None
        return gitrepo.read_file_at(repo, rev, gitrepo.repo_relative(repo, path)) != now

    defaults_changed: dict[Path, bool] = {}  # one defaults.yaml serves many folders
    changed = []
    for folder in folders:
        defaults = folder.parent / "defaults.yaml"
        if defaults not in defaults_changed:
            defaults_changed[defaults] = differs(defaults)
        # notes.md is not listed: notes never change the work
        if defaults_changed[defaults] or any(differs(folder / name)
                                             for name in EXPERIMENT_FILES):
            changed.append(folder)
    return changed


# -- one experiment's reconcile (pure decisions over what was observed) -------------------

@dataclass
class _Decision:
    decided: list[TrialResult] = field(default_factory=list)
    pending: list[Unit] = field(default_factory=list)     # to start
    keep: list[Unit] = field(default_factory=list)        # already there, still git's work


def _decide(work: Work, backend: Backend, index: RunIndex,
            observed: Mapping[str, Observed]) -> _Decision:
    decision = _Decision()
    finished = index.finished_of(work.resolved.trial_ids)
    for trial in work.resolved.trials:
        if trial.trial_id in finished:
            decision.decided.append(TrialResult(trial.trial_id, trial.name, Outcome.REUSED,
                                                f"run {finished[trial.trial_id].run_id}"))
            continue
        seen = observed.get(trial.trial_id)
        gave_up = _gave_up(work, index, trial.trial_id, trial.name, seen)
        if gave_up is not None:
            decision.decided.append(gave_up)
            continue
        unit = backend.prepare(work, trial)
        verdict = backend.judge(work, seen, unit) if seen is not None else None
        if verdict is None:
            decision.pending.append(unit)
        else:
            decision.decided.append(verdict)
            if verdict.outcome == Outcome.RUNNING:
                decision.keep.append(unit)
    return decision


def attempts_of(index: RunIndex, trial_id: str, seen: Observed | None) -> int:
    """How many times the trial was started: its runs' ``sweepctl.attempt`` tags summed,
    and at least one when its Job or process is there, failed (a pod that died before
    the runner started its MLflow run leaves no run behind). The larger of the two, not
    the sum: a failed Job whose runner logged its run is one attempt, not two."""
    runs = index.get(trial_id)
    counted = runs.attempts if runs is not None else 0
    return max(counted, 1) if seen is not None and seen.phase == "failed" else counted


def _gave_up(work: Work, index: RunIndex, trial_id: str, name: str,
             seen: Observed | None) -> TrialResult | None:
    """A trial (no FINISHED run) that used budget.max_attempts_per_trial and that nothing
    runs now is not started again: without this a failed Job would be re-created each
    time its TTL removed it, spending GPUs on the same failure forever. A live Job or
    process is left to the backend's judgement (its attempt is still under way)."""
    limit = work.resolved.experiment.budget.max_attempts_per_trial
    if seen is not None and seen.phase != "failed":
        return None
    attempts = attempts_of(index, trial_id, seen)
    if attempts < limit:
        return None
    return TrialResult(trial_id, name, Outcome.GAVE_UP,
                       f"{attempts} attempt(s) without a FINISHED run and "
                       f"budget.max_attempts_per_trial is {limit}; fix the cause, then raise "
                       "the budget to try again")


def _failed(work: Work, index: RunIndex, observed: Mapping[str, Observed],
            decision: _Decision) -> set[str]:
    """Trials that failed and did not finish since: their latest run, their Job/process,
    or the backend's verdict says so."""
    ids = set(work.resolved.trial_ids)
    failed = set(index.failed_ids(ids))
    failed |= {tid for tid, seen in observed.items() if seen.phase == "failed" and tid in ids}
    failed |= {r.trial_id for r in decision.decided if r.outcome == Outcome.FAILED}
    return failed - set(index.finished_of(ids))


def _hold_over_failure_budget(work: Work, failed: set[str], decision: _Decision) -> bool:
    """The seed's budget includes failures: once budget.max_failed_trials trials have
    failed, trials that never ran are held (a failing setup would fail them too); only
    retries of the failed ones, which a human asks for, still go. True: budget spent."""
    budget = work.resolved.experiment.budget.max_failed_trials
    if len(failed) < max(1, budget):
        return False
    detail = (f"{len(failed)} trial(s) failed and budget.max_failed_trials is {budget}; "
              "held until the failed trials succeed on a re-run (or raise the budget)")
    decision.decided += [TrialResult(u.trial_id, u.name, Outcome.HELD, detail)
                         for u in decision.pending if u.trial_id not in failed]
    decision.pending = [u for u in decision.pending if u.trial_id in failed]
    return True


def reconcile(work: Work, backend: Backend, index: RunIndex,
              observed: Mapping[str, Observed],
              advance: Callable[[TrialResult], None]) -> list[TrialResult]:
    """Launch exactly the trials that have neither a FINISHED run nor a live Job/process."""
    decision = _decide(work, backend, index, observed)
    hold = _hold_over_failure_budget(work, _failed(work, index, observed, decision), decision)
    for result in decision.decided:
        advance(result)
    launched = backend.submit(work, decision.pending, observed, decision.keep, hold=hold,
                              progress=advance)
    by_id = {r.trial_id: r for r in [*decision.decided, *launched]}
    return [by_id[t.trial_id] for t in work.resolved.trials if t.trial_id in by_id]


# -- the command ----------------------------------------------------------------------------

def _parent_run(workspace: Workspace, resolved: ResolvedExperiment, index: RunIndex,
                options: LaunchOptions) -> str | None:
    """The sweep's parent run: found in the index, created when missing (never in a dry
    run, which changes nothing anywhere, MLflow included)."""
    experiment = resolved.experiment
    found = index.parent(experiment.mlflow_experiment, resolved.name)
    if found is not None:
        return found
    if options.dry_run:
        return None
    store = workspace.store(resolved.require_tracking_uri())
    experiment_id = index.experiment_ids.get(experiment.mlflow_experiment) or (
        store.ensure_experiment(experiment.mlflow_experiment,
                                local_artifact_root(store.tracking_uri, resolved.root)))
    index.experiment_ids[experiment.mlflow_experiment] = experiment_id
    tags = {mlflow_store.TAG_SPEC_HASH: resolved.spec_hash, "phase": experiment.phase}
    if options.git_sha:
        tags[mlflow_store.TAG_GIT_SHA] = options.git_sha
        tags["mlflow.source.git.commit"] = options.git_sha
    if options.pr:
        tags[mlflow_store.TAG_PR] = options.pr
    run_id = store.create_parent_run(experiment_id, experiment.name, tags)
    index.parents[index.key(experiment.mlflow_experiment, resolved.name)] = run_id
    return str(run_id)


def _load(workspace: Workspace, folders: Sequence[Path], report: LaunchReport
          ) -> list[tuple[ExperimentLaunch, ResolvedExperiment]]:
    ready = []
    for folder in folders:
        entry = ExperimentLaunch(folder.name, folder)
        report.experiments.append(entry)
        experiment, reasons = workspace.load_for_launch(folder)
        if experiment is None:
            entry.refused = reasons
            continue
        entry.name = experiment.name
        try:
            resolved = workspace.resolve(experiment)
            resolved.require_tracking_uri()
        except SweepctlError as exc:
            entry.refused = [str(exc)]
            continue
        ready.append((entry, resolved))
    return ready


def _indexes(workspace: Workspace, ready: Sequence[tuple[ExperimentLaunch, ResolvedExperiment]]
             ) -> dict[str, RunIndex | str]:
    """One index per tracking store; an unreachable store refuses its experiments only."""
    found: dict[str, RunIndex | str] = {}
    for _, resolved in ready:
        uri = resolved.require_tracking_uri()
        if uri not in found:
            try:
                found[uri] = workspace.run_index(uri, with_parents=True)
            except SweepctlError as exc:
                found[uri] = str(exc)
    return found


def launch(folders: Sequence[Path], options: LaunchOptions,
           progress: LaunchProgress | None = None,
           workspace: Workspace | None = None) -> LaunchReport:
    backend_info = info(options.backend)
    workspace = workspace or Workspace(shared_tracking=backend_info.shared_tracking,
                                       env_tracking_uri=options.tracking_uri)
    report = LaunchReport(options.backend, options.dry_run)
    ready = _load(workspace, folders, report)
    if not ready:
        return report
    try:
        backend = open_backend(options.backend, options.settings())
    except SweepctlError as exc:
        for entry, _ in ready:
            entry.refused = [str(exc)]
        return report
    try:
        _launch_ready(workspace, backend, ready, options, progress, report)
    finally:
        report.backend_requests = int(getattr(backend, "requests", 0))
        report.mlflow_requests = workspace.mlflow_requests
        report.index_notes = list(workspace.index_notes)
        backend.close()
    return report


def _prune(workspace: Workspace, backend: Backend,
           loaded: Sequence[ResolvedExperiment]) -> list[TrialResult]:
    """The reconcile's clean-up (before observing, which reuses prune's Job list): an
    experiment is in git when its folder is in the checkout, loaded or not (a refused
    one keeps its Jobs)."""
    from sweepctl.runtime import Runtime

    dirs = {resolved.path.parent for resolved in loaded}
    in_git = {p.name for d in dirs for p in d.iterdir() if p.is_dir()}
    modes = {workspace.defaults(d)[0].get("prune") or Runtime().prune for d in sorted(dirs)}
    mode = "none" if "none" in modes else ("queued" if "queued" in modes else "all")
    return backend.prune(loaded, in_git, mode)


def _launch_ready(workspace: Workspace, backend: Backend,
                  ready: Sequence[tuple[ExperimentLaunch, ResolvedExperiment]],
                  options: LaunchOptions, progress: LaunchProgress | None,
                  report: LaunchReport | None = None) -> None:
    indexes = _indexes(workspace, ready)
    try:
        if options.prune and report is not None:
            report.pruned = _prune(workspace, backend, [r for _, r in ready])
        observed = backend.observe([r for _, r in ready])
    except SweepctlError as exc:
        for entry, _ in ready:
            entry.refused = [str(exc)]
        return
    advance: Callable[[TrialResult], None] = (progress.advance if progress is not None
                                              else lambda result: None)
    for entry, resolved in ready:
        index = indexes[resolved.require_tracking_uri()]
        if isinstance(index, str):
            entry.refused = [index]
            continue
        try:
            entry.parent_run_id = _parent_run(workspace, resolved, index, options)
            # tpe: this launch's round (the trials proposed so far plus the next batch; a
            # kept index's records of them are read again from MLflow first)
            resolved = next_round(resolved, index, observed.get(resolved.name, {}))
        except SweepctlError as exc:
            entry.refused = [str(exc)]
            continue
        if progress is not None:
            progress.start(resolved.name, len(resolved.trials))
        work = Work(resolved, git_sha=options.git_sha, pr=options.pr,
                    parent_run_id=entry.parent_run_id,
                    on_start=progress.started if progress is not None else None)
        entry.results = reconcile(work, backend, index, observed.get(resolved.name, {}),
                                  advance)
