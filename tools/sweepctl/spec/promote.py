"""`sweepctl promote`: the next experiment from a result (issue 13 item 6, the seed's
"next: experiment with learning_rate at r=16").

A new folder whose baseline is a trial's resolved config, so the promoted trial is the
new experiment's trial 0 (same config, same trial id: its finished run is reused, not
retrained). Pure rendering (``render_promoted``) plus one writer (``promote``).

Decisions:

* baseline.yaml is the trial's config minus the keys sweepctl sets per trial
  (``OWNED_KEYS``); derived values and the replicate's seed are kept as resolved.
* experiment.yaml copies objective, budget, dataset, mlflow, tags and runtime from the
  source (the same policy already allowed them there), with ``phase: iteration`` and a
  hypothesis the author must rewrite (it says so; it is not judged for them).
* sweep.yaml is a one-at-a-time skeleton around the trial's learning rate, one trial at
  a time, and the checklist leaves ``parameter_space_defined`` unticked: the folder
  validates (with that warning) but does not launch until someone chose the sweep.
* notes.md links back to the source's notes and names the trial and the run. The run
  URL is only written for an http(s) tracking URI, without any user:password part,
  and only for ids MLflow could have made (the run and experiment ids are untrusted).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepctl.errors import SweepctlError, UsageError
from sweepctl.spec.model import OWNED_KEYS, Experiment
from sweepctl.spec.scaffold import (
    DEFAULT_SCHEMA_REF,
    RESULTS_BEGIN,
    RESULTS_END,
    check_name,
    schema_ref,
)
from sweepctl.sweep.trial import Trial

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SLUG_TEXT = re.compile(r"[^A-Za-z0-9_.=+-]")
DEFAULT_LEARNING_RATE = 5.0e-5   # LLaMA-Factory's default when the baseline sets none
HYPOTHESIS = ("REWRITE BEFORE LAUNCH: what you expect to change from {slug} of {source}, "
              "and why.")


@dataclass(frozen=True)
class Source:
    """Where the promoted trial came from: its run, when MLflow has one."""

    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None


def find_trial(trials: Sequence[Trial], wanted: str) -> Trial:
    """The trial whose slug, Kubernetes name or trial id is ``wanted`` (replicate 0)."""
    for trial in trials:
        if trial.replicate == 0 and wanted in (trial.slug, trial.name, trial.trial_id):
            return trial
    choices = ", ".join(t.slug for t in trials if t.replicate == 0)
    raise UsageError(f"no trial {wanted!r} in this sweep; the trials are: {choices}")


def run_url(source: Source) -> str | None:
    """The MLflow UI URL of the run, for an http(s) store; never with credentials."""
    if not (source.tracking_uri and source.run_id and source.experiment_id):
        return None
    if not (_ID.match(source.run_id) and source.experiment_id.isdigit()):
        return None
    parts = urllib.parse.urlsplit(source.tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return f"{base}/#/experiments/{source.experiment_id}/runs/{source.run_id}"


def _dump(data: Any) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                              allow_unicode=True, width=88))


def _header(schemas: str, kind: str, *lines: str) -> str:
    comments = "".join(f"# {line}\n" for line in lines)
    return f"# yaml-language-server: $schema={schemas}/{kind}.schema.json\n{comments}"


def _experiment_yaml(source: Experiment, trial: Trial, name: str, schemas: str) -> str:
    data = source.docs["experiment"].data if "experiment" in source.docs else {}
    out: dict[str, Any] = {
        "name": name,
        "title": f"Next from {source.name}: {trial.slug}",
        "owner": source.owner,
        "hypothesis": HYPOTHESIS.format(slug=trial.slug, source=source.name),
        "phase": "iteration",
    }
    for key in ("objective", "budget", "dataset", "mlflow", "tags", "runtime"):
        if data.get(key):
            out[key] = data[key]
    return _header(schemas, "experiment",
                   f"Promoted from {source.name}, trial {trial.slug}: its config is "
                   "baseline.yaml.",
                   "objective, budget, dataset and runtime are the source's; edit them "
                   "if this step differs.") + _dump(out)


def _baseline_yaml(trial: Trial, source: Experiment, schemas: str) -> str:
    config = {k: v for k, v in trial.config.items() if k not in OWNED_KEYS}
    return _header(schemas, "baseline",
                   f"Trial {trial.slug} of {source.name} (trial id {trial.trial_id}), "
                   "resolved: trial 0 here.",
                   "A finished run of it is reused, not retrained (same config and id)."
                   ) + _dump(config)


def _sweep_yaml(trial: Trial, schemas: str) -> str:
    value = trial.config.get("learning_rate", DEFAULT_LEARNING_RATE)
    rate = float(value) if isinstance(value, int | float) else DEFAULT_LEARNING_RATE
    sweep = {"strategy": "one-at-a-time",
             "parameters": {"learning_rate": [float(f"{rate / 2:.4g}"),
                                              float(f"{rate * 2:.4g}")]},
             "replicates": 1, "max_parallel": 1}
    return _header(schemas, "sweep",
                   "A skeleton: choose what this step varies, then tick "
                   "parameter_space_defined.",
                   "one-at-a-time: each trial changes ONE key vs the baseline.",
                   "max_parallel 1: trials on one machine would time each other.") + _dump(sweep)


def _checklist_yaml(source: Experiment, schemas: str) -> str:
    ticks = {key: bool(value) for key, value in source.checklist.items()}
    ticks["baseline_defined"] = True
    ticks["parameter_space_defined"] = False  # the sweep is a skeleton until chosen
    return _header(schemas, "checklist",
                   "Copied from the source; parameter_space_defined waits for your "
                   "sweep.yaml.") + _dump(ticks)


def _notes_md(source: Experiment, trial: Trial, origin: Source) -> str:
    slug = _SLUG_TEXT.sub("?", trial.slug)
    run = ""
    if origin.run_id and _ID.match(origin.run_id):
        url = run_url(origin)
        run = f", run `{origin.run_id}`" + (f" ([MLflow]({url}))" if url else "")
    return (f"# Next from {source.name}: {slug}\n\n"
            f"Promoted from [{source.name}](../{source.name}/notes.md), trial `{slug}` "
            f"(trial id `{trial.trial_id}`){run}.\n\n"
            "## Question\n\nWhat does this step test that the source did not?\n\n"
            "## Observations\n\n## Results\n\n"
            f"{RESULTS_BEGIN}\n_No results yet: sweepctl writes the comparison table here "
            f"when the sweep finishes._\n{RESULTS_END}\n\n## Conclusions\n")


def render_promoted(source: Experiment, trial: Trial, name: str, origin: Source = Source(),
                    schemas: str = DEFAULT_SCHEMA_REF) -> dict[str, str]:
    """File name -> content of the promoted experiment folder."""
    check_name(name)
    return {
        "experiment.yaml": _experiment_yaml(source, trial, name, schemas),
        "baseline.yaml": _baseline_yaml(trial, source, schemas),
        "sweep.yaml": _sweep_yaml(trial, schemas),
        "checklist.yaml": _checklist_yaml(source, schemas),
        "notes.md": _notes_md(source, trial, origin),
    }


def promote(parent: Path, source: Experiment, trial: Trial, name: str,
            origin: Source = Source(), schemas_dir: Path | None = None) -> Path:
    """Create ``parent/name``; refuse a bad name or an existing folder (or symlink)."""
    check_name(name)
    folder = parent / name
    if folder.exists() or folder.is_symlink():
        raise SweepctlError(f"{folder} already exists; pick another name or edit it")
    files = render_promoted(source, trial, name, origin, schema_ref(folder, schemas_dir))
    try:
        folder.mkdir()
        for file_name, text in files.items():
            (folder / file_name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SweepctlError(f"cannot create {folder}: {exc.strerror}") from exc
    return folder

