"""`sweepctl cancel EXP [--trial NAME ...]`: stop an experiment's queued and running trials.

Written once against the ``Backend`` protocol: the backend stops what it has (Jobs
deleted with background propagation, local process groups SIGTERMed) and the runner ends
each run KILLED. A run that stays RUNNING (its pod or process was killed before the
runner could end it, or its Job is already gone) is ended KILLED here through MLflow.
Every run cancel touches is tagged ``sweepctl.cancelled=true``, so status and the PR
comment say "cancelled" rather than "killed".

Cancel stops work now; git still asks for the trials, so the next ``launch`` starts them
again. To stop for good, remove them from the sweep (or the folder) in git as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sweepctl.backends import BackendSettings, Outcome, TrialResult, info, open_backend
from sweepctl.errors import UsageError
from sweepctl.runindex import RUNNING_STATES
from sweepctl.workspace import ResolvedExperiment, Workspace


@dataclass
class CancelReport:
    experiment: str
    backend: str
    stopped: list[TrialResult] = field(default_factory=list)   # the backend's
    ended_runs: list[tuple[str, str]] = field(default_factory=list)  # (trial, run id) ended KILLED
    tagged_runs: list[tuple[str, str]] = field(default_factory=list)  # (trial, run id) tagged


def _selected(resolved: ResolvedExperiment, trials: Sequence[str]) -> set[str] | None:
    """The trial ids and names to cancel (None: all); a name git does not know is still
    passed on (a trial removed from the sweep whose Job still runs)."""
    if not trials:
        return None
    wanted = set(trials)
    for trial in resolved.trials:
        if trial.name in wanted or trial.trial_id in wanted:
            wanted |= {trial.name, trial.trial_id}
    return wanted


def cancel(folder: Path, *, backend: str, trials: Sequence[str] = (),
           tracking_uri: str | None = None, settings: BackendSettings | None = None,
           workspace: Workspace | None = None) -> CancelReport:
    backend_info = info(backend)
    workspace = workspace or Workspace(shared_tracking=backend_info.shared_tracking,
                                       env_tracking_uri=tracking_uri)
    resolved = workspace.resolve(workspace.load(folder))
    wanted = _selected(resolved, trials)
    report = CancelReport(resolved.name, backend)
    opened = open_backend(backend, settings or BackendSettings())
    try:
        report.stopped = opened.cancel([resolved], wanted)
    finally:
        opened.close()
    if resolved.tracking_uri:
        _end_runs(workspace, resolved, wanted, report)
    if wanted is not None and not report.stopped and not report.ended_runs:
        raise UsageError(f"nothing to cancel for trial(s) {', '.join(trials)} of "
                         f"{resolved.name}: no queued or running trial by that name")
    return report


def _end_runs(workspace: Workspace, resolved: ResolvedExperiment, wanted: set[str] | None,
              report: CancelReport) -> None:
    """Tag the runs of the stopped trials; end KILLED those still RUNNING (read after the
    backend stopped them: a runner that ended its own run is not ended twice)."""
    stopped = {r.trial_id for r in report.stopped if r.outcome == Outcome.CANCELLED}
    # the backend tried and failed to stop these (a delete refused, the API down): they
    # still run, so their RUNNING run is live, not stale
    still_running = {r.trial_id for r in report.stopped} - stopped
    index = workspace.run_index(resolved.tracking_uri or "")
    store = workspace.store(resolved.tracking_uri or "")
    for run in index.runs_of(resolved.experiment.mlflow_experiment, resolved.name):
        chosen = (wanted is None or bool({run.trial_id, run.trial_name} & wanted)) and (
            run.trial_id not in still_running)
        running = run.status in RUNNING_STATES
        if not chosen or not (running or (run.trial_id in stopped and run.status == "KILLED")):
            continue
        store.mark_cancelled(run.run_id, end=running)
        target = report.ended_runs if running else report.tagged_runs
        target.append((run.trial_name or run.trial_id or "?", run.run_id))
