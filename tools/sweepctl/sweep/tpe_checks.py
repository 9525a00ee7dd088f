"""Validator rules for ``strategy: tpe`` and ``early_stop`` (pure: no Optuna here).

Called once from ``sweep/checks.py`` ``check_sweep``. Rules:

(A tpe distribution that cannot be searched is ``sweep-range``, reported by checks.py
when it expands the first round.)
* ``tpe-batch-over-parallel``: ``batch`` above ``max_parallel`` (a round could not run
  at once, so it would not be one round).
* ``tpe-startup-over-trials``: ``startup_trials`` at or above ``trials`` (TPE would
  never run; use ``strategy: random``).
* ``budget-max-trials`` / ``budget-gpu-hours``: the WHOLE budget (``trials`` x
  replicates), not only the first round that ``expand`` shows (for tpe this is the
  only budget check; checks.py's counts the trials ``expand`` makes).
* ``early-stop-needs-eval``: ``early_stop`` (any strategy) needs ``eval_strategy:
  steps`` in baseline.yaml: the median rule compares intermediate evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweepctl.findings import Findings
from sweepctl.spec.yamlload import Document
from sweepctl.sweep.expand import SweepError, count_trials


def check_tpe(docs: Mapping[str, Document], findings: Findings) -> None:
    """Append the findings of the rules above (see the module docstring)."""
    sweep_doc = docs.get("sweep")
    if sweep_doc is None or not isinstance(sweep_doc.data, Mapping):
        return
    baseline_doc = docs.get("baseline")
    baseline = baseline_doc.data if baseline_doc is not None else None
    _check_early_stop(sweep_doc, baseline if isinstance(baseline, Mapping) else {}, findings)
    if sweep_doc.data.get("strategy") != "tpe":
        return
    _check_rounds(sweep_doc, findings)
    experiment_doc = docs.get("experiment")
    if experiment_doc is not None and isinstance(experiment_doc.data, Mapping):
        _check_budget(sweep_doc, experiment_doc.data, findings)


def _error(doc: Document, key: tuple[str | int, ...], message: str, rule: str,
           findings: Findings, *, at_key: bool = False) -> None:
    mark = doc.key_mark(key) if at_key else doc.mark(key)
    findings.error(doc.path, mark.line, mark.col, message, rule)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_rounds(sweep_doc: Document, findings: Findings) -> None:
    sweep: Mapping[str, Any] = sweep_doc.data
    batch, parallel = _whole(sweep.get("batch")), _whole(sweep.get("max_parallel"))
    if batch is not None and parallel is not None and batch > parallel:
        _error(sweep_doc, ("batch",), f"batch {batch} is above max_parallel {parallel}: a "
               "round is proposed at once and must be able to run at once",
               "tpe-batch-over-parallel", findings)
    startup, trials = _whole(sweep.get("startup_trials")), _whole(sweep.get("trials"))
    if startup is not None and trials is not None and startup >= trials:
        _error(sweep_doc, ("startup_trials",), f"startup_trials {startup} leaves no trial "
               f"for TPE (trials is {trials}, the baseline included); lower it or use "
               "strategy: random", "tpe-startup-over-trials", findings)


def _check_budget(sweep_doc: Document, experiment: Mapping[str, Any],
                  findings: Findings) -> None:
    sweep: Mapping[str, Any] = sweep_doc.data
    budget: Mapping[str, Any] = experiment.get("budget") or {}
    try:
        count = count_trials(sweep)  # the one budget check of a tpe sweep (checks.py skips it)
    except SweepError:
        return  # replicates is invalid: checks.py reports it
    max_trials = budget.get("max_trials")
    if isinstance(max_trials, int) and count > max_trials:
        _error(sweep_doc, ("trials",), f"the search may run {count} trials (baseline and "
               f"replicates included); budget.max_trials in experiment.yaml is {max_trials}",
               "budget-max-trials", findings, at_key=True)
    hours, per_trial = budget.get("gpu_hours"), budget.get("hours_per_trial")
    if not (isinstance(hours, int | float) and isinstance(per_trial, int | float)):
        return
    from sweepctl.sweep.checks import gpus_of  # checks imports this module

    gpus, nodes = gpus_of(sweep_doc.path.parent, experiment)
    needed = count * per_trial * gpus * nodes
    if needed > hours:
        held = f" x {gpus * nodes} GPU(s)" if gpus * nodes != 1 else ""
        _error(sweep_doc, ("trials",), f"{count} trials x {per_trial:g} h{held} = "
               f"{needed:g} GPU-hours for the whole search; budget.gpu_hours "
               f"in experiment.yaml is {hours:g}", "budget-gpu-hours", findings, at_key=True)


def _check_early_stop(sweep_doc: Document, baseline: Mapping[str, Any],
                      findings: Findings) -> None:
    if not isinstance(sweep_doc.data.get("early_stop"), Mapping):
        return
    strategy = baseline.get("eval_strategy", "no")
    if strategy != "steps":
        _error(sweep_doc, ("early_stop",), f"early_stop compares evaluations during "
               f"training, but baseline.yaml has eval_strategy: {strategy}; set "
               "eval_strategy: steps and eval_steps", "early-stop-needs-eval", findings,
               at_key=True)
