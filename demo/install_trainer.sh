#!/usr/bin/env bash
# Create the trainer's Python environment (LLaMA-Factory on CPU torch), separate from
# sweepctl's own so that neither stack's pins constrain the other.
#
#   bash demo/install_trainer.sh PYTHON VENV REQUIREMENTS
#
# Three traps of LLaMA-Factory 0.9.5 on a CPU machine (design.md "Measured facts"):
#  1. without a constraint torch==2.13.0, torchvision drags in a CUDA torch and ~4.5 GB
#     of nvidia packages; with it, pip takes the CPU build from its find-links;
#  2. the torchvision wheel links CUDA libraries and breaks transformers' lazy imports
#     ("Could not import module 'PreTrainedModel'"); text SFT does not need it;
#  3. torchaudio (imported unconditionally by llamafactory) ships CUDA-linked native
#     libraries that fail against CPU torch; without torchaudio/lib/*.so it imports in
#     pure-Python mode, which is all text SFT needs.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 PYTHON VENV REQUIREMENTS" >&2
    exit 2
fi
python=$1
venv=$2
requirements=$3
pip_flags=(--quiet --disable-pip-version-check --no-input)

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" >"$constraints"

"$venv/bin/python" -m pip install "${pip_flags[@]}" -c "$constraints" -r "$requirements"

# trap 2: installed only because llamafactory declares it; remove it again
"$venv/bin/python" -m pip uninstall "${pip_flags[@]}" -y torchvision

# trap 3: torchaudio in pure-Python mode
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$site"/torchaudio/lib/*.so

# fail here, not in the first trial, when the stack does not import
HF_HUB_OFFLINE=1 "$venv/bin/python" -c 'import mlflow, llamafactory.train.tuner' >/dev/null
echo "trainer environment ready: $venv"
