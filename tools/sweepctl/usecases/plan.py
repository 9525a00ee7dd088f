"""`sweepctl plan`: build the plan of each experiment (``sweep.plan.Plan``): its trials,
GPU-hours vs budget, the diff against a git revision, and which trials MLflow already
has FINISHED (reused, not run again), read from the command's one run index.

Rendering (text, markdown for the PR comment, JSON) lives in ``renderers.plan``.
git and MLflow are reached only through their client modules, lazily.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from sweepctl.errors import MlflowError, SweepctlError
from sweepctl.findings import Findings
from sweepctl.renderers.plan import header_of
from sweepctl.spec.folder import FILE_NAMES, read_folder
from sweepctl.spec.model import Experiment, experiment_from_data
from sweepctl.spec.schemas import check_schema
from sweepctl.sweep.plan import Change, Plan, PlannedTrial
from sweepctl.sweep.trial import Trial
from sweepctl.usecases.adaptive import search_plan
from sweepctl.workspace import ResolvedExperiment, Workspace


def _experiment_at(folder: Path, ref: str, scratch: Path) -> Experiment | str:
    """The experiment as committed at ``ref``, or a note saying why there is none."""
    from sweepctl.clients import gitrepo

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
    if not valid or len(docs) < len(FILE_NAMES):
        return f"not valid in {ref} ({len(findings.errors)} error(s)): every trial is new"
    return experiment_from_data(copy, docs)


def _diff(folder: Path, ref: str, trials: Sequence[Trial]
          ) -> tuple[dict[str, Change], list[Trial], str | None]:
    every_new: dict[str, Change] = {t.trial_id: "new" for t in trials}
    with tempfile.TemporaryDirectory(prefix="sweepctl-plan-") as scratch:
        old = _experiment_at(folder, ref, Path(scratch))
        if isinstance(old, str):
            return every_new, [], old
        # the old side has its own defaults.yaml (its image is part of every old id)
        then = Workspace()
        _, defaults_findings = then.defaults(old.path.parent)
        if defaults_findings.errors:
            return every_new, [], (f"not valid in {ref} ({len(defaults_findings.errors)} "
                                   "error(s)): every trial is new")
        try:
            old_trials = then.resolve(old).trials
        except SweepctlError as exc:
            return every_new, [], f"cannot expand at {ref} ({exc}): every trial is new"
    old_ids = {t.trial_id for t in old_trials}
    new_ids = {t.trial_id for t in trials}
    changes: dict[str, Change] = {t.trial_id: "unchanged" if t.trial_id in old_ids else "new"
                                  for t in trials}
    return changes, [t for t in old_trials if t.trial_id not in new_ids], None


def _reuse(workspace: Workspace, resolved: ResolvedExperiment
           ) -> tuple[dict[str, str], str | None]:
    if not resolved.tracking_uri:
        return {}, None
    try:
        index = workspace.run_index(resolved.tracking_uri)
    except MlflowError as exc:
        # a plan without reuse is still a plan; say why instead of failing the PR check
        text = str(exc)
        return {}, f"reuse unknown: {text if len(text) <= 200 else text[:197] + '...'}"
    return {tid: run.run_id for tid, run in index.finished_of(resolved.trial_ids).items()}, None


def _dropped(resolved: ResolvedExperiment) -> int:
    from sweepctl.sweep.expand import resolve_points

    experiment = resolved.experiment
    return len(resolve_points(experiment.baseline, experiment.sweep)) - len(resolved.trials)


def _plan(workspace: Workspace, resolved: ResolvedExperiment, base: str | None,
          offline: bool) -> Plan:
    changes: dict[str, Change] = {}
    removed: list[Trial] = []
    base_note = None
    if base is not None:
        changes, removed, base_note = _diff(resolved.path, base, resolved.trials)
    reused, reuse_note = ({}, None) if offline else _reuse(workspace, resolved)
    experiment = resolved.experiment
    return Plan(
        experiment=experiment.name,
        path=str(experiment.path),
        strategy=str(experiment.sweep.get("strategy", "")),
        image=resolved.image,
        trials=tuple(PlannedTrial(t, changes.get(t.trial_id), reused.get(t.trial_id))
                     for t in resolved.trials),
        baseline=experiment.baseline,
        max_trials=experiment.budget.max_trials,
        gpu_hours_budget=experiment.budget.gpu_hours,
        hours_per_trial=experiment.budget.hours_per_trial,
        base_ref=base,
        base_note=base_note,
        removed=tuple(removed),
        tracking_uri=None if offline else resolved.tracking_uri,
        reuse_note=reuse_note,
        dropped=_dropped(resolved),
        gpus_per_trial=(resolved.runtime.kubernetes.gpus_per_trial
                        * resolved.runtime.kubernetes.nodes_per_trial),
        header=header_of(experiment, local_only=not workspace.shared_tracking),
        **search_plan(experiment.sweep),  # tpe: the budget of every round, and the note
    )


def build_plans(workspace: Workspace, folders: Sequence[Path], *, base: str | None = None,
                offline: bool = False) -> list[Plan]:
    """Every experiment's plan; MLflow is read once per tracking store for all of them."""
    resolved = workspace.resolve_all([workspace.load_for_plan(f) for f in folders])
    return [_plan(workspace, r, base, offline) for r in resolved]


def build_plan(folder: Path, *, base: str | None = None,
               tracking_uri: str | None = None) -> Plan:
    """One experiment's plan, reuse read from ``tracking_uri`` (None: offline)."""
    workspace = Workspace(env_tracking_uri=tracking_uri)
    [plan] = build_plans(workspace, [folder], base=base, offline=tracking_uri is None)
    return plan
