#!/usr/bin/env bash
# `make demo`: the whole loop on this machine, no cluster and nothing from any hub.
# Installs the pre-commit hook, builds the tiny model, validates, plans and launches
# experiments/tiny-lora-demo on the local backend, one trial at a time (trials are
# processes of the trainer venv, logging to a SQLite MLflow store under .sweepctl/),
# then compares and writes the results into its notes.md.
# A second run reuses every finished trial and takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

SWEEPCTL=${SWEEPCTL:-.venv/bin/sweepctl}
PRE_COMMIT=${PRE_COMMIT:-.venv/bin/pre-commit}
TRAINER_PYTHON=${TRAINER_PYTHON:-.venv-trainer/bin/python}
EXPERIMENT=experiments/tiny-lora-demo
TINY=.sweepctl/tiny
# the demo's own store, whatever the shell says: make demo never writes to a shared server
export MLFLOW_TRACKING_URI=sqlite:///.sweepctl/mlflow.db
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

mkdir -p .sweepctl

# The pre-commit hook runs `sweepctl validate` on every commit (issue 13: a broken YAML was
# committed without a word). Idempotent, and offline: .pre-commit-config.yaml has local
# hooks only. Never fatal: a repo with core.hooksPath set keeps its own hooks.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [[ -x $PRE_COMMIT ]]; then
    step "installing the pre-commit hook (sweepctl validate on every commit)"
    "$PRE_COMMIT" install || echo "pre-commit hook not installed (see above); the demo goes on"
fi

if [[ ! -f $TINY/model/config.json || ! -f $TINY/data/dataset_info.json ]]; then
    step "building the tiny model and dataset in $TINY (random-init Llama, local tokenizer)"
    "$TRAINER_PYTHON" demo/build_tiny_model.py "$TINY"
fi

step "sweepctl validate"
"$SWEEPCTL" validate

step "sweepctl plan $EXPERIMENT"
"$SWEEPCTL" plan "$EXPERIMENT"

step "sweepctl launch $EXPERIMENT --backend local"
"$SWEEPCTL" launch "$EXPERIMENT" --backend local

step "sweepctl status $EXPERIMENT"
"$SWEEPCTL" status "$EXPERIMENT"

step "sweepctl compare $EXPERIMENT"
"$SWEEPCTL" compare "$EXPERIMENT"

step "sweepctl report $EXPERIMENT --notes"
"$SWEEPCTL" report "$EXPERIMENT" --notes

step "done"
cat <<MSG
Trial logs:    .sweepctl/runs/tiny-lora-demo/<trial>/trial.log
Results:       $EXPERIMENT/notes.md (between the sweepctl:results markers)
MLflow UI:     .venv/bin/mlflow ui --backend-store-uri sqlite:///.sweepctl/mlflow.db
               then open http://127.0.0.1:5000 (experiment "tiny-lora-demo"; trials are
               nested under the sweep's parent run)
Run it again:  make demo   (every finished trial is reused)
MSG
