"""``strategy: tpe`` as a reconcile: each launch is one round of ask and tell.

Nothing is stored besides MLflow runs: every trial proposed so far is rebuilt from the
runs tagged ``sweepctl.proposal`` (``render/trainconfig.trial_tags`` writes it with the
round), the study is told their states and objective values (``sweep/tpe.py``), and the
next batch is asked for. So the trials of a tpe experiment are the baseline, every point
proposed in an earlier round (that still fits the space in git) and this round's new
ones; launch, status, compare and report all see the same list (``with_proposals``).

Before any proposal exists the first round is ``expand``'s (what ``plan`` showed). A
launch that crashed between ask and create told MLflow nothing, so the next one asks
the same question and gets the same points (same trial ids). A trial whose Job or
process exists but has no MLflow run yet (a pod still pending) cannot be rebuilt (its
point is not in MLflow): if this round re-proposes it, the backend sees it running;
if not, it still holds a slot of the round and of the budget, so fewer are proposed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sweepctl.backends import Observed
from sweepctl.results.compare import Comparison
from sweepctl.runindex import RunIndex
from sweepctl.sweep import tpe
from sweepctl.sweep.expand import count_points, count_trials, point_key, trials_for_points
from sweepctl.sweep.trial import Trial
from sweepctl.workspace import ResolvedExperiment

__all__ = ["next_round", "search_note", "search_plan", "with_proposals",
           "with_search_verdict"]
TAG_PRUNED = "sweepctl.pruned"
LIVE_PHASES = ("pending", "suspended", "running")


def search_plan(sweep: Mapping[str, Any]) -> dict[str, Any]:
    """What a tpe plan adds to ``sweep.plan.Plan``: the whole search's trial count (the
    budget is checked against it) and the note after round 1's trials."""
    if sweep.get("strategy") != "tpe":
        return {}
    return {"search_trials": count_trials(sweep), "search_note": tpe.plan_note(sweep)}


def is_tpe(resolved: ResolvedExperiment) -> bool:
    return resolved.experiment.sweep.get("strategy") == "tpe"


def _proposals(resolved: ResolvedExperiment, index: RunIndex) -> list[tuple[int, dict[str, Any]]]:
    """(round, point) of every distinct point proposed so far that fits the space in git,
    in a deterministic order (round, then the point's canonical key)."""
    experiment = resolved.experiment
    rounds: dict[str, tuple[int, dict[str, Any]]] = {}
    for run in index.runs_of(experiment.mlflow_experiment, resolved.name):
        raw = run.tags.get(tpe.TAG_PROPOSAL)
        if not raw:
            continue
        try:
            point = json.loads(raw)
            number = int(run.tags.get(tpe.TAG_ROUND, "0"))
        except ValueError:
            continue  # a hand-edited tag: not a proposal sweepctl made
        if not isinstance(point, dict) or not tpe.fits(experiment.sweep, experiment.baseline,
                                                      point):
            continue
        key = point_key(experiment.sweep, point)
        if key not in rounds or number < rounds[key][0]:
            rounds[key] = (number, point)
    return sorted(rounds.values(), key=lambda item: (item[0], point_key(experiment.sweep,
                                                                          item[1])))


def _rebuilt(resolved: ResolvedExperiment, proposals: Sequence[tuple[int, dict[str, Any]]]
             ) -> list[Trial]:
    """The baseline (and its replicates) plus the trials of ``proposals``."""
    experiment = resolved.experiment
    trials = [t for t in resolved.trials if t.is_baseline]
    seen = {t.trial_id for t in trials}
    for number, point in proposals:
        for trial in trials_for_points(experiment, resolved.image, [point], len(trials)):
            if trial.trial_id not in seen:
                seen.add(trial.trial_id)
                trials.append(dataclasses.replace(trial, index=len(trials),
                                                  round_number=number))
    return trials


def with_proposals(resolved: ResolvedExperiment, index: RunIndex) -> ResolvedExperiment:
    """A tpe experiment with the trials proposed so far (round 1 as planned before any);
    any other experiment unchanged. What status and compare list."""
    if not is_tpe(resolved):
        return resolved
    proposals = _proposals(resolved, index)
    if not proposals:
        return _first_round(resolved)
    return dataclasses.replace(resolved, trials=tuple(_rebuilt(resolved, proposals)))


def _first_round(resolved: ResolvedExperiment) -> ResolvedExperiment:
    trials = tuple(t if t.is_baseline else dataclasses.replace(t, round_number=1)
                   for t in resolved.trials)
    return dataclasses.replace(resolved, trials=trials)


def _told(resolved: ResolvedExperiment, trials: Sequence[Trial], index: RunIndex
          ) -> list[tpe.Told]:
    """How the study is told each trial: its run's state and objective; a trial without
    a run is about to run (this launch starts it), so it is RUNNING."""
    metric = resolved.experiment.objective.metric
    names = list(resolved.experiment.sweep.get("parameters") or {})
    told = []
    for trial in trials:
        run = index.latest(trial.trial_id)
        params = {} if trial.is_baseline else {k: trial.config.get(k) for k in names}
        if run is None:
            told.append(tpe.Told(params, "RUNNING", None, trial.trial_id, trial.replicate,
                                 trial.name))
            continue
        value = run.metrics.get(metric)
        told.append(tpe.Told(params, tpe.state_of(run.status,
                                                  pruned=run.tags.get(TAG_PRUNED) == "true"),
                             float(value) if value is not None else None, trial.trial_id,
                             trial.replicate, trial.name))
    return told


def next_round(resolved: ResolvedExperiment, index: RunIndex,
               observed: Mapping[str, Observed]) -> ResolvedExperiment:
    """The experiment launch reconciles: for tpe, the trials proposed so far plus this
    round's new proposals (none once the search is over); others unchanged."""
    if not is_tpe(resolved):
        return resolved
    proposals = _proposals(resolved, index)
    if not proposals:
        return _first_round(resolved)
    experiment = resolved.experiment
    trials = _rebuilt(resolved, proposals)
    index.confirm(t.trial_id for t in trials)   # what the study is told is what MLflow says
    told = _told(resolved, trials, index)
    wanted = tpe.round_size(experiment.sweep, told, experiment.objective)
    points = tpe.propose(experiment.sweep, experiment.baseline, told, experiment.objective,
                         n=wanted)
    number = 1 + max(n for n, _ in proposals)
    fresh = [dataclasses.replace(t, round_number=number) for t in
             trials_for_points(experiment, resolved.image, points, len(trials))]
    index.confirm(t.trial_id for t in fresh)    # a reuse launch decides on, read again
    fresh = _within_slots(fresh, trials, index, observed, wanted, resolved)
    return dataclasses.replace(resolved, trials=(*trials, *fresh))


def _within_slots(fresh: Sequence[Trial], known: Sequence[Trial], index: RunIndex,
                  observed: Mapping[str, Observed], wanted: int,
                  resolved: ResolvedExperiment) -> list[Trial]:
    """This round's trials minus the slots taken by live trials MLflow has no run of
    (re-proposed ones are kept: the backend judges them running)."""
    ids = {t.trial_id for t in known}
    live = {tid for tid, seen in observed.items()
            if seen.phase in LIVE_PHASES and tid not in ids and index.get(tid) is None}
    sweep = resolved.experiment.sweep
    replicates = sweep.get("replicates", 1) if isinstance(sweep.get("replicates"), int) else 1
    # each live trial MLflow cannot place takes a slot, unless this round re-proposed it
    elsewhere = math.ceil(len(live - {t.trial_id for t in fresh}) / max(1, replicates))
    points = {point_key(sweep, t.config) for t in fresh if t.trial_id in live}
    for trial in fresh:  # then the new points, in the order TPE asked for them
        if len(points) >= wanted - elsewhere:
            break
        points.add(point_key(sweep, trial.config))
    return [t for t in fresh if point_key(sweep, t.config) in points]


def search_note(resolved: ResolvedExperiment, index: RunIndex) -> str | None:
    """For tpe: "target met by <trial> after k trials", "budget spent", or how far the
    search has come; None for other strategies."""
    if not is_tpe(resolved):
        return None
    experiment = resolved.experiment
    trials = with_proposals(resolved, index).trials
    told = _told(resolved, trials, index)
    done = tpe.finished(experiment.sweep, told, experiment.objective)
    if done is not None:
        return done
    return (f"search goes on: {tpe.points_used(told)} of {count_points(experiment.sweep)} "
            "proposals made")


def with_search_verdict(comparison: Comparison, resolved: ResolvedExperiment,
                        index: RunIndex) -> Comparison:
    """The comparison whose verdict also says whether the adaptive search is over."""
    note = search_note(resolved, index)
    if note is None:
        return comparison
    return dataclasses.replace(comparison, verdict_text=f"{comparison.verdict_text}; {note}")
