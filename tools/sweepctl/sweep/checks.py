"""Validator rules about the sweep: keys, derived expressions, one-at-a-time, budget.

Called by ``spec/rules.py`` once experiment.yaml, baseline.yaml and sweep.yaml passed
their schemas. Every finding points at the YAML node it is about.

Rules: ``sweep-unknown-key``, ``sweep-owned-key``, ``derived-syntax``,
``derived-unknown-name``, ``derived-shadows-parameter``, ``derived-value``,
``sweep-range``, ``ofat-multiple-changes``, ``ofat-no-change`` (warning),
``sweep-duplicate-trial`` (warning, ``list`` only: a grid or random point equal to the
baseline is expected and simply is trial 0), ``replicates-need-seed``,
``budget-max-trials``, ``budget-gpu-hours``, ``sweep-value-invalid`` (a value the sweep
can produce breaks baseline.schema.json's type, enum or range for its key).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweepctl.findings import Findings
from sweepctl.runtime import deep_merge
from sweepctl.spec.model import OWNED_KEYS
from sweepctl.spec.policy import read_defaults
from sweepctl.spec.yamlload import Document, Key, Mark
from sweepctl.sweep.derived import DerivedError, parse
from sweepctl.sweep.expand import (
    MAX_POINTS,
    Point,
    SweepError,
    draw_value,
    parameter_names,
    resolve_points,
)
from sweepctl.sweep.tpe_checks import check_tpe
from sweepctl.values import format_value


def _value_mark(doc: Document, key: Key, col: int | None) -> Mark:
    """Position of column ``col`` inside a scalar value (skipping an opening quote)."""
    mark = doc.mark(key)
    if col is None:
        return mark
    try:
        line = doc.path.read_text(encoding="utf-8").splitlines()[mark.line - 1]
    except (OSError, IndexError, UnicodeDecodeError):
        line = ""
    quoted = mark.col - 1 < len(line) and line[mark.col - 1] in "'\""
    return Mark(mark.line, mark.col + col - 1 + (1 if quoted else 0))


def _key_sources(sweep: Mapping[str, Any]) -> list[tuple[str, Key]]:
    """Every key the sweep sets, with where it is written."""
    sources: list[tuple[str, Key]] = [(str(k), ("parameters", k))
                                      for k in sweep.get("parameters") or {}]
    trials = sweep.get("trials")
    if isinstance(trials, list):
        for i, item in enumerate(trials):
            if isinstance(item, Mapping):
                sources.extend((str(k), ("trials", i, k)) for k in item)
    sources.extend((str(k), ("derived", k)) for k in sweep.get("derived") or {})
    return sources


def _check_keys(sweep_doc: Document, baseline: Mapping[str, Any], findings: Findings) -> None:
    from sweepctl.spec import known_keys

    reported: set[str] = set()
    for key, where in _key_sources(sweep_doc.data):
        mark = sweep_doc.key_mark(where)
        if key in OWNED_KEYS:
            findings.error(sweep_doc.path, mark.line, mark.col,
                           f"{key!r} is set by sweepctl for each trial; it cannot be swept",
                           "sweep-owned-key")
            continue
        if key in baseline or known_keys.is_known(key) or key in reported:
            continue
        reported.add(key)
        hint = known_keys.suggest(key)
        message = f"{key!r} is neither in baseline.yaml nor a known LLaMA-Factory key"
        if hint:
            message += f"; did you mean {hint!r}?"
        findings.error(sweep_doc.path, mark.line, mark.col, message, "sweep-unknown-key")


def _check_derived(sweep_doc: Document, findings: Findings) -> bool:
    sweep: Mapping[str, Any] = sweep_doc.data
    params = set(parameter_names(sweep))
    ok = True
    for key, source in (sweep.get("derived") or {}).items():
        where: Key = ("derived", key)
        if key in params:
            mark = sweep_doc.key_mark(where)
            findings.error(sweep_doc.path, mark.line, mark.col,
                           f"{key!r} is both a sweep parameter and derived; keep one",
                           "derived-shadows-parameter")
            ok = False
        try:
            expression = parse(source)
        except DerivedError as exc:
            mark = _value_mark(sweep_doc, where, exc.col)
            findings.error(sweep_doc.path, mark.line, mark.col, f"derived {key}: {exc.message}",
                           "derived-syntax")
            ok = False
            continue
        for name in sorted(expression.names - params):
            mark = _value_mark(sweep_doc, where, expression.name_col(name))
            listed = ", ".join(sorted(params)) or "none"
            findings.error(sweep_doc.path, mark.line, mark.col,
                           f"derived {key} uses {name!r}, which is not a sweep parameter "
                           f"(derived values use parameters only; parameters: {listed})",
                           "derived-unknown-name")
            ok = False
    return ok


def _check_ranges(sweep_doc: Document, findings: Findings) -> bool:
    sweep: Mapping[str, Any] = sweep_doc.data
    if sweep.get("strategy") not in ("random", "tpe"):
        return True  # tpe: every dimension is checked, not only those round 1 happens to draw
    ok = True
    for key, spec in (sweep.get("parameters") or {}).items():
        try:
            draw_value(random.Random(0), str(key), spec)
        except SweepError as exc:
            mark = sweep_doc.mark(exc.key)
            findings.error(sweep_doc.path, mark.line, mark.col, str(exc), exc.rule)
            ok = False
    return ok


def _value_error(sweep_doc: Document, where: Key, key: str, value: Any,
                 findings: Findings, note: str = "") -> None:
    from sweepctl.spec.schemas import value_problems

    for problem in value_problems("baseline", key, value):
        mark = sweep_doc.mark(where)
        findings.error(sweep_doc.path, mark.line, mark.col, problem + note,
                       "sweep-value-invalid")


def _check_distribution(sweep_doc: Document, key: str, spec: Mapping[str, Any],
                        findings: Findings) -> None:
    from sweepctl.spec.schemas import property_type

    where: Key = ("parameters", key)
    for i, choice in enumerate(spec.get("choices") or []):
        _value_error(sweep_doc, (*where, "choices", i), key, choice, findings)
    for bound in ("low", "high"):
        if bound in spec:
            _value_error(sweep_doc, (*where, bound), key, spec[bound], findings)
    kind = spec.get("distribution", "choices" if "choices" in spec else "uniform")
    if kind in ("uniform", "log_uniform") and property_type("baseline", key) == "integer":
        mark = sweep_doc.mark((*where, "distribution"))
        findings.error(sweep_doc.path, mark.line, mark.col,
                       f"{key}: {kind} draws fractional values but {key} is an integer; use "
                       "int_uniform", "sweep-value-invalid")


def _check_values(sweep_doc: Document, findings: Findings) -> None:
    """Each value the strategy sets meets the baseline schema's rule for its key: the
    trainer would otherwise fail on it seconds into a launched trial."""
    sweep: Mapping[str, Any] = sweep_doc.data
    for key, spec in (sweep.get("parameters") or {}).items():
        if isinstance(spec, list):  # grid, one-at-a-time
            for i, value in enumerate(spec):
                _value_error(sweep_doc, ("parameters", key, i), str(key), value, findings)
        elif isinstance(spec, Mapping):  # random (and any sampler with the same specs)
            _check_distribution(sweep_doc, str(key), spec, findings)
    trials = sweep.get("trials")
    for i, trial in enumerate(trials if isinstance(trials, list) else []):
        for key, value in trial.items():
            _value_error(sweep_doc, ("trials", i, key), str(key), value, findings)


def _check_derived_values(sweep_doc: Document, points: list[Point], findings: Findings) -> None:
    derived: Mapping[str, Any] = sweep_doc.data.get("derived") or {}
    for point in points[1:]:
        inputs = ", ".join(f"{k}={_format(v)}" for k, v in point.values.items())
        for key in derived:
            if key in point.config:
                _value_error(sweep_doc, ("derived", key), str(key), point.config[key],
                             findings, f" (derived from {inputs})")


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, str) else format_value(value)


def _check_ofat(sweep_doc: Document, points: list[Point], findings: Findings) -> None:
    expressions = {k: parse(v) for k, v in (sweep_doc.data.get("derived") or {}).items()}
    for point in points[1:]:
        if point.replicate:
            continue
        mark = sweep_doc.mark(point.source)
        # a derived key that follows the swept key is part of the same change (alpha = 2 * r)
        counted = [k for k in point.changes if k in point.values or (
            k != "seed" and not (k in expressions and expressions[k].names & set(point.values)))]
        if not point.changes:
            key, value = next(iter(point.values.items()))
            findings.warning(sweep_doc.path, mark.line, mark.col,
                             f"{key}: {_format(value)} is the baseline's value, so this trial "
                             "is the baseline (trial 0) and does not run again",
                             "ofat-no-change")
        elif len(counted) > 1:
            findings.error(sweep_doc.path, mark.line, mark.col,
                           f"this one-at-a-time trial changes {len(counted)} keys vs the "
                           f"baseline ({', '.join(counted)}); change one thing at a time",
                           "ofat-multiple-changes")


def _check_duplicates(sweep_doc: Document, points: list[Point], findings: Findings) -> None:
    for point in points[1:]:
        if point.replicate or point.duplicate_of is None:
            continue
        mark = sweep_doc.mark(point.source)
        original = points[point.duplicate_of]
        what = ("the baseline (trial 0)" if not original.source
                else f"trial {int(original.source[-1]) + 1} of the list")
        findings.warning(sweep_doc.path, mark.line, mark.col,
                         f"this trial repeats {what}: same resolved config, so it runs once",
                         "sweep-duplicate-trial")


def gpus_of(folder: Path, experiment: Mapping[str, Any]) -> tuple[int, int]:
    """(gpus_per_trial, nodes_per_trial) of the resolved runtime: defaults.yaml beside the
    folder (parsed once per version of the file) merged with the experiment's
    ``runtime:``. The Kubernetes figures count even for the local backend: the budget is
    the cluster's, and a sweep tried locally first is launched there after the merge."""
    runtime = experiment.get("runtime")
    merged = deep_merge(read_defaults(folder), runtime if isinstance(runtime, Mapping) else {})
    k8s = merged.get("kubernetes")
    k8s = k8s if isinstance(k8s, Mapping) else {}

    def count(key: str, least: int) -> int:
        value = k8s.get(key, 1)
        # a wrong type is the schema's finding; count one rather than a second error
        valid = isinstance(value, int) and not isinstance(value, bool) and value >= least
        return int(value) if valid else 1

    # gpus_per_trial 0 runs on CPU: no GPU-hours at all
    return count("gpus_per_trial", 0), count("nodes_per_trial", 1)


def _check_budget(folder: Path, sweep_doc: Document, experiment: Mapping[str, Any], count: int,
                  findings: Findings) -> None:
    sweep: Mapping[str, Any] = sweep_doc.data
    budget: Mapping[str, Any] = experiment.get("budget") or {}
    mark = sweep_doc.key_mark(("trials",) if "trials" in sweep else ("parameters",))
    max_trials = budget.get("max_trials")
    if isinstance(max_trials, int) and count > max_trials:
        findings.error(sweep_doc.path, mark.line, mark.col,
                       f"the sweep makes {count} trials (baseline and replicates included); "
                       f"budget.max_trials in experiment.yaml is {max_trials}",
                       "budget-max-trials")
    hours, per_trial = budget.get("gpu_hours"), budget.get("hours_per_trial")
    if isinstance(hours, int | float) and isinstance(per_trial, int | float):
        gpus, nodes = gpus_of(folder, experiment)
        need = count * per_trial * gpus * nodes
        if need > hours:
            per_trial_gpus = "" if gpus * nodes == 1 else (
                f" x {gpus} GPU(s)" + (f" x {nodes} nodes" if nodes > 1 else ""))
            findings.error(sweep_doc.path, mark.line, mark.col,
                           f"{count} trials x {per_trial:g} h{per_trial_gpus} = {need:g} "
                           f"GPU-hours; budget.gpu_hours in experiment.yaml is {hours:g}",
                           "budget-gpu-hours")


def check_sweep(folder: Path, docs: Mapping[str, Document], findings: Findings) -> None:
    """Append the sweep's findings (see the module docstring for the rules)."""
    sweep_doc, baseline_doc = docs.get("sweep"), docs.get("baseline")
    if sweep_doc is None or baseline_doc is None or not isinstance(sweep_doc.data, Mapping):
        return
    baseline: Mapping[str, Any] = baseline_doc.data if isinstance(baseline_doc.data,
                                                                   Mapping) else {}
    _check_keys(sweep_doc, baseline, findings)
    _check_values(sweep_doc, findings)
    check_tpe(docs, findings)
    derived_ok = _check_derived(sweep_doc, findings)
    ranges_ok = _check_ranges(sweep_doc, findings)
    if not (derived_ok and ranges_ok):
        return  # expansion would only repeat those errors
    try:
        points = resolve_points(baseline, sweep_doc.data, limit=MAX_POINTS)
    except SweepError as exc:
        mark = _value_mark(sweep_doc, exc.key, exc.col)
        findings.error(sweep_doc.path, mark.line, mark.col, str(exc), exc.rule)
        return
    _check_derived_values(sweep_doc, points, findings)
    strategy = sweep_doc.data.get("strategy")
    if strategy == "one-at-a-time":
        _check_ofat(sweep_doc, points, findings)
    if strategy == "list":
        _check_duplicates(sweep_doc, points, findings)
    experiment_doc = docs.get("experiment")
    # tpe: tpe_checks counts the whole search (every round), not the first round shown here
    if (experiment_doc is not None and isinstance(experiment_doc.data, Mapping)
            and strategy != "tpe"):
        count = sum(1 for p in points if p.duplicate_of is None)
        _check_budget(folder, sweep_doc, experiment_doc.data, count, findings)
