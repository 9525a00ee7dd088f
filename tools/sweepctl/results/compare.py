"""The comparison: one row per trial (replicates folded), joined from the expected trials
and the MLflow runs by trial id.

Pure functions over plain data: ``build_comparison`` takes the expected trials and the
runs and returns a ``Comparison``; ``usecases.compare`` reads them from the run index.
A trial without a usable run is shown as failed / running / missing, never dropped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweepctl.clients.mlflow_store import TAG_TRIAL, RunRecord
from sweepctl.results.cost import NOISE, contended_runs, robust_sweet_spot
from sweepctl.spec.model import Objective
from sweepctl.sweep.trial import Trial

DEFAULT_TOLERANCE = 0.02
# the transformers MLflow callback logs `loss` per step (latest = final) and `train_loss`
# once at the end as the mean over training; the last step's loss is what people quote.
TRAIN_LOSS_KEYS = ("loss", "train_loss")
RUNTIME_KEY = "train_runtime"
THROUGHPUT_KEY = "train_samples_per_second"
RUNNING_STATES = ("RUNNING", "SCHEDULED")
TAG_OUTPUT_DIR = "sweepctl.output_dir"  # set by the runner: the trial's output (adapter)


@dataclass(frozen=True)
class Row:
    """One trial of the sweep (all its replicates), or a run outside the current sweep."""

    label: str
    index: int                          # the trial's index; -1 for runs outside the sweep
    params: Mapping[str, Any]           # only the parameters that vary across the sweep
    status: str                         # finished | failed | killed | running | missing | ...
    expected: int                       # trials (replicates) this row stands for
    finished: int
    objective: float | None = None      # mean over finished replicates
    objective_std: float | None = None  # sample std when >= 2 replicates finished
    train_loss: float | None = None
    runtime: float | None = None        # seconds, mean
    samples_per_s: float | None = None
    delta_objective_pct: float | None = None
    delta_runtime_pct: float | None = None
    trial_ids: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()
    finished_run_ids: tuple[str, ...] = ()  # the FINISHED replicates' runs (curves)
    adapter: str | None = None              # where the first finished run's output is
    experiment_id: str | None = None
    values: tuple[float, ...] = ()      # per-replicate objective values (for sensitivity)
    statuses: tuple[str, ...] = ()      # one per replicate
    in_sweep: bool = True

    @property
    def is_baseline(self) -> bool:
        return self.index == 0


@dataclass(frozen=True)
class Comparison:
    experiment: str
    metric: str
    goal: str
    target: float | None
    tolerance: float
    varied: tuple[str, ...]
    rows: tuple[Row, ...]
    best: Row | None
    sweet_spot: Row | None
    verdict: str                         # met | not_met | no_target | no_results
    verdict_text: str
    counts: Mapping[str, int] = field(default_factory=dict)
    tracking_uri: str | None = None
    runtime_note: str | None = None      # why runtime could not call the sweet spot
    # the keys the sweep derives (its ``derived:``), which get no sensitivity of their own;
    # None when the caller does not know the spec (then they are inferred from the rows)
    derived: frozenset[str] | None = None

    @property
    def expected(self) -> int:
        return self.counts.get("expected", 0)

    @property
    def complete(self) -> bool:
        return self.counts.get("running", 0) == 0 and self.counts.get("missing", 0) == 0

    @property
    def baseline(self) -> Row | None:
        return next((row for row in self.rows if row.is_baseline), None)

    def tolerance_text(self) -> str:
        return (f"sweet spot = the fastest trial (lowest train_runtime) whose {self.metric} is "
                f"within {self.tolerance:.0%} of the best and saves more than {NOISE:.0%} of "
                "its runtime, measured alone")


def varied_parameters(trials: Sequence[Trial]) -> tuple[str, ...]:
    """Keys whose resolved value differs between trials, in first-seen order.

    ``seed`` is left out when the sweep has replicates: it is what a replicate changes.
    """
    keys: list[str] = []
    for trial in trials:
        keys.extend(k for k in trial.params if k not in keys)
    has_replicates = any(t.replicate > 0 for t in trials)
    varied = []
    for key in keys:
        if key == "seed" and has_replicates:
            continue
        if len({repr(t.config.get(key, t.params.get(key))) for t in trials}) > 1:
            varied.append(key)
    return tuple(varied)


def _choose_run(runs: Sequence[RunRecord]) -> RunRecord:
    """Among the runs of one trial id (retries), the newest finished one, else the newest."""
    ordered = sorted(runs, key=lambda r: r.start_time or 0, reverse=True)
    return next((r for r in ordered if r.status == "FINISHED"), ordered[0])


def _status(run: RunRecord | None) -> str:
    if run is None:
        return "missing"
    if run.status in RUNNING_STATES:
        return "running"
    if run.cancelled:
        return "cancelled"
    return run.status.lower()


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _metric(run: RunRecord, keys: Sequence[str]) -> float | None:
    """The first of ``keys`` the run logged, when it is a finite number.

    MLflow stores NaN as logged (a diverged trial's loss): a NaN would win or poison every
    comparison and mean it touches and is not valid JSON, so it counts as no value.
    """
    value = next((float(run.metrics[k]) for k in keys if k in run.metrics), None)
    return value if value is not None and math.isfinite(value) else None


def adapter_of(run: RunRecord) -> str | None:
    """Where the run's trained adapter is: the runner's tag, else the ``output_dir``
    param the transformers MLflow callback logs with every TrainingArguments field."""
    return run.tags.get(TAG_OUTPUT_DIR) or run.params.get("output_dir") or None


def _row_status(statuses: Sequence[str]) -> str:
    distinct = sorted(set(statuses), key=statuses.index)
    if len(distinct) == 1:
        return distinct[0]
    return ", ".join(f"{statuses.count(s)} {s}" for s in distinct)


def _build_row(label: str, index: int, params: Mapping[str, Any], trial_ids: Sequence[str],
               runs: Sequence[RunRecord | None], metric: str, in_sweep: bool = True) -> Row:
    statuses = [_status(run) for run in runs]
    done = [run for run in runs if run is not None and run.status == "FINISHED"]
    values = [v for v in (_metric(r, (metric,)) for r in done) if v is not None]
    # finished, logged the objective, but NaN/inf: say so instead of a silent "–"
    bad = [r.metrics[metric] for r in done
           if metric in r.metrics and _metric(r, (metric,)) is None]
    runtimes = [v for v in (_metric(r, (RUNTIME_KEY,)) for r in done) if v is not None]
    losses = [v for v in (_metric(r, TRAIN_LOSS_KEYS) for r in done) if v is not None]
    speeds = [v for v in (_metric(r, (THROUGHPUT_KEY,)) for r in done) if v is not None]
    present = [run for run in runs if run is not None]
    status = _row_status(statuses)
    if bad:
        status += (f" ({metric} = {bad[0]})" if len(done) == 1
                   else f" ({len(bad)} with {metric} = nan/inf)")
    return Row(
        label=label, index=index, params=dict(params), status=status,
        expected=len(runs), finished=len(done),
        objective=_mean(values),
        objective_std=statistics.stdev(values) if len(values) >= 2 else None,
        train_loss=_mean(losses), runtime=_mean(runtimes), samples_per_s=_mean(speeds),
        trial_ids=tuple(trial_ids), run_ids=tuple(r.run_id for r in present),
        finished_run_ids=tuple(r.run_id for r in done),
        adapter=next((a for a in map(adapter_of, done) if a), None),
        experiment_id=next((r.experiment_id for r in present), None),
        values=tuple(values), statuses=tuple(statuses), in_sweep=in_sweep,
    )


def _pct(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return (value - base) / abs(base) * 100.0


def _with_deltas(row: Row, baseline: Row | None) -> Row:
    if baseline is None:
        return row
    from dataclasses import replace

    return replace(row, delta_objective_pct=_pct(row.objective, baseline.objective),
                   delta_runtime_pct=_pct(row.runtime, baseline.runtime))


def pick_best(rows: Sequence[Row], objective: Objective) -> Row | None:
    best: Row | None = None
    for row in rows:
        if not row.in_sweep or row.objective is None:
            continue
        if best is None or objective.better(row.objective, best.objective or 0.0):
            best = row
    return best


def pick_sweet_spot(rows: Sequence[Row], best: Row | None, tolerance: float) -> Row | None:
    """The cheapest trial whose objective is within ``tolerance`` (relative) of the best."""
    if best is None or best.objective is None:
        return None
    margin = abs(best.objective) * tolerance
    close = [r for r in rows if r.in_sweep and r.objective is not None
             and abs(r.objective - best.objective) <= margin + 1e-12]
    timed = [r for r in close if r.runtime is not None]
    if not timed:
        return best
    return min(timed, key=lambda r: (r.runtime or 0.0, r is not best))


def _verdict(best: Row | None, objective: Objective, metric: str,
             counts: Mapping[str, int]) -> tuple[str, str]:
    progress = f"{counts['finished']} of {counts['expected']} trials finished"
    if best is None or best.objective is None:
        return "no_results", f"no results yet ({progress})"
    value = f"best {metric} {best.objective:.4g} ({best.label})"
    pending = counts["running"] + counts["missing"]
    tail = f"; {progress}, may still change" if pending else ""
    if objective.target is None:
        return "no_target", f"no target set: {value}{tail}"
    sign = "<" if objective.goal == "minimize" else ">"
    if objective.met(best.objective):
        return "met", f"target met: {value} {sign} {objective.target:g}{tail}"
    return "not_met", f"target not met: {value}, target {sign} {objective.target:g}{tail}"


def _counts(rows: Sequence[Row]) -> dict[str, int]:
    """Trial states over the sweep's rows (replicates each count), and the runs outside."""
    swept = [r for r in rows if r.in_sweep]
    states = [state for row in swept for state in row.statuses]
    return {
        "expected": len(states),
        "finished": states.count("finished"),
        "failed": states.count("failed") + states.count("killed"),
        "cancelled": states.count("cancelled"),
        "running": states.count("running"),
        "missing": states.count("missing"),
        "outside_sweep": len(rows) - len(swept),
    }


def build_comparison(experiment: str, trials: Sequence[Trial], runs: Sequence[RunRecord],
                     objective: Objective, tolerance: float = DEFAULT_TOLERANCE,
                     tracking_uri: str | None = None,
                     default_host: str | None = None,
                     derived: frozenset[str] | None = None) -> Comparison:
    """Join expected trials with their runs (by trial id, then by trial name) into rows.

    ``default_host`` is the host of a run without a ``sweepctl.host`` tag (the local
    backend: this machine), so overlapping local runs count as measured under contention.
    ``derived`` is the sweep's derived keys (see ``Comparison.derived``).
    """
    varied = varied_parameters(trials)
    rows = _joined_rows(trials, runs, varied, objective.metric)
    baseline = next((r for r in rows if r.is_baseline and r.objective is not None), None)
    rows = [_with_deltas(row, baseline) for row in rows]
    counts = _counts(rows)
    best = pick_best(rows, objective)
    verdict, verdict_text = _verdict(best, objective, objective.metric, counts)
    spot = robust_sweet_spot(rows, best, tolerance, contended_runs(runs, default_host))
    return Comparison(
        experiment=experiment, metric=objective.metric, goal=objective.goal,
        target=objective.target, tolerance=tolerance, varied=varied, rows=tuple(rows),
        best=best, sweet_spot=spot.row, verdict=verdict,
        verdict_text=verdict_text, counts=counts, tracking_uri=tracking_uri,
        runtime_note=spot.note, derived=derived,
    )


def _joined_rows(trials: Sequence[Trial], runs: Sequence[RunRecord],
                 varied: Sequence[str], metric: str) -> list[Row]:
    """One row per group of replicates (in sweep order), then one per run of a trial
    no longer in the sweep."""
    by_id: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.trial_id:
            by_id.setdefault(run.trial_id, []).append(run)
    by_name: dict[str, str] = {}
    for run in runs:
        if run.trial_name and run.trial_id:
            by_name.setdefault(run.trial_name, run.trial_id)
    groups: dict[tuple[str, ...], list[Trial]] = {}
    for trial in sorted(trials, key=lambda t: (t.index, t.replicate)):
        key = tuple(repr(trial.config.get(k, trial.params.get(k))) for k in varied)
        groups.setdefault(key, []).append(trial)
    used: set[str] = set()
    rows: list[Row] = []
    for members in groups.values():
        first = members[0]
        chosen: list[RunRecord | None] = []
        for trial in members:
            # the id is the contract; the name is a fallback when ids were computed
            # with another image (a local run of a Kubernetes sweep)
            found_id = trial.trial_id if trial.trial_id in by_id else by_name.get(trial.name)
            found = by_id.get(found_id) if found_id else None
            if found_id and found:
                used.add(found_id)
            chosen.append(_choose_run(found) if found else None)
        label = first.slug
        params = {k: first.config.get(k, first.params.get(k)) for k in varied}
        rows.append(_build_row(label, first.index, params, [t.trial_id for t in members],
                               chosen, metric))
    for trial_id, extra in by_id.items():
        if trial_id in used:
            continue
        run = _choose_run(extra)
        params = {k: run.params[k] for k in varied if k in run.params}
        label = run.tags.get(TAG_TRIAL) or trial_id
        rows.append(_build_row(label, -1, params, [trial_id], [run], metric,
                               in_sweep=False))
    return rows
