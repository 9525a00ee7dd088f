"""`sweepctl new NAME`: a new experiment folder that validates as written.

Every file starts with the yaml-language-server schema line, so an editor completes
and explains the keys, and every field carries a comment saying what it means. The
values are the seed's baseline (hyperparameter-tracking.pl.md, "always track").
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from sweepctl.errors import SweepctlError

NAME_MAX = 40
# A lowercase RFC 1123 label: the name becomes part of Kubernetes object names.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PLAIN = re.compile(r"^[A-Za-z0-9_.@+][A-Za-z0-9_.@+ -]*$")
DEFAULT_SCHEMA_REF = "../../schemas"

RESULTS_BEGIN = "<!-- sweepctl:results:begin -->"
RESULTS_END = "<!-- sweepctl:results:end -->"

_EXPERIMENT = """\
# yaml-language-server: $schema={schemas}/experiment.schema.json
# What this experiment is and why. Edit every value; `sweepctl validate` checks them.
name: {name}                    # must equal the folder name (lowercase RFC 1123 label, <= 40)
title: {title}                  # one line for tables and the PR comment
owner: {owner}                  # who to ask about it
# What you expect to happen, written BEFORE running: the results are judged against it.
hypothesis: Higher LoRA rank lowers eval_loss, with diminishing returns past r=16.
phase: hyperparameter_search    # baseline | hyperparameter_search | iteration (an MLflow tag)
objective:                      # the success metric (checklist: success_metric_defined)
  metric: eval_loss             # the MLflow metric the trials are ranked by
  goal: minimize                # minimize | maximize
  target: 0.40                  # success criterion: eval_loss < 0.40
budget:                         # checklist: budget_defined
  max_trials: 10                # the sweep may not expand to more trials (baseline included)
  gpu_hours: 40                 # trials x hours_per_trial x GPUs must fit in this
  hours_per_trial: 3.0          # estimate the plan uses until real runtimes exist
  max_failed_trials: 2          # stop calling the sweep healthy past this many failures
dataset:                        # the data, locked (checklist: dataset_version_locked)
  name: my-dataset              # the dataset's name in your data registry
  version: v1.0.0               # the version trained on; a new version is a new experiment
  # sha256 of the dataset file(s): `sha256sum data/my-dataset.json`. The zeros are a
  # placeholder; replace them, then tick dataset_version_locked in checklist.yaml.
  sha256: "0000000000000000000000000000000000000000000000000000000000000000"
  train_samples: 9000           # rows in the training split
  test_samples: 1000            # rows in the evaluation split
mlflow:                         # where the runs go (checklist: mlflow_experiment_created)
  experiment: llama-finetuning  # the MLflow experiment the trial runs are logged to
tags:                           # extra MLflow tags on every trial run
  model.base: llama-3-8b
runtime: {{}}                     # overrides of experiments/defaults.yaml for this experiment
"""

_BASELINE = """\
# yaml-language-server: $schema={schemas}/baseline.schema.json
# The baseline: a LLaMA-Factory train config, runnable as is, and trial 0 of the sweep.
# Every trial is this file with the sweep's parameters applied. Keys are spelled exactly
# as LLaMA-Factory spells them. report_to, output_dir and run_name are set by sweepctl.

# Model
model_name_or_path: /storage/models/base-model  # local path or Hugging Face model id
finetuning_type: lora           # lora | oft | freeze | full
stage: sft                      # supervised fine-tuning
do_train: true                  # train (not only evaluate)
dataset: my_dataset             # a name from dataset_info.json in LLaMA-Factory's dataset_dir

# LoRA
lora_rank: 8                    # adapter rank: quality vs speed (typical 8-64)
lora_alpha: 16                  # LoRA scaling, usually 2 x lora_rank (typical 16-64)
lora_dropout: 0.05              # dropout on the adapter (typical 0.0-0.1)
lora_target: q_proj,k_proj,v_proj,o_proj  # modules that get adapters, or `all`

# Training
learning_rate: 1.0e-4           # the biggest effect on convergence (typical 1e-5 to 3e-4)
num_train_epochs: 3             # passes over the data (typical 1-10; watch overfitting)
per_device_train_batch_size: 1  # typical 1-4 per GPU
gradient_accumulation_steps: 8  # effective batch = batch size x this x GPUs (typical 4-16)
warmup_ratio: 0.1               # share of steps spent warming the learning rate up
lr_scheduler_type: cosine       # learning-rate schedule after warm-up

# Data
cutoff_len: 2048                # max tokens per example (typical 512-4096)
val_size: 0.1                   # share of the data held out for eval_loss (typical 0.05-0.2)
template: llama3                # the chat template of the base model

# Reproducibility (checklist: seed_set)
seed: 42                        # fixes data order and init, so a rerun matches

# Optimization
bf16: true                      # bf16 on Ampere or newer GPUs; fp16 on older ones
gradient_checkpointing: true    # less memory for some speed
weight_decay: 0.01              # L2 regularization of the weights
max_grad_norm: 1.0              # gradient clipping
# quantization_bit: 4           # uncomment for QLoRA (tags the trial tier=memory_efficient)
"""

_SWEEP = """\
# yaml-language-server: $schema={schemas}/sweep.schema.json
# How the parameter space is explored (checklist: parameter_space_defined).
# The baseline is always trial 0; each listed value adds one trial.
strategy: one-at-a-time         # grid | one-at-a-time | random | list
# one-at-a-time: every trial changes ONE key vs the baseline (the seed's rule), so each
# difference in the results has one cause. Keys must be baseline or LLaMA-Factory keys.
parameters:
  lora_rank: [16, 32]
  learning_rate: [2.0e-4]
replicates: 1                   # >1 repeats each trial with seeds seed, seed+1, ...
max_parallel: 2                 # trials running at the same time
# A grid instead (every combination; derived keys are arithmetic on the parameters):
# strategy: grid
# parameters:
#   lora_rank: [8, 16, 32]
# derived:
#   lora_alpha: 2 * lora_rank
"""

_CHECKLIST = """\
# yaml-language-server: $schema={schemas}/checklist.schema.json
# The seed's checklist before every experiment. sweepctl checks each tick against the
# files; an experiment with an unticked item validates with a warning but does not launch.
baseline_defined: true          # baseline.yaml is complete and is trial 0
success_metric_defined: true    # objective.metric and objective.target in experiment.yaml
parameter_space_defined: true   # sweep.yaml lists what varies
budget_defined: true            # budget.max_trials and budget.gpu_hours in experiment.yaml
mlflow_experiment_created: false  # tick once you chose mlflow.experiment; launch creates it
dataset_version_locked: false   # tick once dataset.version and a real dataset.sha256 are set
seed_set: true                  # seed in baseline.yaml
"""

_NOTES = """\
# {title}

Owner: {owner}

## Question

What do we want to learn, and what decision depends on it?

## Observations

Per trial: what changed, what happened, what it means (the seed's "document insights").

## Results

{begin}
_No results yet: sweepctl writes the comparison table here when the sweep finishes._
{end}

## Conclusions

The sweet spot, and what to try next.
"""


def _yaml_scalar(text: str) -> str:
    # JSON strings are YAML double-quoted strings: safe for any owner text (`#`, `:`)
    return text if _PLAIN.match(text) else json.dumps(text)


def check_name(name: str) -> None:
    """Raise a one-line ``SweepctlError`` unless ``name`` can name an experiment."""
    if not name:
        raise SweepctlError("experiment name is empty")
    if len(name) > NAME_MAX:
        raise SweepctlError(f"experiment name {name!r} is {len(name)} characters; the limit is "
                            f"{NAME_MAX} (it becomes part of Kubernetes object names)")
    if not _NAME.match(name):
        raise SweepctlError(f"experiment name {name!r} is not a lowercase RFC 1123 label: use "
                            "a-z, 0-9 and '-', starting and ending with a letter or digit")


def schema_ref(folder: Path, schemas_dir: Path | None) -> str:
    """The schema directory as seen from ``folder``, for the yaml-language-server line."""
    if schemas_dir is None:
        return DEFAULT_SCHEMA_REF
    # absolute, not resolved: a symlinked schemas/ keeps the path the editor sees
    return Path(os.path.relpath(os.path.abspath(schemas_dir), os.path.abspath(folder))).as_posix()


def render_files(name: str, owner: str, schemas: str = DEFAULT_SCHEMA_REF) -> dict[str, str]:
    """File name -> content of a new experiment folder."""
    title = name.replace("-", " ").capitalize()
    values = {"name": name, "title": title, "owner": _yaml_scalar(owner), "schemas": schemas,
              "begin": RESULTS_BEGIN, "end": RESULTS_END}
    return {
        "experiment.yaml": _EXPERIMENT.format(**values),
        "baseline.yaml": _BASELINE.format(**values),
        "sweep.yaml": _SWEEP.format(**values),
        "checklist.yaml": _CHECKLIST.format(**values),
        "notes.md": _NOTES.format(**values),
    }


def scaffold(parent: Path, name: str, owner: str = "you@example.com",
             schemas_dir: Path | None = None) -> Path:
    """Create ``parent/name`` with the five files; refuse a bad name or an existing folder."""
    check_name(name)
    folder = parent / name
    if folder.exists():
        raise SweepctlError(f"{folder} already exists; pick another name or edit it")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
        ref = schema_ref(folder, schemas_dir)
        for file_name, text in render_files(name, owner, ref).items():
            (folder / file_name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SweepctlError(f"cannot create {folder}: {exc.strerror}") from exc
    return folder
