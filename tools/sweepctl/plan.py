"""Build the plan of an experiment: its trials, GPU-hours vs budget, the diff against a
git revision, and which trials MLflow already has FINISHED (reused, not run again).

Rendering (text, markdown for the PR comment, JSON) lives in ``plan_render.py``.
git and MLflow are reached only through ``gitrepo`` and ``mlflow_store``, lazily.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sweepctl.errors import SweepctlError
from sweepctl.findings import Findings
from sweepctl.spec.folder import (
    FILE_NAMES,
    ValidationFailed,
    check_folder,
    read_document,
    read_folder,
)
from sweepctl.spec.model import Experiment, experiment_from_data
from sweepctl.spec.schemas import check_schema
from sweepctl.sweep.trial import Trial

Change = Literal["new", "unchanged"]
# Budget findings do not stop a plan: showing the over-budget plan is the point.
_BUDGET_RULES = ("budget-max-trials", "budget-gpu-hours")


@dataclass(frozen=True)
class PlannedTrial:
    trial: Trial
    change: Change | None = None      # vs --base; None when no base was given
    reused_run: str | None = None     # id of the FINISHED MLflow run this trial reuses


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

    @property
    def gpu_hours(self) -> float:
        return len(self.trials) * self.hours_per_trial

    @property
    def reused(self) -> int:
        return sum(1 for t in self.trials if t.reused_run)

    @property
    def gpu_hours_to_run(self) -> float:
        return (len(self.trials) - self.reused) * self.hours_per_trial

    @property
    def over_max_trials(self) -> bool:
        return len(self.trials) > self.max_trials

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


def _load(folder: Path) -> Experiment:
    """The experiment, refused on any error except the budget ones (the plan shows those)."""
    # absolute: defaults.yaml is found as folder.parent, and Path(".").parent is "." itself,
    # so `plan .` inside the folder would build the trials with the wrong image and ids
    folder = Path(os.path.abspath(folder))
    if not (folder / "experiment.yaml").is_file():
        raise SweepctlError(f"{folder}: not an experiment folder (no experiment.yaml)")
    findings = Findings()
    experiment = check_folder(folder, findings)
    # the trials (their image, hence their ids) come from the defaults.yaml beside the folder;
    # a malformed one must be a finding here, not a crash while resolving the runtime
    _check_defaults(folder.parent / "defaults.yaml", findings)
    blocking = [f for f in findings.errors if f.rule not in _BUDGET_RULES]
    if blocking:
        raise ValidationFailed(findings)
    if experiment is None:  # only budget errors: build the model anyway
        experiment = experiment_from_data(folder, read_folder(folder, Findings()))
    return experiment


def _check_defaults(path: Path, findings: Findings) -> bool:
    """Schema-check a defaults.yaml when there is one; False when it has errors."""
    if not path.is_file():
        return True
    doc = read_document(path, findings)
    return doc is not None and check_schema(doc, "defaults", findings)


def _trials(experiment: Experiment) -> tuple[list[Trial], str, int]:
    from sweepctl.runtime import resolve_runtime
    from sweepctl.sweep.expand import expand, resolve_points

    image = resolve_runtime(experiment.path, experiment.runtime).kubernetes.image
    trials = expand(experiment, image, enforce_budget=False)
    total = len(resolve_points(experiment.baseline, experiment.sweep))
    return trials, image, total - len(trials)


def _experiment_at(folder: Path, ref: str, scratch: Path) -> Experiment | str:
    """The experiment as committed at ``ref``, or a note saying why there is none."""
    from sweepctl import gitrepo

    repo = gitrepo.open_repo(folder)
    relative = gitrepo.repo_relative(repo, folder)
    parent = relative.rsplit("/", 1)[0] if "/" in relative else ""
    copy = scratch / "experiments" / folder.resolve().name
    copy.mkdir(parents=True)
    found = 0
    for file_name in [*FILE_NAMES.values(), "notes.md"]:
        data = gitrepo.read_file_at(repo, ref, f"{relative}/{file_name}")
        if data is not None:
            (copy / file_name).write_bytes(data)
            found += 1
    defaults = gitrepo.read_file_at(repo, ref, f"{parent}/defaults.yaml" if parent
                                    else "defaults.yaml")
    if defaults is not None:
        (copy.parent / "defaults.yaml").write_bytes(defaults)
    if not (copy / "experiment.yaml").is_file():
        return f"not in {ref}: every trial is new" if not found else (
            f"incomplete in {ref}: every trial is new")
    findings = Findings()
    docs = read_folder(copy, findings)
    valid = all(check_schema(doc, kind, findings) for kind, doc in docs.items())
    valid = _check_defaults(copy.parent / "defaults.yaml", findings) and valid
    if not valid or len(docs) < len(FILE_NAMES):
        return f"not valid in {ref} ({len(findings.errors)} error(s)): every trial is new"
    return experiment_from_data(copy, docs)


def _diff(folder: Path, ref: str, trials: list[Trial]) -> tuple[dict[str, Change],
                                                                  list[Trial], str | None]:
    with tempfile.TemporaryDirectory(prefix="sweepctl-plan-") as scratch:
        old = _experiment_at(folder, ref, Path(scratch))
        if isinstance(old, str):
            return {t.trial_id: "new" for t in trials}, [], old
        try:
            old_trials, _, _ = _trials(old)
        except SweepctlError as exc:
            return ({t.trial_id: "new" for t in trials}, [],
                    f"cannot expand at {ref} ({exc}): every trial is new")
    old_ids = {t.trial_id for t in old_trials}
    new_ids = {t.trial_id for t in trials}
    changes: dict[str, Change] = {t.trial_id: "unchanged" if t.trial_id in old_ids else "new"
                                  for t in trials}
    removed = [t for t in old_trials if t.trial_id not in new_ids]
    return changes, removed, None


def _reuse(tracking_uri: str, experiment: Experiment,
           trials: list[Trial]) -> tuple[dict[str, str], str | None]:
    from sweepctl import mlflow_store
    from sweepctl.errors import MlflowError

    try:
        finished = mlflow_store.finished_trials(tracking_uri, experiment.mlflow_experiment,
                                                {t.trial_id for t in trials})
    except MlflowError as exc:
        # a plan without reuse is still a plan; say why instead of failing the PR check
        text = str(exc)
        return {}, f"reuse unknown: {text if len(text) <= 200 else text[:197] + '...'}"
    return {trial_id: run.run_id for trial_id, run in finished.items()}, None


def build_plan(folder: Path, *, base: str | None = None,
               tracking_uri: str | None = None) -> Plan:
    experiment = _load(folder)
    trials, image, dropped = _trials(experiment)
    changes: dict[str, Change] = {}
    removed: list[Trial] = []
    base_note = None
    if base is not None:
        changes, removed, base_note = _diff(Path(folder), base, trials)
    reused: dict[str, str] = {}
    reuse_note = None
    if tracking_uri:
        reused, reuse_note = _reuse(tracking_uri, experiment, trials)
    return Plan(
        experiment=experiment.name,
        path=str(folder),
        strategy=str(experiment.sweep.get("strategy", "")),
        image=image,
        trials=tuple(PlannedTrial(t, changes.get(t.trial_id), reused.get(t.trial_id))
                     for t in trials),
        baseline=experiment.baseline,
        max_trials=experiment.budget.max_trials,
        gpu_hours_budget=experiment.budget.gpu_hours,
        hours_per_trial=experiment.budget.hours_per_trial,
        base_ref=base,
        base_note=base_note,
        removed=tuple(removed),
        tracking_uri=tracking_uri,
        reuse_note=reuse_note,
        dropped=dropped,
    )
