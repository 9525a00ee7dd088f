"""`sweepctl compare`: the comparison of an experiment's trials, from the run index.

The expected trials come from the resolved workspace (git), the runs from the command's
one run index: the experiment's own runs plus, for a trial only another experiment ran,
that FINISHED run (reuse).
"""

from __future__ import annotations

from typing import Literal

from sweepctl.results.compare import DEFAULT_TOLERANCE, Comparison, build_comparison
from sweepctl.spec.model import Objective
from sweepctl.usecases.adaptive import with_proposals, with_search_verdict
from sweepctl.workspace import ResolvedExperiment, Workspace


def objective_for(resolved: ResolvedExperiment, metric: str | None,
                  goal: str | None) -> Objective:
    objective = resolved.experiment.objective
    chosen: Literal["minimize", "maximize"] = (
        "maximize" if (goal or objective.goal) == "maximize" else "minimize")
    if metric is not None and metric != objective.metric:
        return Objective(metric, chosen, None)  # another metric has no target of its own
    return Objective(objective.metric, chosen, objective.target)


def compare(workspace: Workspace, resolved: ResolvedExperiment, *, metric: str | None = None,
            goal: str | None = None, tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    """The comparison of one experiment (raises MlflowError when MLflow is unreachable)."""
    uri = resolved.require_tracking_uri()
    index = workspace.run_index(uri)
    resolved = with_proposals(resolved, index)  # tpe: the trials proposed so far
    runs = index.runs_for(resolved.experiment.mlflow_experiment, resolved.name,
                          resolved.trial_ids)
    return with_search_verdict(build_comparison(resolved.name, resolved.trials, runs,
                                                objective_for(resolved, metric, goal),
                                                tolerance, uri), resolved, index)
