"""From a sweep spec to trials: deterministic expansion for every strategy.

Decisions (design.md "The experiment folder" leaves them open):

* Order: the baseline first, then the strategy's points in spec order (grid: the
  product in ``parameters`` order, the last key varying fastest; one-at-a-time: each
  key's values in turn; random: draw by draw; list: as listed). Each point is followed
  by its replicates.
* Replicates repeat EVERY point, the baseline too (a mean +- std is only comparable
  with a baseline measured the same way), with seeds ``seed``, ``seed+1``, ...
  where ``seed`` is the point's own seed (the baseline's unless the sweep sets it).
* Duplicates: a point whose resolved config equals the baseline's or an earlier
  point's is the same work with the same id; it is dropped (once is enough), and
  ``resolve_points`` marks it so the validator can warn and the plan can say so.
* Random draws use ``random.Random(sweep.seed)`` (default 0), parameters drawn in
  sorted key order so reordering the YAML does not change the trials; floats are
  rounded to 4 significant digits, which keeps the values readable and makes them the
  same on every platform's libm.
* ``derived`` values are computed per trial from the resolved config (a parameter the
  point does not set takes the baseline's value).
* ``budget.max_trials`` counts every trial that will exist: baseline and replicates too.
* ``tpe``: ``trials`` is the whole budget, baseline included. ``expand`` shows the
  baseline and the first round only; that round has nothing to learn from, so it is
  drawn exactly like ``random`` with the same seed (no Optuna on the validate and plan
  path). Later rounds come from ``sweep/tpe.py`` and become trials through
  ``trials_for_points``, the same path as here.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweepctl.errors import SweepctlError
from sweepctl.spec.model import Experiment
from sweepctl.sweep.derived import DerivedError, Expression, parse
from sweepctl.sweep.identity import (
    IdentityError,
    canonical_json,
    identity_config,
    kube_name,
    slug,
    trial_id,
)
from sweepctl.sweep.trial import Trial

Key = tuple[str | int, ...]

# A hard cap before anything is materialised: a grid of 12 keys x 10 values must be
# refused in microseconds, not expanded into a trillion dicts.
MAX_POINTS = 10_000
SIGNIFICANT_DIGITS = 4
STRATEGIES = ("grid", "one-at-a-time", "random", "list", "tpe")


class SweepError(SweepctlError):
    """A sweep that cannot be expanded; ``key`` is where in sweep.yaml (when known)."""

    def __init__(self, message: str, key: Key = (), rule: str = "sweep-invalid",
                 col: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.rule = rule
        self.col = col  # column inside the value (a derived expression), when known


@dataclass(frozen=True)
class Point:
    """One trial-to-be: what the sweep sets, and the resolved result."""

    values: Mapping[str, Any]         # keys the strategy sets (before derived and seed)
    changes: Mapping[str, Any]        # keys whose resolved value differs from the baseline
    config: Mapping[str, Any]         # baseline + values + derived + replicate seed
    source: Key = ()                  # where in sweep.yaml the point comes from
    replicate: int = 0
    duplicate_of: int | None = None   # index (in the full list) of the point it repeats
    derived_keys: frozenset[str] = field(default_factory=frozenset)


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def parameter_names(sweep: Mapping[str, Any]) -> list[str]:
    """The keys a sweep varies, in spec order (for ``list``: every key any trial sets)."""
    names: dict[str, None] = {}
    for key in sweep.get("parameters") or {}:
        names[str(key)] = None
    trials = sweep.get("trials")
    if isinstance(trials, list):
        for item in trials:
            if isinstance(item, Mapping):
                names.update((str(k), None) for k in item)
    return list(names)


def parse_derived(sweep: Mapping[str, Any]) -> dict[str, Expression]:
    """Every ``derived`` expression, parsed; names must be sweep parameters."""
    params = set(parameter_names(sweep))
    parsed: dict[str, Expression] = {}
    for key, source in (sweep.get("derived") or {}).items():
        where: Key = ("derived", key)
        try:
            expression = parse(source)
        except DerivedError as exc:
            raise SweepError(f"derived {key}: {exc.message}", where, "derived-syntax",
                             exc.col) from None
        unknown = sorted(expression.names - params)
        if unknown:
            raise SweepError(f"derived {key} uses {', '.join(unknown)}, which "
                             f"{'is' if len(unknown) == 1 else 'are'} not a sweep parameter "
                             "(derived values are computed from parameters only)", where,
                             "derived-unknown-name")
        if key in params:
            raise SweepError(f"{key} is both a sweep parameter and derived; keep one", where,
                             "derived-shadows-parameter")
        parsed[str(key)] = expression
    return parsed


def count_points(sweep: Mapping[str, Any]) -> int:
    """How many points the strategy makes before derived, replicates and de-duplication."""
    strategy = sweep.get("strategy")
    params: Mapping[str, Any] = sweep.get("parameters") or {}
    trials = sweep.get("trials")
    if strategy == "grid":
        return math.prod(len(_as_list(v)) for v in params.values()) if params else 0
    if strategy == "one-at-a-time":
        return sum(len(_as_list(v)) for v in params.values())
    if strategy == "random":
        return int(trials) if isinstance(trials, int) and not isinstance(trials, bool) else 0
    if strategy == "list":
        return len(trials) if isinstance(trials, list) else 0
    if strategy == "tpe":
        return _whole(trials) - 1 if _whole(trials) else 0
    raise SweepError(f"unknown strategy {strategy!r}; use one of: {', '.join(STRATEGIES)}",
                     ("strategy",))


def count_trials(sweep: Mapping[str, Any]) -> int:
    """Upper bound on the trials (baseline and replicates included), cheap to compute."""
    return (count_points(sweep) + 1) * _replicates(sweep)


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def first_round_size(sweep: Mapping[str, Any]) -> int:
    """``tpe``: points proposed by the first launch, before any result is known."""
    batch = _whole(sweep.get("batch")) or 1
    parallel = _whole(sweep.get("max_parallel")) or batch
    return max(0, min(batch, count_points(sweep), parallel))


def startup_size(sweep: Mapping[str, Any]) -> int:
    """``tpe``: how many points are drawn at random before TPE takes over (>= round 1)."""
    return max(_whole(sweep.get("startup_trials")), first_round_size(sweep))


def _replicates(sweep: Mapping[str, Any]) -> int:
    value = sweep.get("replicates", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SweepError(f"replicates must be a whole number >= 1, got {value!r}",
                         ("replicates",))
    return value


def _grid(params: Mapping[str, Any]) -> list[tuple[dict[str, Any], Key]]:
    keys = list(params)
    combos = itertools.product(*(_as_list(params[k]) for k in keys))
    return [(dict(zip(keys, combo, strict=True)), ("parameters",)) for combo in combos]


def _one_at_a_time(sweep: Mapping[str, Any]) -> list[tuple[dict[str, Any], Key]]:
    points: list[tuple[dict[str, Any], Key]] = []
    for key, values in (sweep.get("parameters") or {}).items():
        for i, value in enumerate(_as_list(values)):
            where: Key = ("parameters", key, i) if isinstance(values, list) else (
                "parameters", key)
            points.append(({key: value}, where))
    return points


def _listed(sweep: Mapping[str, Any]) -> list[tuple[dict[str, Any], Key]]:
    trials = sweep.get("trials")
    if not isinstance(trials, list):
        return []
    points: list[tuple[dict[str, Any], Key]] = []
    for i, item in enumerate(trials):
        if not isinstance(item, Mapping):
            raise SweepError(f"trial {i + 1} must be a mapping of key: value", ("trials", i))
        points.append((dict(item), ("trials", i)))
    return points


def draw_value(rng: random.Random, key: str, spec: Any) -> Any:
    where: Key = ("parameters", key)
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, Mapping):
        return spec  # a constant: set on every trial
    if "choices" in spec:
        choices = _as_list(spec["choices"])
        if not choices:
            raise SweepError(f"{key}: choices is empty", where, "sweep-range")
        return rng.choice(choices)
    kind = spec.get("distribution", "uniform")
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise SweepError(f"{key}: {kind} needs numeric low and high", where, "sweep-range")
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if low > high:
        raise SweepError(f"{key}: low {low} is above high {high}", where, "sweep-range")
    if kind == "uniform":
        return _round(rng.uniform(low, high))
    if kind == "log_uniform":
        if low <= 0:
            raise SweepError(f"{key}: log_uniform needs low > 0, got {low}", where,
                             "sweep-range")
        return _round(math.exp(rng.uniform(math.log(low), math.log(high))))
    if kind == "int_uniform":
        return rng.randint(math.ceil(low), math.floor(high))
    raise SweepError(f"{key}: unknown distribution {kind!r} (uniform, log_uniform, "
                     "int_uniform, or choices)", where, "sweep-range")


def random_draws(sweep: Mapping[str, Any], start: int, count: int) -> list[dict[str, Any]]:
    """Draws ``start`` .. ``start + count - 1`` of the sweep's seeded random stream."""
    seed = sweep.get("seed", 0)
    rng = random.Random(seed if isinstance(seed, int) else str(seed))
    params: Mapping[str, Any] = sweep.get("parameters") or {}
    points: list[dict[str, Any]] = []
    for _ in range(start + count):
        drawn = {key: draw_value(rng, key, params[key]) for key in sorted(params)}
        # present them in spec order; the draw order above is what must stay stable
        points.append({key: drawn[key] for key in params})
    return points[start:]


def point_key(sweep: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """Identity of a parameter point (the swept keys only), to spot repeats."""
    return canonical_json({str(k): values.get(k) for k in sweep.get("parameters") or {}})


def fresh_draws(sweep: Mapping[str, Any], known: set[str], count: int) -> list[dict[str, Any]]:
    """``tpe`` startup: the first ``count`` draws of the random stream that are not in
    ``known`` (point keys) nor repeat each other; ``known`` gains them. Told startup
    points are themselves early draws, so each round walks the same stream on."""
    walked = (count + len(known)) * 20  # a small discrete space may run out of points
    taken: list[dict[str, Any]] = []
    for point in random_draws(sweep, 0, walked if count else 0):
        if len(taken) == count:
            break
        key = point_key(sweep, point)
        if key not in known:
            known.add(key)
            taken.append(point)
    return taken


def _random(sweep: Mapping[str, Any], count: int) -> list[tuple[dict[str, Any], Key]]:
    return [(point, ("parameters",)) for point in random_draws(sweep, 0, count)]


def raw_points(sweep: Mapping[str, Any]) -> list[tuple[dict[str, Any], Key]]:
    strategy = sweep.get("strategy")
    if strategy == "grid":
        return _grid(sweep.get("parameters") or {})
    if strategy == "one-at-a-time":
        return _one_at_a_time(sweep)
    if strategy == "random":
        return _random(sweep, count_points(sweep))
    if strategy == "list":
        return _listed(sweep)
    if strategy == "tpe":
        raise SweepError("tpe points depend on the baseline: use tpe_first_round",
                         ("strategy",))
    raise SweepError(f"unknown strategy {strategy!r}; use one of: {', '.join(STRATEGIES)}",
                     ("strategy",))


def _same(a: Any, b: Any) -> bool:
    if a is b:  # most keys are the baseline's own object: skip canonicalising them
        return True
    try:
        return canonical_json(a) == canonical_json(b)
    except IdentityError:
        return False


def _resolve(baseline: Mapping[str, Any], values: Mapping[str, Any],
             derived: Mapping[str, Expression]) -> dict[str, Any]:
    config = {**baseline, **values}
    for key, expression in derived.items():
        try:
            config[key] = expression.evaluate(config)
        except DerivedError as exc:
            raise SweepError(f"derived {key}: {exc.message}", ("derived", key),
                             "derived-value", exc.col) from None
    return config


def _changes(baseline: Mapping[str, Any], config: Mapping[str, Any],
             order: Sequence[str]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for key in dict.fromkeys([*order, *config]):
        if key in config and (key not in baseline or not _same(baseline[key], config[key])):
            changed[key] = config[key]
    return changed


def resolve_points(baseline: Mapping[str, Any], sweep: Mapping[str, Any],
                   limit: int = MAX_POINTS) -> list[Point]:
    """Every point, baseline first, resolved, with duplicates marked (not removed)."""
    total = count_trials(sweep)
    if total > limit:
        raise SweepError(f"the sweep makes {total} trials; sweepctl expands at most {limit}",
                         ("strategy",), "budget-max-trials")
    raw = (tpe_first_round(baseline, sweep) if sweep.get("strategy") == "tpe"
           else raw_points(sweep))
    return _resolve_all(baseline, sweep, [({}, ()), *raw])


def tpe_first_round(baseline: Mapping[str, Any],
                    sweep: Mapping[str, Any]) -> list[tuple[dict[str, Any], Key]]:
    """``tpe`` round 1: fresh random draws (not the baseline's point, no repeats)."""
    known = {point_key(sweep, {**baseline})}
    return [(p, ("parameters",)) for p in fresh_draws(sweep, known, first_round_size(sweep))]


def _resolve_all(baseline: Mapping[str, Any], sweep: Mapping[str, Any],
                 points: Sequence[tuple[Mapping[str, Any], Key]]) -> list[Point]:
    """Derived keys, replicates and duplicate marks for ``points`` in order."""
    replicates = _replicates(sweep)
    derived = parse_derived(sweep)
    if replicates > 1 and "seed" not in baseline and not any("seed" in v for v, _ in points):
        raise SweepError(f"replicates: {replicates} needs a seed in baseline.yaml (replicates "
                         "run with seed, seed+1, ...)", ("replicates",), "replicates-need-seed")
    resolved: list[Point] = []
    seen: dict[str, int] = {}
    for values, source in points:
        config = _resolve(baseline, values, derived)
        seed = config.get("seed")
        if replicates > 1 and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise SweepError(f"replicates need a whole-number seed, got {seed!r}", source,
                             "replicates-need-seed")
        for replicate in range(replicates):
            final = dict(config)
            if replicates > 1:
                final["seed"] = int(config["seed"]) + replicate
            order = [*values, *derived, "seed"]
            try:
                key = canonical_json(identity_config(final))
            except IdentityError as exc:
                raise SweepError(str(exc), source) from None
            resolved.append(Point(values=values, changes=_changes(baseline, final, order),
                                  config=final, source=source, replicate=replicate,
                                  duplicate_of=seen.get(key),
                                  derived_keys=frozenset(derived)))
            seen.setdefault(key, len(resolved) - 1)
    return resolved


def expand_points(baseline: Mapping[str, Any], sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The changes of each distinct trial vs the baseline, baseline (``{}``) first."""
    return [dict(p.changes) for p in resolve_points(baseline, sweep) if p.duplicate_of is None]


def expand(experiment: Experiment, image: str, *, enforce_budget: bool = True) -> list[Trial]:
    """The experiment's trials, baseline first, duplicates dropped, ids assigned.

    ``enforce_budget=False`` is for ``plan``, which shows an over-budget sweep as such.
    For ``tpe`` the budget counted is ``trials`` (all rounds), not the first round.
    """
    points = [p for p in resolve_points(experiment.baseline, experiment.sweep)
              if p.duplicate_of is None]
    count = (count_trials(experiment.sweep) if experiment.sweep.get("strategy") == "tpe"
             else len(points))
    if enforce_budget and count > experiment.budget.max_trials:
        raise SweepError(f"{experiment.name}: the sweep makes {count} trials (baseline "
                         f"and replicates included); budget.max_trials is "
                         f"{experiment.budget.max_trials}", ("strategy",), "budget-max-trials")
    return _trials(experiment, image, points, 0)


def trials_for_points(experiment: Experiment, image: str,
                      points: Sequence[Mapping[str, Any]], start_index: int) -> list[Trial]:
    """Trials for proposed points (``tpe`` rounds): derived keys, replicates and ids as in
    ``expand``; indexes count on from ``start_index``. A point equal to the baseline or
    to an earlier point of ``points`` is dropped, as ``expand`` drops it."""
    resolved = _resolve_all(experiment.baseline, experiment.sweep,
                            [({}, ()), *((dict(p), ("parameters",)) for p in points)])
    fresh = [p for p in resolved[_replicates(experiment.sweep):] if p.duplicate_of is None]
    return _trials(experiment, image, fresh, start_index)


def _trials(experiment: Experiment, image: str, points: Sequence[Point],
            start_index: int) -> list[Trial]:
    trials = []
    for index, point in enumerate(points, start_index):
        ident = trial_id(point.config, image, experiment.dataset.sha256)
        label = slug(point.changes)
        trials.append(Trial(index=index, slug=label, params=dict(point.changes),
                            config=dict(point.config), trial_id=ident,
                            name=kube_name(experiment.name, label, ident),
                            replicate=point.replicate))
    return trials
