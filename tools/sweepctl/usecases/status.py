"""`sweepctl status EXP`: what git expects, what the backend is doing, what MLflow recorded.

One row per trial of the sweep as git has it now; the backend column comes from the
backend's observation (Jobs' conditions, local trial folders), the MLflow columns from
the run index's merge rule (the newest FINISHED run of the trial id from any sweep,
since launch reuses it; else the newest run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sweepctl.backends import BackendSettings, info, open_backend
from sweepctl.renderers.values import format_value
from sweepctl.usecases.adaptive import with_proposals
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
           workspace: Workspace | None = None) -> StatusReport:
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
            run_status=latest.status if latest else "-",
            objective=latest.metrics.get(metric) if latest else None,
            run_id=latest.run_id if latest else None,
            attempts=runs.attempts if runs is not None else 0))
    return report
