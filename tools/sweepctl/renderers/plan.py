"""Render a ``Plan``: text for terminals, markdown for the PR comment, JSON as data.

The markdown starts with the sticky comment's hidden marker (the same one `report`
uses), so the plan is the comment's first state and later reports edit it in place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sweepctl.renderers.limits import fit
from sweepctl.renderers.markdown import comment_marker, md_cell
from sweepctl.renderers.values import format_value
from sweepctl.sweep.plan import Plan, PlannedTrial


def marker(experiment: str) -> str:
    return comment_marker(experiment)


def _hours(value: float) -> str:
    return f"{value:g}"


def _row(plan: Plan, planned: PlannedTrial, columns: Sequence[str]) -> list[str]:
    trial = planned.trial
    cells = [str(trial.index), trial.name, trial.trial_id]
    for key in columns:
        if trial.is_baseline:
            cells.append(format_value(plan.baseline[key]) if key in plan.baseline else "(unset)")
        else:
            cells.append(format_value(trial.params[key]) if key in trial.params else "")
    cells.append(str(len(trial.params)))
    if plan.base_ref is not None:
        cells.append(planned.change or "")
    if plan.tracking_uri:
        cells.append("?" if plan.reuse_note else (
            f"reuse {planned.reused_run}" if planned.reused_run else "run"))
    return cells


def _headers(plan: Plan, columns: Sequence[str]) -> list[str]:
    headers = ["#", "trial", "id", *columns, "changed"]
    if plan.base_ref is not None:
        headers.append(f"vs {plan.base_ref}")
    if plan.tracking_uri:
        headers.append("MLflow")
    return headers


def summary_lines(plan: Plan) -> list[str]:
    lines = [f"{len(plan.trials)} trial(s) ({plan.strategy}), "
             f"{_hours(plan.gpu_hours)} GPU-hours of {_hours(plan.gpu_hours_budget)} budgeted "
             f"({_hours(plan.hours_per_trial)} h per trial), max_trials {plan.max_trials}"]
    if plan.over_max_trials:
        lines.append(f"OVER BUDGET: {plan.budgeted} trials exceed budget.max_trials "
                     f"{plan.max_trials}")
    if plan.over_gpu_hours:
        lines.append(f"OVER BUDGET: {_hours(plan.gpu_hours)} GPU-hours exceed "
                     f"budget.gpu_hours {_hours(plan.gpu_hours_budget)}")
    if plan.search_note:
        lines.append(plan.search_note)
    if plan.dropped:
        lines.append(f"{plan.dropped} point(s) of the sweep repeat the baseline or an earlier "
                     "trial (same config): each runs once")
    if plan.base_ref is not None:
        lines.append(plan.base_note or (
            f"vs {plan.base_ref}: {plan.count('new')} new, {plan.count('unchanged')} unchanged, "
            f"{len(plan.removed)} removed"))
    if plan.tracking_uri:
        lines.append(plan.reuse_note or (
            f"{plan.reused} trial(s) reused from FINISHED MLflow runs; "
            f"{_hours(plan.gpu_hours_to_run)} GPU-hours to run"))
    return lines


def render_text(plan: Plan) -> str:
    from tabulate import tabulate

    columns = plan.changed_keys
    rows = [_row(plan, t, columns) for t in plan.trials]
    out = [f"{plan.experiment} ({plan.path})", *(f"  {line}" for line in summary_lines(plan)),
           "", tabulate(rows, headers=_headers(plan, columns), tablefmt="simple",
                        disable_numparse=True)]
    if plan.removed:
        out += ["", f"removed vs {plan.base_ref}:"]
        out += [f"  {t.name} ({t.trial_id})" for t in plan.removed]
    return "\n".join(out)




MAX_LISTED_REMOVED = 50


def render_markdown(plan: Plan) -> str:
    """The PR comment body; past GitHub's 65,536 characters only the first rows are kept."""
    from tabulate import tabulate

    columns = plan.changed_keys
    rows = [[md_cell(cell) for cell in _row(plan, t, columns)] for t in plan.trials]
    headers = [md_cell(h) for h in _headers(plan, columns)]
    summary = summary_lines(plan)
    head = [marker(plan.experiment), f"### sweepctl plan: `{plan.experiment}`", ""]
    if not plan.ok:
        head += ["> [!CAUTION]", *(f"> {md_cell(line)}" for line in summary if "OVER" in line), ""]
    head += [f"- {md_cell(line)}" for line in summary if "OVER" not in line]
    tail: list[str] = []
    if plan.removed:
        tail += ["", f"Removed vs `{md_cell(plan.base_ref or '')}` (their results stay in MLflow):",
                 ""]
        tail += [f"- `{md_cell(t.name)}`" for t in plan.removed[:MAX_LISTED_REMOVED]]
        if len(plan.removed) > MAX_LISTED_REMOVED:
            tail.append(f"- ... and {len(plan.removed) - MAX_LISTED_REMOVED} more")
    tail += ["", f"<sub>Image `{md_cell(plan.image)}`. Trial 0 is the baseline; other rows show "
             "only the keys they change.</sub>"]

    def body(kept: int) -> str:
        table = tabulate(rows[:kept], headers=headers, tablefmt="github", disable_numparse=True)
        cut = ([f"_... and {len(rows) - kept} more trial(s): `sweepctl plan` prints them "
                "all._"] if kept < len(rows) else [])
        return "\n".join([*head, "", table, *cut, *tail]) + "\n"

    return fit(body, len(rows))


def plan_data(plan: Plan) -> dict[str, Any]:
    def trial(planned: PlannedTrial) -> dict[str, Any]:
        t = planned.trial
        return {"index": t.index, "name": t.name, "trial_id": t.trial_id, "slug": t.slug,
                "replicate": t.replicate, "changes": dict(t.params),
                "changed": len(t.params), "vs_base": planned.change,
                "reused_run": planned.reused_run}

    return {
        "experiment": plan.experiment,
        "path": plan.path,
        "strategy": plan.strategy,
        "image": plan.image,
        "trials": [trial(t) for t in plan.trials],
        "count": len(plan.trials),
        "budget": {"max_trials": plan.max_trials, "gpu_hours": plan.gpu_hours_budget,
                   "hours_per_trial": plan.hours_per_trial},
        "gpu_hours": plan.gpu_hours,
        "gpu_hours_to_run": plan.gpu_hours_to_run if plan.tracking_uri else plan.gpu_hours,
        "over_budget": not plan.ok,
        "dropped": plan.dropped,
        "base": None if plan.base_ref is None else {
            "ref": plan.base_ref, "note": plan.base_note,
            "new": plan.count("new"), "unchanged": plan.count("unchanged"),
            "removed": [{"name": t.name, "trial_id": t.trial_id, "changes": dict(t.params)}
                        for t in plan.removed]},
        "reuse": None if not plan.tracking_uri else {
            "reused": plan.reused, "note": plan.reuse_note},
    }


def render_json(plans: Sequence[Plan]) -> str:
    return json.dumps({"plans": [plan_data(p) for p in plans],
                       "ok": all(p.ok for p in plans)}, indent=2, default=str)
