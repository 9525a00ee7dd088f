"""Adaptive search (``strategy: tpe``): one round of ask and tell, rebuilt from scratch.

Every launch calls ``propose`` with what MLflow knows (``Told``), so the proposals follow
from git and MLflow alone:

* The first ``startup_size`` points (at least the first round) are the sweep's seeded
  random stream, exactly as ``strategy: random`` draws them: there is nothing to learn
  from yet, and validate and plan can show round 1 without importing Optuna.
* After that, an in-memory Optuna study with a ``TPESampler`` is built each time. The
  sampler's seed comes from the sweep's ``seed`` and the number of trials told (that
  fit the space); told
  trials are added sorted by trial id (COMPLETE with their value, FAIL, PRUNED, RUNNING)
  so the order MLflow returns runs in does not matter. ``constant_liar`` makes RUNNING
  trials (and the ones asked earlier in the same round) count as bad results, which
  steers the sampler away from what is already being tried.
* Told trials whose values do not fit the current space (the space was edited in a PR)
  are left out: the study is rebuilt over the runs that still fit it.
* Proposals are rounded like ``random`` (4 significant digits) so trial ids are stable;
  a proposal equal to a point already known is told to the study and asked again, so a
  small discrete space cannot stall the search on one repeated point.

The same inputs give the same proposals in any process: a launch that crashes between
ask and create proposes the same trials again on the next launch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sweepctl.spec.model import Objective
from sweepctl.sweep.expand import (
    SIGNIFICANT_DIGITS,
    SweepError,
    count_points,
    first_round_size,
    fresh_draws,
    point_key,
    startup_size,
)
from sweepctl.sweep.identity import canonical_json

if TYPE_CHECKING:  # optuna is imported inside functions: validate must not load it
    import optuna

# MLflow tags on trials proposed by tpe (render/trainconfig.trial_tags sets them).
TAG_ROUND = "sweepctl.round"          # 1 for the first round, 2 for the next, ...
TAG_PROPOSAL = "sweepctl.proposal"    # canonical JSON of the proposed parameter point

State = Literal["COMPLETE", "FAIL", "RUNNING", "PRUNED"]
STATES: tuple[State, ...] = ("COMPLETE", "FAIL", "RUNNING", "PRUNED")
FINISHED: tuple[State, ...] = ("COMPLETE", "FAIL", "PRUNED")
# Re-asks allowed per wanted proposal when the sampler keeps proposing known points.
MAX_REASKS = 20


@dataclass(frozen=True)
class Told:
    """One trial run MLflow knows about, as the study is told it."""

    params: Mapping[str, Any]  # the trial's params as applied (changes vs the baseline)
    state: State
    value: float | None        # objective; for PRUNED the last intermediate value
    trial_id: str
    replicate: int = 0         # replicates > 0 are extra measurements of the same point
    name: str = ""             # for messages; the trial id when empty

    @property
    def label(self) -> str:
        return self.name or self.trial_id


def state_of(status: str, *, pruned: bool = False) -> State:
    """How a run's MLflow status is told: FINISHED is COMPLETE (PRUNED when the runner
    stopped it early), FAILED and KILLED are FAIL, anything else is still RUNNING."""
    if status == "FINISHED":
        return "PRUNED" if pruned else "COMPLETE"
    return "FAIL" if status in ("FAILED", "KILLED") else "RUNNING"


def round_tags(round_number: int, point: Mapping[str, Any]) -> dict[str, str]:
    """The MLflow tags of a trial proposed in round ``round_number`` (1 = expand's)."""
    return {TAG_ROUND: str(round_number), TAG_PROPOSAL: canonical_json(dict(point))}


def plan_note(sweep: Mapping[str, Any]) -> str:
    """What ``plan`` says after the first round's trials."""
    later = (count_points(sweep) - first_round_size(sweep)) * _positive(
        sweep.get("replicates"), 1)
    batch = _positive(sweep.get("batch"), 1)
    if later <= 0:
        return "no later rounds: the first round spends the budget"
    return (f"up to {later} more trial(s), proposed by TPE as results arrive "
            f"({batch} per launch; the search stops early when objective.target is met)")


def space(sweep: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep's parameters in spec order: a distribution mapping or a constant."""
    params: Mapping[str, Any] = sweep.get("parameters") or {}
    return {str(k): ({"choices": v} if isinstance(v, list) else v) for k, v in params.items()}


def _full_point(params: Mapping[str, Any], baseline: Mapping[str, Any],
                names: Sequence[str]) -> dict[str, Any]:
    """The told trial's value of every parameter (a key it did not change is the baseline's)."""
    return {k: params[k] if k in params else baseline.get(k) for k in names}


def _fits(value: Any, spec: Any) -> bool:
    if not isinstance(spec, Mapping):
        return bool(canonical_json(value) == canonical_json(spec))
    if "choices" in spec:
        return any(type(value) is type(c) and value == c for c in spec["choices"])
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    if spec.get("distribution") == "int_uniform" and not isinstance(value, int):
        return False
    return bool(spec["low"] <= value <= spec["high"])


def fits(sweep: Mapping[str, Any], baseline: Mapping[str, Any],
         params: Mapping[str, Any]) -> bool:
    """Whether a proposed point (a key it does not set is the baseline's) lies in the
    current space: a point of an edited space's past is no longer part of the search."""
    dims = space(sweep)
    point = _full_point(params, baseline, list(dims))
    return all(_fits(point[k], dims[k]) for k in dims)


def fitting(sweep: Mapping[str, Any], baseline: Mapping[str, Any],
            told: Sequence[Told]) -> list[tuple[Told, dict[str, Any]]]:
    """Told trials whose point lies in the current space, sorted by trial id."""
    names = list(space(sweep))
    return [(item, _full_point(item.params, baseline, names))
            for item in sorted(told, key=lambda t: (t.trial_id, t.replicate))
            if fits(sweep, baseline, item.params)]


def points_used(told: Sequence[Told]) -> int:
    """Budget used by proposals: distinct non-baseline trials told (replicate 0)."""
    return len({t.trial_id for t in told if t.params and t.replicate == 0})


def finished(sweep: Mapping[str, Any], told: Sequence[Told], objective: Objective) -> str | None:
    """Why the search is over ("target met by <trial> after k trials", "budget spent"),
    or None while it goes on. The baseline counts: it can meet the target too."""
    done = [t for t in told if t.state in FINISHED]
    hits = sorted((t for t in done if t.state == "COMPLETE" and _finite(t.value)
                   and objective.met(float(t.value or 0.0))),
                  key=lambda t: (float(t.value or 0.0) * (1 if objective.goal == "minimize"
                                                          else -1), t.trial_id))
    if hits:
        return f"target met by {hits[0].label} after {len(done)} trials"
    if points_used(told) >= count_points(sweep):
        return "budget spent"
    return None


def round_size(sweep: Mapping[str, Any], told: Sequence[Told], objective: Objective) -> int:
    """How many points to propose now: min(batch, trials left, max_parallel - running)."""
    if finished(sweep, told, objective) is not None:
        return 0
    batch = _positive(sweep.get("batch"), 1)
    parallel = _positive(sweep.get("max_parallel"), batch)
    running = sum(1 for t in told if t.state == "RUNNING")
    left = count_points(sweep) - points_used(told)
    return max(0, min(batch, left, parallel - running))


def propose(sweep: Mapping[str, Any], baseline: Mapping[str, Any], told: Sequence[Told],
            objective: Objective, *, n: int) -> list[dict[str, Any]]:
    """The next ``n`` parameter points (full points, spec order), deterministic."""
    if n <= 0:
        return []
    kept = fitting(sweep, baseline, told)
    used = sum(1 for t, _ in kept if t.params and t.replicate == 0)
    known = {point_key(sweep, p) for _, p in kept} | {point_key(sweep, {**baseline})}
    proposals = fresh_draws(sweep, known, max(0, min(n, startup_size(sweep) - used)))
    if len(proposals) < n:
        proposals += _ask(sweep, kept, proposals, known, objective, n - len(proposals),
                          seed=_seed(sweep, len(kept)))
    return proposals


def _ask(sweep: Mapping[str, Any], kept: Sequence[tuple[Told, dict[str, Any]]],
         pending: Sequence[dict[str, Any]], known: set[str], objective: Objective, n: int,
         *, seed: int) -> list[dict[str, Any]]:
    import optuna

    dims = space(sweep)
    dists = _distributions(dims)
    with _quiet():
        # independent TPE with more EI candidates: on bench/search.py it needs fewer
        # trials than multivariate TPE or the defaults (measured; see the README)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=0,
                                             constant_liar=True, multivariate=False,
                                             n_ei_candidates=64)
        study = optuna.create_study(direction=objective.goal, sampler=sampler)
        for item, point in kept:
            study.add_trial(_frozen(item.state, item.value, point, dists))
        for point in pending:
            study.add_trial(_frozen("RUNNING", None, point, dists))
        asked: list[dict[str, Any]] = []
        for _ in range(n * MAX_REASKS):
            if len(asked) == n:
                break
            trial = study.ask(dists)
            point = {k: (_snap(trial.params[k], dims[k]) if k in dists else dims[k])
                     for k in dims}
            if point_key(sweep, point) in known:
                # known: tell it as a failure so the sampler moves on instead of repeating
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            known.add(point_key(sweep, point))
            asked.append(point)
    return asked


def _frozen(state: State, value: float | None, point: Mapping[str, Any],
            dists: Mapping[str, optuna.distributions.BaseDistribution]
            ) -> optuna.trial.FrozenTrial:
    import optuna

    params = {k: point[k] for k in dists}
    if state == "COMPLETE" and not _finite(value):
        state = "FAIL"  # a finished run without a usable objective tells nothing
    if state == "PRUNED":
        steps = {0: value} if value is not None and math.isfinite(value) else None
        return optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params=params,
                                         distributions=dict(dists), intermediate_values=steps)
    return optuna.trial.create_trial(state=optuna.trial.TrialState[state], params=params,
                                     distributions=dict(dists),
                                     value=float(value or 0.0) if state == "COMPLETE" else None)


def _distributions(dims: Mapping[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    dists: dict[str, BaseDistribution] = {}
    for key, spec in dims.items():
        if not isinstance(spec, Mapping):
            continue  # a constant: set on every trial, nothing to search
        kind = "choices" if "choices" in spec else spec.get("distribution")
        if kind == "choices":
            dists[key] = CategoricalDistribution(list(spec["choices"]))
        elif kind == "int_uniform":
            dists[key] = IntDistribution(math.ceil(spec["low"]), math.floor(spec["high"]))
        elif kind in ("uniform", "log_uniform"):
            dists[key] = FloatDistribution(float(spec["low"]), float(spec["high"]),
                                           log=kind == "log_uniform")
        else:
            raise SweepError(f"{key}: unknown distribution {kind!r}", ("parameters", key),
                             "sweep-range")
    return dists


def _snap(value: Any, spec: Mapping[str, Any]) -> Any:
    """Round a float like ``random`` does, kept inside [low, high]."""
    if "choices" in spec or isinstance(value, bool) or not isinstance(value, float):
        return value
    if spec.get("distribution") == "int_uniform":
        return int(value)
    rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}") if value else value
    return min(max(rounded, float(spec["low"])), float(spec["high"]))


def _seed(sweep: Mapping[str, Any], told: int) -> int:
    base = sweep.get("seed", 0)
    base = base if isinstance(base, int) and not isinstance(base, bool) else 0
    return (base * 1_000_003 + told) % 2**32


def _positive(value: Any, default: int) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return int(value) if ok else default


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@contextmanager
def _quiet() -> Iterator[None]:
    """Optuna logs each study and warns that constant_liar is experimental; a library
    must not print, and tests turn warnings into errors."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)
