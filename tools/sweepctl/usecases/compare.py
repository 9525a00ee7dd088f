"""`sweepctl compare`: the comparison of an experiment's trials, from the run index.

The expected trials come from the resolved workspace (git), the runs from the command's
one run index: the experiment's own runs plus, for a trial only another experiment ran,
that FINISHED run (reuse).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from sweepctl.results.compare import DEFAULT_TOLERANCE, Comparison, build_comparison
from sweepctl.spec.model import Objective
from sweepctl.usecases.adaptive import with_proposals, with_search_verdict
from sweepctl.workspace import ResolvedExperiment, Workspace

LOCAL_HOST = "this machine"  # the host of a local run without a sweepctl.host tag


def objective_for(resolved: ResolvedExperiment, metric: str | None,
                  goal: str | None) -> Objective:
    objective = resolved.experiment.objective
    chosen: Literal["minimize", "maximize"] = (
        "maximize" if (goal or objective.goal) == "maximize" else "minimize")
    if metric is not None and metric != objective.metric:
        return Objective(metric, chosen, None)  # another metric has no target of its own
    return Objective(objective.metric, chosen, objective.target)


def is_local_store(uri: str) -> bool:
    """The store on this machine (sqlite, a folder): its runs were local processes, so
    runs that overlapped timed each other. Not the backend the command would pick: the
    scheduled report runs in CI with no cluster and still reads the cluster's runs."""
    return uri.startswith(("sqlite:", "file:", "/", "./"))


def compare(workspace: Workspace, resolved: ResolvedExperiment, *, metric: str | None = None,
            goal: str | None = None, tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    """The comparison of one experiment (raises MlflowError when MLflow is unreachable)."""
    uri = resolved.require_tracking_uri()
    index = workspace.run_index(uri)
    resolved = with_proposals(resolved, index)  # tpe: the trials proposed so far
    runs = index.runs_for(resolved.experiment.mlflow_experiment, resolved.name,
                          resolved.trial_ids)
    host = LOCAL_HOST if is_local_store(uri) else None
    derived = frozenset(str(k) for k in resolved.experiment.sweep.get("derived") or {})
    return with_search_verdict(build_comparison(resolved.name, resolved.trials, runs,
                                                objective_for(resolved, metric, goal),
                                                tolerance, uri, host, derived),
                               resolved, index)


def compare_many(workspace: Workspace, folders: Sequence[Path], *, metric: str | None = None,
                 goal: str | None = None,
                 tolerance: float = DEFAULT_TOLERANCE) -> list[Comparison]:
    """One comparison per experiment, from the command's one run index per store."""
    resolved = workspace.resolve_all([workspace.load(folder) for folder in folders])
    return [compare(workspace, item, metric=metric, goal=goal, tolerance=tolerance)
            for item in resolved]
