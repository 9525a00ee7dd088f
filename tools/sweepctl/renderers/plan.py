"""Render a ``Plan``: text for terminals, markdown for the PR comment, JSON as data.

The markdown starts with the sticky comment's hidden marker (the same one `report`
uses), so the plan is the comment's first state and later reports edit it in place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sweepctl.errors import SweepctlError
from sweepctl.renderers.limits import fit
from sweepctl.renderers.markdown import comment_marker, md_cell
from sweepctl.spec.model import Experiment
from sweepctl.sweep.plan import Plan, PlanHeader, PlannedTrial
from sweepctl.sweep.trial import Trial
from sweepctl.values import format_value

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
MAX_HEADER_TEXT = 600   # a hypothesis longer than this is cut in the comment


def header_of(experiment: Experiment, *, local_only: bool) -> PlanHeader:
    """The plan's header from the experiment: what it claims and what it overrides."""
    from sweepctl.spec.policy import runtime_overrides
    from sweepctl.spec.rules import ignored_warnings

    objective = experiment.objective
    return PlanHeader(
        title=experiment.title, hypothesis=experiment.hypothesis.strip(),
        objective=objective.metric, goal=objective.goal, target=objective.target,
        local_only=local_only, overrides=tuple(runtime_overrides(experiment)),
        ignored_warnings=tuple(sorted(ignored_warnings(experiment))))


def masked(value: Any) -> str:
    """A runtime value as shown: formatted, any ``user:password@`` of a URI masked."""
    return _USERINFO.sub(r"\1***@", format_value(value))


def header_lines(plan: Plan) -> list[str]:
    """Plain-text header lines (callers escape them for markdown)."""
    head = plan.header
    lines = []
    if head.objective:
        sign = "<" if head.goal == "minimize" else ">"
        target = "no target" if head.target is None else f"target {sign} {head.target:g}"
        lines.append(f"objective: {head.goal} {head.objective}, {target}")
    lines += [f"runtime override: {key} = {masked(value)}" for key, value in head.overrides]
    if head.ignored_warnings:
        lines.append(f"warnings acknowledged (not shown by validate): "
                     f"{', '.join(head.ignored_warnings)}")
    return lines


def _cut(text: str, limit: int = MAX_HEADER_TEXT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


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
            f"reuse run {planned.reused_run}" if planned.reused_run else "train"))
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
    head = plan.header
    out = [f"{plan.experiment} ({plan.path})"]
    if head.title:
        out.append(f"  {_cut(head.title)}")
    if head.hypothesis:
        out.append(f"  hypothesis: {_cut(head.hypothesis)}")
    out += [f"  {line}" for line in [*header_lines(plan), *summary_lines(plan)]]
    if not head.local_only:
        out.append(f"  image {plan.image}")
    out += ["", tabulate(rows, headers=_headers(plan, columns), tablefmt="simple",
                        disable_numparse=True)]
    if plan.removed:
        out += ["", f"removed vs {plan.base_ref}:"]
        out += [f"  {t.name} ({t.trial_id})" for t in plan.removed]
    return "\n".join(out)




MAX_LISTED_REMOVED = 50


def _markdown_header(plan: Plan) -> list[str]:
    """Title, hypothesis, objective and what the experiment overrides: every string is
    from the PR, so each is escaped (never markup) and kept to one line."""
    head = plan.header
    lines = []
    if head.title:
        lines.append(f"**{md_cell(_cut(head.title))}**")
    if head.hypothesis:
        lines.append(f"> **Hypothesis:** {md_cell(_cut(head.hypothesis))}")
    if lines:
        lines.append("")
    lines += [f"- {md_cell(line)}" for line in header_lines(plan)]
    return lines


def render_markdown(plan: Plan) -> str:
    """The PR comment body; past GitHub's 65,536 characters only the first rows are kept."""
    from tabulate import tabulate

    columns = plan.changed_keys
    rows = [[md_cell(cell) for cell in _row(plan, t, columns)] for t in plan.trials]
    headers = [md_cell(h) for h in _headers(plan, columns)]
    summary = summary_lines(plan)
    head = [marker(plan.experiment), f"### sweepctl plan: `{plan.experiment}`", "",
            *_markdown_header(plan)]
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
    image = "" if plan.header.local_only else f"Image `{md_cell(plan.image)}`. "
    tail += ["", f"<sub>{image}Trial 0 is the baseline; other rows show only the keys they "
             "change.</sub>"]

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
        "image": None if plan.header.local_only else plan.image,
        "title": plan.header.title, "hypothesis": plan.header.hypothesis,
        "objective": {"metric": plan.header.objective, "goal": plan.header.goal,
                      "target": plan.header.target},
        "runtime_overrides": {k: masked(v) for k, v in plan.header.overrides},
        "ignored_warnings": list(plan.header.ignored_warnings),
        "trials": [trial(t) for t in plan.trials],
        "count": len(plan.trials),
        "budget": {"max_trials": plan.max_trials, "gpu_hours": plan.gpu_hours_budget,
                   "hours_per_trial": plan.hours_per_trial},
        "gpus_per_trial": plan.gpus_per_trial,
        "search": None if not plan.search_trials else {
            "trials": plan.search_trials, "note": plan.search_note},
        "gpu_hours": plan.gpu_hours,
        "gpu_hours_to_run": plan.gpu_hours_to_run if plan.tracking_uri else plan.gpu_hours,
        "over_budget": not plan.ok,
        "dropped": plan.dropped,
        # the baseline's value of each changed key: the baseline row of the comment
        "baseline": {k: plan.baseline[k] for k in plan.changed_keys if k in plan.baseline},
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


# `plan --format json` output read back from a PR's artifact (untrusted: the PR's own code
# wrote it) by pr-comment.yml, which renders the comment itself with render_markdown
MAX_PLAN_TRIALS = 10_000
_EXPERIMENT = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HEX = re.compile(r"[0-9a-f]{1,64}")
_STRATEGY = re.compile(r"[a-z][a-z0-9_-]{0,30}")


class _Reader:
    """Typed getters over untrusted JSON that raise one clear error naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, expected: str) -> SweepctlError:
        return SweepctlError(f"{self.where}: {field} must be {expected}; not a sweepctl plan")

    def text(self, data: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None = None,
             optional: bool = False, limit: int = 500) -> Any:
        value = data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or len(value) > limit or (
                pattern is not None and not pattern.fullmatch(value)):
            raise self.fail(key, "a string" if pattern is None else f"like {pattern.pattern}")
        return value

    def number(self, data: Mapping[str, Any], key: str, integer: bool = False) -> Any:
        value = data.get(key)
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not (
                0 <= value < 1e12):
            raise self.fail(key, "a non-negative " + ("integer" if integer else "number"))
        return value

    def mapping(self, data: Mapping[str, Any], key: str, optional: bool = False) -> Any:
        value = data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, dict) or not all(isinstance(k, str) and len(k) <= 200
                                                  for k in value):
            raise self.fail(key, "an object")
        return value

    def items(self, data: Mapping[str, Any], key: str) -> list[Any]:
        value = data.get(key)
        if not isinstance(value, list) or len(value) > MAX_PLAN_TRIALS or not all(
                isinstance(item, dict) for item in value):
            raise self.fail(key, f"a list of at most {MAX_PLAN_TRIALS} objects")
        return value


def _header_from_data(read: _Reader, data: Mapping[str, Any], *,
                      local_only: bool) -> PlanHeader:
    objective = read.mapping(data, "objective")
    target = objective.get("target")
    if target is not None and (isinstance(target, bool)
                               or not isinstance(target, int | float)):
        raise read.fail("objective.target", "a number or null")
    goal = read.text(objective, "goal", optional=True) or ""
    if goal not in ("", "minimize", "maximize"):
        raise read.fail("objective.goal", "minimize or maximize")
    overrides = read.mapping(data, "runtime_overrides")
    warnings = data.get("ignored_warnings")
    if not isinstance(warnings, list) or not all(isinstance(w, str) and _STRATEGY.fullmatch(w)
                                                 for w in warnings):
        raise read.fail("ignored_warnings", "a list of rule ids")
    return PlanHeader(
        title=read.text(data, "title", optional=True, limit=2000) or "",
        hypothesis=read.text(data, "hypothesis", optional=True, limit=20_000) or "",
        objective=read.text(objective, "metric", optional=True, limit=200) or "", goal=goal,
        target=target, local_only=local_only,
        # values were masked and formatted when the plan was written: shown as text
        overrides=tuple((key, str(read.text(overrides, key, limit=2000)))
                        for key in overrides),
        ignored_warnings=tuple(warnings))


def _trial_from_data(read: _Reader, data: Mapping[str, Any]) -> PlannedTrial:
    change = read.text(data, "vs_base", optional=True)
    if change not in (None, "new", "unchanged"):
        raise read.fail("vs_base", "new, unchanged or null")
    trial = Trial(index=read.number(data, "index", integer=True),
                  slug=read.text(data, "slug", _NAME), params=read.mapping(data, "changes"),
                  config={}, trial_id=read.text(data, "trial_id", _HEX),
                  name=read.text(data, "name", _NAME),
                  replicate=read.number(data, "replicate", integer=True))
    return PlannedTrial(trial, change, read.text(data, "reused_run", _HEX, optional=True))


def plan_from_data(data: Any, where: str = "plan") -> Plan:
    """The Plan that ``plan_data`` wrote, rebuilt from untrusted JSON: every field checked
    for its type and (names, ids) its pattern; strings are escaped later, by the renderer."""
    read = _Reader(where)
    if not isinstance(data, dict):
        raise read.fail("the plan", "an object")
    budget = read.mapping(data, "budget")
    base = read.mapping(data, "base", optional=True)
    reuse = read.mapping(data, "reuse", optional=True)
    removed = () if base is None else tuple(
        _trial_from_data(read, {"index": 1, "slug": item.get("name"), "replicate": 0,
                                **item}).trial for item in read.items(base, "removed"))
    search = read.mapping(data, "search", optional=True)
    image = read.text(data, "image", optional=True)
    return Plan(
        experiment=read.text(data, "experiment", _EXPERIMENT), path=read.text(data, "path"),
        strategy=read.text(data, "strategy", _STRATEGY), image=image or "",
        header=_header_from_data(read, data, local_only=image is None),
        gpus_per_trial=read.number(data, "gpus_per_trial", integer=True),
        search_trials=0 if search is None else read.number(search, "trials", integer=True),
        search_note=None if search is None else read.text(search, "note", optional=True),
        trials=tuple(_trial_from_data(read, t) for t in read.items(data, "trials")),
        baseline=read.mapping(data, "baseline", optional=True) or {},
        max_trials=read.number(budget, "max_trials", integer=True),
        gpu_hours_budget=read.number(budget, "gpu_hours"),
        hours_per_trial=read.number(budget, "hours_per_trial"),
        base_ref=None if base is None else read.text(base, "ref", limit=200),
        base_note=None if base is None else read.text(base, "note", optional=True),
        removed=removed,
        # render_markdown only asks whether a tracking store was consulted
        tracking_uri=None if reuse is None else "(consulted)",
        reuse_note=None if reuse is None else read.text(reuse, "note", optional=True),
        dropped=read.number(data, "dropped", integer=True))
