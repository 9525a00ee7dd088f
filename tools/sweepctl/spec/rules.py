"""Semantic rules: what JSON Schema cannot say about an experiment folder.

Each rule appends findings with the position of the offending key or value and a
kebab-case rule id. Rules run on whatever parsed, so one broken file never hides
the findings of the others; rules that need typed values run only on documents
that passed their schema (``schema_ok``), so a type error is reported once, by the
schema, not again as a confusing rule finding.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sweepctl.findings import Findings
from sweepctl.spec import known_keys
from sweepctl.spec.model import CHECKLIST_ITEMS, OWNED_KEYS, Experiment
from sweepctl.spec.yamlload import Document, Key

# The seed's "typical values" table: outside them is legal but usually a mistake.
TYPICAL_RANGES: dict[str, tuple[float, float]] = {
    "lora_rank": (8, 64),
    "lora_alpha": (16, 64),
    "lora_dropout": (0.0, 0.1),
    "learning_rate": (1e-5, 3e-4),
    "num_train_epochs": (1, 10),
    "per_device_train_batch_size": (1, 4),
    "gradient_accumulation_steps": (4, 16),
    "cutoff_len": (512, 4096),
    "val_size": (0.05, 0.2),
}
# Dataset versions that name a moving target, so they do not lock anything.
MOVING_VERSIONS = frozenset({"latest", "main", "master", "head", "current", "dev", "stable",
                             "newest", "tip", "*"})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _get(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- experiment

def _check_name(folder: Path, doc: Document, findings: Findings) -> None:
    name = _get(doc.data, "name")
    # `sweepctl validate .` from inside the folder: Path(".").name is "", the real name is
    # the absolute path's last part (abspath, not resolve: a symlink keeps the name it shows)
    folder_name = Path(os.path.abspath(folder)).name
    if isinstance(name, str) and name != folder_name:
        mark = doc.mark(("name",))
        findings.error(doc.path, mark.line, mark.col,
                       f"name {name!r} differs from the folder name {folder_name!r}; rename one "
                       "so they match", "name-mismatch")


def _check_eval_metric(docs: Mapping[str, Document], findings: Findings) -> None:
    # eval_* metrics exist only when LLaMA-Factory evaluates: a val split or an eval dataset
    exp, base = docs["experiment"], docs["baseline"]
    metric = _get(exp.data, "objective", "metric")
    if not (isinstance(metric, str) and metric.startswith("eval_")):
        return
    val_size = _get(base.data, "val_size")
    if (_is_number(val_size) and val_size > 0) or _get(base.data, "eval_dataset"):
        return
    mark = exp.mark(("objective", "metric"))
    findings.error(exp.path, mark.line, mark.col,
                   f"objective.metric {metric!r} is never logged: baseline.yaml has no val_size "
                   "> 0 and no eval_dataset", "metric-not-logged")


# --------------------------------------------------------------------------- baseline

def _check_baseline_keys(doc: Document, findings: Findings) -> None:
    from sweepctl.spec.schemas import load_schema

    described = load_schema("baseline").get("properties", {})
    for key in doc.data:
        mark = doc.key_mark((key,))
        if key in OWNED_KEYS:
            findings.error(doc.path, mark.line, mark.col,
                           f"{key!r} is set by sweepctl for each trial; remove it from "
                           "baseline.yaml", "owned-key")
            continue
        if key in described or known_keys.is_known(key):
            continue
        guess = known_keys.suggest(key)
        if guess is not None:
            findings.error(doc.path, mark.line, mark.col,
                           f"unknown key {key!r}: did you mean {guess!r}?", "near-miss-key")


def _check_baseline_values(doc: Document, findings: Findings) -> None:
    data = doc.data
    for key in TYPICAL_RANGES:
        if key in data:
            _typical(doc, (key,), key, data[key], data, findings)

    def at(key: str) -> tuple[int, int]:
        mark = doc.key_mark((key,))
        return mark.line, mark.col

    if data.get("fp16") is True and data.get("bf16") is True:
        findings.error(doc.path, *at("bf16"), "fp16 and bf16 are both true; LLaMA-Factory "
                       "accepts one mixed-precision mode", "precision-conflict")
    if data.get("quantization_bit") is not None and data.get("finetuning_type") in (
            "full", "freeze"):
        findings.error(doc.path, *at("quantization_bit"),
                       f"quantization_bit needs finetuning_type lora or oft, not "
                       f"{data['finetuning_type']!r}", "quantization-needs-adapter")
    val_size = data.get("val_size")
    if data.get("eval_dataset") and _is_number(val_size) and val_size > 0:
        findings.error(doc.path, *at("val_size"), "val_size and eval_dataset exclude each "
                       "other (LLaMA-Factory refuses both); keep one", "val-size-with-eval-dataset")


def _typical(doc: Document, where: Key, key: str, value: Any, config: Mapping[str, Any],
             findings: Findings) -> None:
    """Warn when ``value`` for ``key`` lies outside the seed's typical range."""
    if not _is_number(value) or key not in TYPICAL_RANGES or not math.isfinite(value):
        return  # NaN/infinity: non-finite-number already says so
    from sweepctl.spec.schemas import value_problems

    if value_problems("baseline", key, value):
        return  # not allowed at all: the schema's finding (or sweep-value-invalid) says so
    low, high = TYPICAL_RANGES[key]
    if key == "val_size" and value >= 1:
        return  # a row count, not a fraction
    if key == "lora_alpha" and _is_number(config.get("lora_rank")) and \
            value == 2 * config["lora_rank"]:
        return  # alpha = 2 x rank is the usual scaling at any rank
    if low <= value <= high:
        return
    mark = doc.mark(where)
    hint = " (or 2 x lora_rank)" if key == "lora_alpha" else ""
    findings.warning(doc.path, mark.line, mark.col,
                     f"{key} {_fmt(value)} is outside the typical range {_fmt(low)}-{_fmt(high)}"
                     f"{hint}", "typical-range")


def _check_sweep_values(sweep: Document, baseline: Mapping[str, Any],
                        findings: Findings) -> None:
    """Typical ranges for the values a sweep tries, not only the baseline's."""
    data = sweep.data
    params = data.get("parameters") or {}
    if data.get("strategy") in ("grid", "one-at-a-time"):
        for key, values in params.items():
            for i, value in enumerate(values):
                _typical(sweep, ("parameters", key, i), key, value, baseline, findings)
    elif data.get("strategy") == "random":
        for key, spec in params.items():
            for bound in ("low", "high"):
                if bound in spec:
                    _typical(sweep, ("parameters", key, bound), key, spec[bound], {}, findings)
    elif data.get("strategy") == "list":
        for i, trial in enumerate(data.get("trials") or []):
            merged = {**baseline, **trial}
            for key, value in trial.items():
                _typical(sweep, ("trials", i, key), key, value, merged, findings)


# --------------------------------------------------------------------------- checklist

class _Contradiction(Exception):
    """A file the claim depends on is missing altogether."""


class _Unverifiable(Exception):
    """A file the claim depends on exists but did not parse; its yaml-* finding says why."""


def _claim_problem(item: str, folder: Path, docs: Mapping[str, Document]) -> str | None:
    """Why the files contradict a ticked ``item``, or None when they back it up."""

    def need(kind: str) -> Document:
        doc = docs.get(kind)
        if doc is None:
            if (folder / f"{kind}.yaml").is_file():
                raise _Unverifiable(kind)
            raise _Contradiction(f"there is no {kind}.yaml")
        return doc

    def where(doc: Document, *path: str) -> str:
        # a line only when the key exists: the root's line would point at nothing useful
        key: Key = tuple(path)
        mark = doc.keys.get(key) or doc.values.get(key)
        return f"{doc.path.name}:{mark.line}" if mark is not None else doc.path.name

    try:
        if item == "baseline_defined":
            base = need("baseline")
            if not base.data:
                return "baseline.yaml is empty"
            if not isinstance(base.data, Mapping):
                return "baseline.yaml is not a mapping of LLaMA-Factory keys"
        elif item == "success_metric_defined":
            exp = need("experiment")
            if not _get(exp.data, "objective", "metric"):
                return f"{where(exp, 'objective')} has no objective.metric"
            if _get(exp.data, "objective", "target") is None:
                return f"{where(exp, 'objective')} has no objective.target (the success criterion)"
        elif item == "parameter_space_defined":
            sweep = need("sweep")
            if not _get(sweep.data, "parameters") and not _get(sweep.data, "trials"):
                return "sweep.yaml has neither parameters nor trials"
        elif item == "budget_defined":
            exp = need("experiment")
            for key in ("max_trials", "gpu_hours"):
                if _get(exp.data, "budget", key) is None:
                    return f"{where(exp, 'budget')} has no budget.{key}"
        elif item == "mlflow_experiment_created":
            exp = need("experiment")
            if not _get(exp.data, "mlflow", "experiment"):
                return f"{where(exp, 'mlflow')} names no mlflow.experiment"
        elif item == "dataset_version_locked":
            exp = need("experiment")
            version = _get(exp.data, "dataset", "version")
            if version is None or str(version).strip() == "":
                return f"{where(exp, 'dataset')} has no dataset.version"
            if str(version).strip().lower() in MOVING_VERSIONS:
                return (f"{where(exp, 'dataset', 'version')} dataset.version is {version!r}, a "
                        "moving name, not a fixed version")
            if not _get(exp.data, "dataset", "sha256"):
                return f"{where(exp, 'dataset')} has no dataset.sha256"
        elif item == "seed_set":
            base = need("baseline")
            if _get(base.data, "seed") is None:
                return "baseline.yaml has no 'seed'"
    except _Contradiction as exc:
        return str(exc)
    return None


def _check_checklist(folder: Path, docs: Mapping[str, Document], findings: Findings) -> None:
    doc = docs.get("checklist")
    if doc is None or not isinstance(doc.data, Mapping):
        return
    for item in CHECKLIST_ITEMS:
        value = doc.data.get(item)
        if not isinstance(value, bool):
            continue  # missing or mistyped: the schema reports it
        mark = doc.key_mark((item,))
        if value is False:
            findings.warning(doc.path, mark.line, mark.col,
                             f"{item} is not ticked; the experiment validates but will not launch",
                             "checklist-incomplete")
            continue
        try:
            problem = _claim_problem(item, folder, docs)
        except _Unverifiable:
            continue
        if problem is not None:
            findings.error(doc.path, mark.line, mark.col, f"{item} is true but {problem}",
                           f"checklist-{item.replace('_', '-')}")


# --------------------------------------------------------------------------- any file

def _check_finite(doc: Document, findings: Findings) -> bool:
    """NaN and infinity (`.nan`, `.inf`, `1e999`) pass JSON Schema's bounds (every comparison
    with NaN is false) but no config, trial id or budget can use them: report each where it
    is written. False when there was one."""
    ok = True
    stack: list[tuple[Key, Any]] = [((), doc.data)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            mark = doc.mark(key)
            where = "/".join(map(str, key)) or "document"
            findings.error(doc.path, mark.line, mark.col,
                           f"{where}: {value} is not a finite number; write a number",
                           "non-finite-number")
            ok = False
        elif isinstance(value, Mapping):
            stack.extend(((*key, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*key, i), v) for i, v in enumerate(value))
    return ok


# --------------------------------------------------------------------------- warnings.ignore

def ignored_warnings(experiment: Experiment | Mapping[str, Any]) -> frozenset[str]:
    """The warning rules an experiment acknowledges (``warnings.ignore`` in experiment.yaml):
    validate does not print them for its folder; the plan lists them. ``experiment`` is an
    ``Experiment`` or experiment.yaml's data. Only names the schema allows count (warning
    rules; an error rule there is a schema error, so it never hides anything)."""
    from sweepctl.spec.schemas import load_schema

    data = experiment.docs["experiment"].data if isinstance(experiment, Experiment) else experiment
    listed = _get(data, "warnings", "ignore")
    if not isinstance(listed, list):
        return frozenset()
    allowed = load_schema("experiment")["properties"]["warnings"]["properties"]["ignore"]
    return frozenset(rule for rule in listed if rule in allowed["items"]["enum"])


# --------------------------------------------------------------------------- entry points

def _sweep_checker() -> Callable[[Path, Mapping[str, Document], Findings], None] | None:
    # sweep/checks.py owns the sweep rules; imported lazily so the two evolve separately
    try:
        module = importlib.import_module("sweepctl.sweep.checks")
    except ModuleNotFoundError as exc:
        if exc.name in ("sweepctl.sweep.checks", "sweepctl.sweep"):
            return None
        raise
    checker: Callable[[Path, Mapping[str, Document], Findings], None] = module.check_sweep
    return checker


def check_rules(folder: Path, docs: Mapping[str, Document], schema_ok: Mapping[str, bool],
                findings: Findings) -> None:
    """Every semantic rule for one folder; ``docs`` holds the files that parsed."""
    exp, base, sweep = docs.get("experiment"), docs.get("baseline"), docs.get("sweep")
    finite = {kind: _check_finite(doc, findings) for kind, doc in docs.items()}
    if exp is not None and isinstance(exp.data, Mapping):
        _check_name(folder, exp, findings)
    if base is not None and isinstance(base.data, Mapping):
        _check_baseline_keys(base, findings)
        if schema_ok.get("baseline"):
            _check_baseline_values(base, findings)
            if sweep is not None and schema_ok.get("sweep"):
                _check_sweep_values(sweep, base.data, findings)
    _check_checklist(folder, docs, findings)
    # a non-finite value would only come back from expansion, at the sweep's position
    if all(schema_ok.get(kind) and finite[kind] for kind in ("experiment", "baseline", "sweep")):
        _check_eval_metric(docs, findings)
        checker = _sweep_checker()
        if checker is not None:
            checker(folder, docs, findings)


def check_unique_names(experiment_docs: Sequence[Document], findings: Findings) -> None:
    """Experiment names are MLflow tags and Kubernetes name prefixes: one folder each."""
    seen: dict[str, list[Document]] = {}
    for doc in experiment_docs:
        name = _get(doc.data, "name")
        if isinstance(name, str):
            seen.setdefault(name, []).append(doc)
    for name, docs in seen.items():
        if len(docs) < 2:
            continue
        for doc in docs:
            others = ", ".join(str(other.path) for other in docs if other is not doc)
            mark = doc.mark(("name",))
            findings.error(doc.path, mark.line, mark.col,
                           f"experiment name {name!r} is also used by {others}", "duplicate-name")
