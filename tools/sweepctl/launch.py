"""`sweepctl launch`: reconcile what git asks for with what MLflow and the backend have.

Per experiment: refuse it when it is invalid or its checklist is incomplete; expand its
trials; a trial with a FINISHED MLflow run (by trial id) is reused; one the backend
already has (a Job, a local process) is left alone; exactly the rest is launched. The
decision is recomputed from the live systems on every run, so re-running after a
failure, or two runs racing, never starts a trial twice (the backend's create is the
last guard: a Job name is unique, a local trial is claimed with an flock its runner inherits).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sweepctl import mlflow_store
from sweepctl.backends import Observed, Outcome, TrialResult
from sweepctl.errors import SweepctlError, UsageError
from sweepctl.findings import Findings, render_text
from sweepctl.runtime import BACKENDS, Runtime, repo_root, resolve_runtime, tracking_uri
from sweepctl.spec.model import CHECKLIST_ITEMS, Experiment
from sweepctl.sweep.identity import canonical_json
from sweepctl.sweep.trial import Trial

__all__ = ["BACKENDS", "LaunchOptions", "LaunchReport", "changed_since", "launch"]
EXPERIMENT_FILES = ("experiment.yaml", "baseline.yaml", "sweep.yaml", "checklist.yaml")


class LaunchProgress(Protocol):
    def start(self, experiment: str, total: int) -> None: ...
    def advance(self, result: TrialResult) -> None: ...


@dataclass(frozen=True)
class LaunchOptions:
    backend: str = "local"
    dry_run: bool = False
    tracking_uri: str | None = None        # MLFLOW_TRACKING_URI, when set
    git_sha: str | None = None
    pr: str | None = None
    kube_configuration: Any = None         # from backends.kubernetes.load_configuration
    kube_concurrency: int = 8
    kube_retry: Any = None                 # backends.kubernetes.RetryPolicy
    state_dir: Path = Path(".sweepctl")
    env: Mapping[str, str] = field(default_factory=dict)   # the local children's environment


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

    @property
    def not_launched(self) -> list[TrialResult]:
        return [r for e in self.experiments for r in e.results
                if r.outcome in (Outcome.FAILED, Outcome.CHANGED, Outcome.HELD)]

    @property
    def refused(self) -> list[ExperimentLaunch]:
        return [e for e in self.experiments if e.refused]

    @property
    def ok(self) -> bool:
        return not self.not_launched and not self.refused


def experiment_spec_hash(experiment: Experiment) -> str:
    """The sweep as written (baseline + sweep), for the MLflow tag and Job annotation."""
    payload = canonical_json({"baseline": dict(experiment.baseline),
                              "sweep": dict(experiment.sweep)})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_for_launch(folder: Path) -> tuple[Experiment | None, list[str]]:
    """The experiment, or the reasons it may not launch."""
    from sweepctl.spec.folder import check_folder

    findings = Findings()
    experiment = check_folder(folder, findings)
    if experiment is None or findings.errors:
        return None, render_text(findings).splitlines() or [f"{folder}: invalid"]
    unticked = [item for item in CHECKLIST_ITEMS if experiment.checklist.get(item) is not True]
    if unticked:
        return None, [f"{folder / 'checklist.yaml'}: checklist incomplete: "
                      f"{', '.join(unticked)} not ticked"]
    return experiment, []


def changed_since(folders: Sequence[Path], rev: str) -> list[Path]:
    """The folders whose experiment files (or defaults.yaml) differ from ``rev``."""
    from sweepctl import gitrepo

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


def tracking_uri_for(options: LaunchOptions, runtime: Runtime, experiment_dir: Path) -> str:
    uri = tracking_uri(runtime, options.backend, repo_root(experiment_dir), options.tracking_uri)
    if uri:
        return uri
    raise UsageError("no MLflow tracking URI: set MLFLOW_TRACKING_URI or mlflow.tracking_uri "
                     "in experiments/defaults.yaml")


def _parent_run(options: LaunchOptions, uri: str, experiment: Experiment,
                spec_hash: str) -> str | None:
    if options.dry_run:  # a dry run changes nothing anywhere, MLflow included
        return None
    tags = {mlflow_store.TAG_SPEC_HASH: spec_hash, "phase": experiment.phase}
    if options.git_sha:
        tags[mlflow_store.TAG_GIT_SHA] = options.git_sha
        tags["mlflow.source.git.commit"] = options.git_sha
    if options.pr:
        tags[mlflow_store.TAG_PR] = options.pr
    return mlflow_store.ensure_parent_run(uri, experiment.mlflow_experiment, experiment.name,
                                          tags)


def _classify(trials: Sequence[Trial], finished: Mapping[str, Any],
              observed: Mapping[str, Observed], hashes: Mapping[str, str] | None = None
              ) -> tuple[list[TrialResult], list[Trial]]:
    """Results decided without the backend, and the trials left to launch."""
    decided: list[TrialResult] = []
    pending: list[Trial] = []
    for trial in trials:
        if trial.trial_id in finished:
            decided.append(TrialResult(trial.trial_id, trial.name, Outcome.REUSED,
                                       f"run {finished[trial.trial_id].run_id}"))
        elif trial.trial_id in observed and observed[trial.trial_id].phase != "succeeded":
            seen = observed[trial.trial_id]
            if seen.phase == "failed":
                decided.append(TrialResult(trial.trial_id, trial.name, Outcome.FAILED,
                                           f"{seen.name} failed ({seen.detail or 'Failed'}); "
                                           "delete it to retry"))
            elif hashes and seen.spec_hash != hashes.get(trial.trial_id):
                decided.append(TrialResult(trial.trial_id, trial.name, Outcome.CHANGED,
                                           f"Job {seen.name} exists with spec {seen.spec_hash}, "
                                           f"git has {hashes.get(trial.trial_id)}; left "
                                           "untouched (delete it to re-run)"))
            else:
                decided.append(TrialResult(trial.trial_id, trial.name, Outcome.RUNNING,
                                           seen.phase))
        else:
            # no FINISHED run: a succeeded Job/process whose run is missing is re-done
            pending.append(trial)
    return decided, pending


def launch(folders: Sequence[Path], options: LaunchOptions,
           progress: LaunchProgress | None = None) -> LaunchReport:
    if options.backend not in BACKENDS:
        raise UsageError(f"unknown backend {options.backend!r} (one of {', '.join(BACKENDS)})")
    report = LaunchReport(options.backend, options.dry_run)
    for folder in folders:
        entry = ExperimentLaunch(folder.name, folder)
        report.experiments.append(entry)
        experiment, reasons = load_for_launch(folder)
        if experiment is None:
            entry.refused = reasons
            continue
        entry.name = experiment.name
        try:
            _launch_one(experiment, options, entry, progress)
        except SweepctlError as exc:
            if entry.results:
                raise
            entry.refused = [str(exc)]
    return report


def _launch_one(experiment: Experiment, options: LaunchOptions, entry: ExperimentLaunch,
                progress: LaunchProgress | None) -> None:
    from sweepctl.sweep.expand import expand

    runtime = resolve_runtime(experiment.path, experiment.runtime)
    trials = expand(experiment, runtime.kubernetes.image)
    uri = tracking_uri_for(options, runtime, experiment.path)
    spec_hash = experiment_spec_hash(experiment)
    entry.parent_run_id = _parent_run(options, uri, experiment, spec_hash)
    finished = mlflow_store.finished_trials(uri, experiment.mlflow_experiment,
                                            {t.trial_id for t in trials})
    failed_ids = frozenset(
        run.trial_id for run in mlflow_store.trial_runs(uri, experiment.mlflow_experiment,
                                                        experiment.name)
        if run.status == "FAILED" and run.trial_id and run.trial_id not in finished)
    if progress is not None:
        progress.start(experiment.name, len(trials))
    advance: Callable[[TrialResult], None] = (progress.advance if progress is not None
                                              else lambda result: None)
    runner = _kubernetes if options.backend == "kubernetes" else _local
    entry.results = runner(_Context(experiment, trials, finished, runtime, uri, options,
                                    entry.parent_run_id, spec_hash,
                                    failed_ids & {t.trial_id for t in trials}), advance)


@dataclass(frozen=True)
class _Context:
    experiment: Experiment
    trials: Sequence[Trial]
    finished: Mapping[str, Any]
    runtime: Runtime
    tracking_uri: str
    options: LaunchOptions
    parent_run_id: str | None
    spec_hash: str
    failed_ids: frozenset[str] = frozenset()   # trials with a FAILED run and none FINISHED


def _failed_so_far(ctx: _Context, decided: Sequence[TrialResult]) -> set[str]:
    return set(ctx.failed_ids) | {r.trial_id for r in decided if r.outcome == Outcome.FAILED}


def _failure_budget_reached(ctx: _Context, failed: set[str]) -> bool:
    return len(failed) >= max(1, ctx.experiment.budget.max_failed_trials)


def _hold_over_failure_budget(ctx: _Context, decided: Sequence[TrialResult],
                              pending: Sequence[Trial]) -> tuple[list[TrialResult], list[Trial]]:
    """The seed's budget includes failures: once budget.max_failed_trials trials have
    failed, trials that never ran are held (a failing setup would fail them too); only
    retries of the failed ones, which a human asks for, still go."""
    failed = _failed_so_far(ctx, decided)
    if not _failure_budget_reached(ctx, failed):
        return [], list(pending)
    detail = (f"{len(failed)} trial(s) failed and budget.max_failed_trials is "
              f"{ctx.experiment.budget.max_failed_trials}; held until the failed trials "
              "succeed on a re-run (or raise the budget)")
    held = [TrialResult(t.trial_id, t.name, Outcome.HELD, detail)
            for t in pending if t.trial_id not in failed]
    return held, [t for t in pending if t.trial_id in failed]


def _in_order(trials: Sequence[Trial], results: Sequence[TrialResult]) -> list[TrialResult]:
    by_id = {r.trial_id: r for r in results}
    return [by_id[t.trial_id] for t in trials if t.trial_id in by_id]


def _kubernetes(ctx: _Context, advance: Callable[[TrialResult], None]) -> list[TrialResult]:
    from sweepctl.backends.kubernetes import KubernetesBackend, TrialObjects, launch_units
    from sweepctl.render.kubernetes import ANNOTATION_SPEC_HASH, render_trial

    options, runtime = ctx.options, ctx.runtime.kubernetes
    if options.kube_configuration is None:
        raise UsageError("no Kubernetes configuration (KUBECONFIG or in-cluster)")
    backend = KubernetesBackend(options.kube_configuration, runtime.namespace,
                                concurrency=options.kube_concurrency, retry=options.kube_retry,
                                dry_run=options.dry_run)
    try:
        rendered: dict[str, TrialObjects] = {}
        for trial in ctx.trials:
            if trial.trial_id in ctx.finished:
                continue
            # rendered running: suspension is a scheduling state, not part of the spec hash
            manifests = render_trial(ctx.experiment, trial, runtime, git_sha=options.git_sha,
                                     pr=options.pr, spec_hash=ctx.spec_hash,
                                     parent_run_id=ctx.parent_run_id,
                                     tracking_uri=ctx.tracking_uri)
            job_hash = manifests[-1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
            rendered[trial.trial_id] = TrialObjects(trial.trial_id, trial.name, job_hash,
                                                    manifests)
        observed = backend.observe(ctx.experiment.name)
        decided, pending = _classify(ctx.trials, ctx.finished, observed,
                                     {k: v.spec_hash for k, v in rendered.items()})
        # a Job that succeeded while MLflow has no FINISHED run for it (deleted run, or a
        # different tracking URI) cannot be re-run in place: Jobs are immutable and sweepctl
        # never deletes; say so instead of calling it "already running"
        orphans = [t for t in pending if t.trial_id in observed
                   and observed[t.trial_id].phase == "succeeded"]
        where = mlflow_store.safe_uri(ctx.tracking_uri)
        decided += [TrialResult(t.trial_id, t.name, Outcome.FAILED,
                                f"Job {observed[t.trial_id].name} succeeded but MLflow at "
                                f"{where} has no FINISHED run for it; delete the Job to re-run")
                    for t in orphans]
        pending = [t for t in pending if t not in orphans]
        held, pending = _hold_over_failure_budget(ctx, decided, pending)
        decided = [*decided, *held]
        units = [rendered[trial.trial_id] for trial in pending]
        for result in decided:
            advance(result)
        max_parallel = int(ctx.experiment.sweep.get("max_parallel") or len(ctx.trials) or 1)
        # a suspended Job is released only while it is still git's work: one reported as
        # changed (its spec is stale), reused, or no longer in the sweep stays suspended
        resumable = {trial_id for trial_id, objects in rendered.items()
                     if trial_id in observed
                     and observed[trial_id].spec_hash == objects.spec_hash}
        if _failure_budget_reached(ctx, _failed_so_far(ctx, decided)):
            resumable = set()  # held like the trials never created: the budget is spent
        launched = launch_units(backend, units, observed, max_parallel, runtime.queue, advance,
                                resumable)
    finally:
        backend.close()
    return _in_order(ctx.trials, [*decided, *launched])


def _local(ctx: _Context, advance: Callable[[TrialResult], None]) -> list[TrialResult]:
    from importlib import resources

    from sweepctl.backends.local import LocalBackend, LocalTrial, trial_dir
    from sweepctl.render.trainconfig import runner_meta, train_config

    options, runtime = ctx.options, ctx.runtime.local
    runner = Path(str(resources.files("sweepctl.runner").joinpath("trial_runner.py")))
    max_parallel = min(runtime.max_parallel,
                       int(ctx.experiment.sweep.get("max_parallel") or runtime.max_parallel))
    backend = LocalBackend(runtime.python, runner, options.state_dir, ctx.tracking_uri,
                           max_parallel, options.env, workdir=repo_root(ctx.experiment.path))
    observed = backend.observe(ctx.experiment.name)
    decided, pending = _classify(ctx.trials, ctx.finished, observed)
    # a local trial that failed is retried on the next launch: nothing like a Job stays behind
    retry = {r.trial_id for r in decided if r.outcome == Outcome.FAILED}
    held, pending = _hold_over_failure_budget(ctx, decided, pending)
    decided = [*(r for r in decided if r.trial_id not in retry), *held]
    pending = [t for t in ctx.trials if t.trial_id in retry or t in pending]
    for result in decided:
        advance(result)
    if options.dry_run:
        launched = [TrialResult(t.trial_id, t.name, Outcome.LAUNCHED, "dry run")
                    for t in pending]
        for result in launched:
            advance(result)
        return _in_order(ctx.trials, [*decided, *launched])
    local_trials = []
    for trial in pending:
        folder = trial_dir(options.state_dir, ctx.experiment.name, trial.name).resolve()
        local_trials.append(LocalTrial(
            trial.trial_id, trial.name, train_config(trial, str(folder / "output")),
            runner_meta(ctx.experiment, trial, git_sha=options.git_sha, pr=options.pr,
                        parent_run_id=ctx.parent_run_id, spec_hash=ctx.spec_hash)))
    launched = backend.run(ctx.experiment.name, local_trials, advance)
    return _in_order(ctx.trials, [*decided, *launched])
