"""`sweepctl status EXP`: what git expects, what the backend is doing, what MLflow recorded.

One row per trial of the sweep as git has it now; the backend column comes from the
backend's observation (Jobs' conditions, local trial folders), the MLflow columns from
the run index's merge rule (the newest FINISHED run of the trial id from any sweep,
since launch reuses it; else the newest run).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sweepctl.backends import BackendSettings, Observed, info, open_backend
from sweepctl.clients.mlflow_store import RunRecord
from sweepctl.usecases.adaptive import with_proposals
from sweepctl.values import format_value
from sweepctl.workspace import Workspace


@dataclass(frozen=True)
class StatusRow:
    name: str
    trial_id: str
    params: str
    backend: str            # the Job's / process's phase, "-" when it has none
    run_status: str         # the newest MLflow run's status, "-" when none
    objective: float | None
    run_id: str | None = None
    attempts: int = 0
    progress: LiveProgress | None = None   # for a RUNNING run only


@dataclass(frozen=True)
class LiveProgress:
    step: int | None
    epoch: float | None
    loss: float | None
    objective: float | None
    eta_seconds: float | None   # None: no total step count to aim at ("-")


def _number(params: Mapping[str, str], key: str) -> float | None:
    try:
        return float(params[key])
    except (KeyError, ValueError):
        return None


def live_progress(run: RunRecord, metric: str, now: float) -> LiveProgress:
    """Where a running trial is, from its latest logged metrics (``now``: epoch seconds)."""
    step = max(run.metric_steps.values(), default=None)
    epoch = run.metrics.get("epoch")
    total = _number(run.params, "max_steps")
    if (total is None or total <= 0) and epoch and step:
        epochs = _number(run.params, "num_train_epochs")
        total = step * epochs / epoch if epochs else None
    elapsed = now - run.start_time / 1000 if run.start_time else 0.0
    eta = None
    if step and total and total >= step and elapsed > 0:
        eta = (total - step) / (step / elapsed)
    return LiveProgress(step, epoch, run.metrics.get("loss"), run.metrics.get(metric), eta)


STALE = "RUNNING (stale)"   # no live Job/process: a hard kill; the next launch adopts it


def _run_status(run: RunRecord | None, seen: Observed | None) -> str:
    if run is None:
        return "-"
    if run.cancelled:
        return "cancelled"
    if run.status == "RUNNING" and (seen is None or seen.phase in ("failed", "succeeded")):
        # its pod or process was killed before the runner could end the run: nothing runs
        # it, and launch (the scheduled reconcile) restarts the trial in this same run
        return STALE
    return run.status


@dataclass
class StatusReport:
    experiment: str
    metric: str
    backend: str
    rows: list[StatusRow] = field(default_factory=list)

    def count(self, run_status: str) -> int:
        return sum(1 for row in self.rows if row.run_status == run_status)


def status(folder: Path, *, backend: str, tracking_uri: str | None,
           settings: BackendSettings | None = None,
           workspace: Workspace | None = None, now: float | None = None) -> StatusReport:
    backend_info = info(backend)
    workspace = workspace or Workspace(shared_tracking=backend_info.shared_tracking,
                                       env_tracking_uri=tracking_uri)
    resolved = workspace.resolve(workspace.load(folder))
    opened = open_backend(backend, settings or BackendSettings())
    try:
        observed = opened.observe([resolved]).get(resolved.name, {})
    finally:
        opened.close()
    index = workspace.run_index(resolved.tracking_uri) if resolved.tracking_uri else None
    resolved = with_proposals(resolved, index) if index is not None else resolved
    metric = resolved.experiment.objective.metric
    report = StatusReport(resolved.name, metric, backend)
    for trial in resolved.trials:
        runs = index.get(trial.trial_id) if index is not None else None
        latest = runs.latest if runs is not None else None
        seen = observed.get(trial.trial_id)
        params = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(trial.params.items()))
        report.rows.append(StatusRow(
            name=trial.name, trial_id=trial.trial_id, params=params or "(baseline)",
            backend=seen.phase if seen else "-",
            run_status=_run_status(latest, seen),
            objective=latest.metrics.get(metric) if latest else None,
            run_id=latest.run_id if latest else None,
            attempts=runs.attempts if runs is not None else 0,
            progress=(live_progress(latest, metric, time.time() if now is None else now)
                      if latest is not None and latest.status == "RUNNING" else None)))
    return report
