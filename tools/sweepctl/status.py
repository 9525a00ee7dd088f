"""`sweepctl status EXP`: what git expects, what the backend is doing, what MLflow recorded.

One row per trial of the sweep as git has it now; the backend column comes from the
Jobs' conditions (or the local trial folders), the MLflow columns from the newest run
carrying the trial's id, except that a FINISHED run (from any sweep: launch reuses
it) wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweepctl import mlflow_store
from sweepctl.backends import Observed
from sweepctl.runtime import repo_root, resolve_runtime
from sweepctl.runtime import tracking_uri as tracking_uri_for_backend
from sweepctl.spec.folder import load_experiment
from sweepctl.sweep.identity import format_value


@dataclass(frozen=True)
class StatusRow:
    name: str
    trial_id: str
    params: str
    backend: str            # the Job's / process's phase, "-" when it has none
    run_status: str         # the newest MLflow run's status, "-" when none
    objective: float | None
    run_id: str | None = None


@dataclass
class StatusReport:
    experiment: str
    metric: str
    backend: str
    rows: list[StatusRow] = field(default_factory=list)

    def count(self, run_status: str) -> int:
        return sum(1 for row in self.rows if row.run_status == run_status)


def observe(backend: str, experiment: str, *, kube_configuration: Any, namespace: str,
            state_dir: Path) -> dict[str, Observed]:
    if backend == "kubernetes":
        from sweepctl.backends.kubernetes import KubernetesBackend

        client = KubernetesBackend(kube_configuration, namespace)
        try:
            return client.observe(experiment)
        finally:
            client.close()
    from sweepctl.backends.local import LocalBackend

    return LocalBackend("", Path(), state_dir, "").observe(experiment)


def status(folder: Path, *, backend: str, tracking_uri: str | None,
           kube_configuration: Any = None, state_dir: Path = Path(".sweepctl")) -> StatusReport:
    from sweepctl.sweep.expand import expand

    experiment = load_experiment(folder)
    runtime = resolve_runtime(experiment.path, experiment.runtime)
    uri = tracking_uri_for_backend(runtime, backend, repo_root(experiment.path), tracking_uri)
    trials = expand(experiment, runtime.kubernetes.image)
    observed = observe(backend, experiment.name, kube_configuration=kube_configuration,
                       namespace=runtime.kubernetes.namespace, state_dir=state_dir)
    newest: dict[str, mlflow_store.RunRecord] = {}
    if uri:
        # trial_runs is newest first: keep the first run seen per trial id
        for run in mlflow_store.trial_runs(uri, experiment.mlflow_experiment, experiment.name):
            if run.trial_id and run.trial_id not in newest:
                newest[run.trial_id] = run
        # launch reuses a FINISHED run by trial id from any sweep (the same work has the
        # same id); status shows what launch decides on, so that run wins
        newest.update(mlflow_store.finished_trials(uri, experiment.mlflow_experiment,
                                                   {t.trial_id for t in trials}))
    metric = experiment.objective.metric
    report = StatusReport(experiment.name, metric, backend)
    for trial in trials:
        latest = newest.get(trial.trial_id)
        seen = observed.get(trial.trial_id)
        params = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(trial.params.items()))
        report.rows.append(StatusRow(
            name=trial.name, trial_id=trial.trial_id, params=params or "(baseline)",
            backend=seen.phase if seen else "-",
            run_status=latest.status if latest else "-",
            objective=latest.metrics.get(metric) if latest else None,
            run_id=latest.run_id if latest else None))
    return report
