"""The plan of an experiment as data: its trials, GPU-hours vs budget, the diff against a
git revision, and which trials a FINISHED MLflow run already covers.

Built by ``usecases.plan``; rendered by ``renderers.plan`` (text, the PR comment, JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sweepctl.sweep.trial import Trial

Change = Literal["new", "unchanged"]


@dataclass(frozen=True)
class PlannedTrial:
    trial: Trial
    change: Change | None = None      # vs --base; None when no base was given
    reused_run: str | None = None     # id of the FINISHED MLflow run this trial reuses


@dataclass(frozen=True)
class PlanHeader:
    """What a reviewer judges a plan by, from experiment.yaml (renderers.plan.header_of)."""

    title: str = ""
    hypothesis: str = ""
    objective: str = ""
    goal: str = ""
    target: float | None = None
    local_only: bool = False          # the command's backend is local: no image is used
    overrides: tuple[tuple[str, Any], ...] = ()   # the experiment's runtime: overrides
    ignored_warnings: tuple[str, ...] = ()        # warnings.ignore it acknowledges


@dataclass(frozen=True)
class Plan:
    experiment: str
    path: str
    strategy: str
    image: str
    trials: tuple[PlannedTrial, ...]
    baseline: Mapping[str, Any]
    max_trials: int
    gpu_hours_budget: float
    hours_per_trial: float
    base_ref: str | None = None
    base_note: str | None = None      # why the REF side is empty (did not exist, unreadable)
    removed: tuple[Trial, ...] = ()
    tracking_uri: str | None = None
    reuse_note: str | None = None     # why reuse is unknown (MLflow unreachable)
    dropped: int = 0                  # points equal to the baseline or an earlier trial
    # GPUs one trial holds on the cluster: kubernetes.gpus_per_trial x nodes_per_trial (the
    # budget is the cluster's, so a plan for the local backend counts them too)
    gpus_per_trial: int = 1
    header: PlanHeader = PlanHeader()
    search_trials: int = 0            # tpe: every trial the search may run (all rounds)
    search_note: str | None = None    # tpe: "up to N more trial(s), proposed by TPE ..."

    @property
    def gpu_hours(self) -> float:
        return self.budgeted * self.hours_per_trial * self.gpus_per_trial

    @property
    def budgeted(self) -> int:
        """Trials the budget is checked against (tpe: the whole search, not round 1)."""
        return max(len(self.trials), self.search_trials)

    @property
    def reused(self) -> int:
        return sum(1 for t in self.trials if t.reused_run)

    @property
    def gpu_hours_to_run(self) -> float:
        return (self.budgeted - self.reused) * self.hours_per_trial * self.gpus_per_trial

    @property
    def over_max_trials(self) -> bool:
        return self.budgeted > self.max_trials

    @property
    def over_gpu_hours(self) -> bool:
        return self.gpu_hours > self.gpu_hours_budget + 1e-9

    @property
    def ok(self) -> bool:
        return not (self.over_max_trials or self.over_gpu_hours)

    @property
    def changed_keys(self) -> list[str]:
        """Every key some trial changes, in first-seen order: the table's columns."""
        keys: dict[str, None] = {}
        for planned in self.trials:
            keys.update((k, None) for k in planned.trial.params)
        return list(keys)

    def count(self, change: Change) -> int:
        return sum(1 for t in self.trials if t.change == change)
