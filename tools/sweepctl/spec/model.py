"""The experiment model: typed, frozen views of a folder that passed its schemas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sweepctl.spec.yamlload import Document

FILE_KINDS = ("experiment", "baseline", "sweep", "checklist")
CHECKLIST_ITEMS = (
    "baseline_defined",
    "success_metric_defined",
    "parameter_space_defined",
    "budget_defined",
    "mlflow_experiment_created",
    "dataset_version_locked",
    "seed_set",
)
# Keys of a LLaMA-Factory config that sweepctl sets per trial.
OWNED_KEYS = ("report_to", "output_dir", "run_name")


@dataclass(frozen=True)
class Objective:
    metric: str
    goal: Literal["minimize", "maximize"]
    target: float | None = None

    def better(self, a: float, b: float) -> bool:
        return a < b if self.goal == "minimize" else a > b

    def met(self, value: float) -> bool:
        if self.target is None:
            return False
        return value < self.target if self.goal == "minimize" else value > self.target


@dataclass(frozen=True)
class Budget:
    max_trials: int
    gpu_hours: float
    hours_per_trial: float
    max_failed_trials: int = 0
    max_attempts_per_trial: int = 2   # starts of one trial (its pods' too) before "gave up"


@dataclass(frozen=True)
class Dataset:
    name: str
    version: str
    sha256: str
    train_samples: int | None = None
    test_samples: int | None = None


@dataclass(frozen=True)
class Experiment:
    """One experiment folder, loaded. ``baseline`` and ``sweep`` stay plain data."""

    path: Path
    name: str
    title: str
    owner: str
    hypothesis: str
    phase: str
    objective: Objective
    budget: Budget
    dataset: Dataset
    mlflow_experiment: str
    tags: Mapping[str, str]
    runtime: Mapping[str, Any]
    baseline: Mapping[str, Any]
    sweep: Mapping[str, Any]
    checklist: Mapping[str, bool]
    docs: Mapping[str, Document] = field(default_factory=dict, compare=False, repr=False)

    @property
    def notes_path(self) -> Path:
        return self.path / "notes.md"

    @property
    def checklist_complete(self) -> bool:
        return all(self.checklist.get(item) is True for item in CHECKLIST_ITEMS)


def experiment_from_data(path: Path, docs: Mapping[str, Document]) -> Experiment:
    """Build the model from documents that already passed their schemas."""
    exp: dict[str, Any] = docs["experiment"].data
    objective = exp["objective"]
    budget = exp["budget"]
    dataset = exp["dataset"]
    return Experiment(
        path=path,
        name=exp["name"],
        title=exp.get("title", exp["name"]),
        owner=exp.get("owner", ""),
        hypothesis=exp.get("hypothesis", ""),
        phase=exp.get("phase", "hyperparameter_search"),
        objective=Objective(objective["metric"], objective.get("goal", "minimize"),
                            objective.get("target")),
        budget=Budget(budget["max_trials"], float(budget["gpu_hours"]),
                      float(budget["hours_per_trial"]), budget.get("max_failed_trials", 0),
                      budget.get("max_attempts_per_trial", 2)),
        dataset=Dataset(dataset["name"], str(dataset["version"]), dataset["sha256"],
                        dataset.get("train_samples"), dataset.get("test_samples")),
        mlflow_experiment=exp["mlflow"]["experiment"],
        tags={str(k): str(v) for k, v in (exp.get("tags") or {}).items()},
        runtime=exp.get("runtime") or {},
        baseline=docs["baseline"].data,
        sweep=docs["sweep"].data,
        checklist=docs["checklist"].data,
        docs=dict(docs),
    )
