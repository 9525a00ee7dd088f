"""Trial identity: the same work always gets the same id, whoever asks for it.

The id hashes the canonical JSON of the resolved train config plus the image and the
dataset hash. Canonical means: keys sorted at every level, no whitespace, and numbers
compared by value. Two decisions follow from "the same work":

* ``1e-4``, ``0.0001`` and ``1.0e-4`` are one float after YAML parsing, written with
  ``repr`` (the shortest string that round-trips), so the spelling never matters.
* An integral float is written as an int: ``num_train_epochs: 3`` and ``3.0`` are the
  same trial (Python itself says ``3 == 3.0``). Booleans stay booleans (``true`` is not
  ``1``), and ``-0.0`` is ``0``.

sweepctl's own per-trial keys (``report_to``, ``output_dir``, ``run_name``) are left
out: they are derived from the trial's name, which contains the id.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from sweepctl.errors import SweepctlError
from sweepctl.spec.model import OWNED_KEYS
from sweepctl.values import format_number

# 10 hex digits = 40 bits. Ids are shared across every experiment of an MLflow store
# (a FINISHED run is reused by id), so 8 digits (a 1% birthday collision at ~10k trials)
# is too few; 10 keeps the odds near 1 in 20,000 and still leaves the slug room in 63.
ID_LENGTH = 10
MAX_NAME = 63
BASELINE_SLUG = "baseline"

# Abbreviations for the keys people sweep most (the seed names runs r16-a32 and so on).
ABBREVIATIONS = {
    "lora_rank": "r",
    "lora_alpha": "a",
    "lora_dropout": "do",
    "lora_target": "t",
    "learning_rate": "lr",
    "num_train_epochs": "ep",
    "per_device_train_batch_size": "bs",
    "gradient_accumulation_steps": "ga",
    "warmup_ratio": "wu",
    "warmup_steps": "ws",
    "lr_scheduler_type": "sch",
    "cutoff_len": "len",
    "weight_decay": "wd",
    "max_grad_norm": "gn",
    "quantization_bit": "q",
    "finetuning_type": "ft",
    "seed": "s",
    "template": "tpl",
    "max_samples": "n",
    "val_size": "val",
    "optim": "opt",
}


class IdentityError(SweepctlError):
    """A config value that has no canonical form (NaN, infinity, a non-data object)."""


def normalize(value: Any, where: str = "config") -> Any:
    """The canonical form of one config value (see the module docstring)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise IdentityError(f"{where}: {value!r} is not a finite number")
        if value.is_integer():
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): normalize(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise IdentityError(f"{where}: {type(value).__name__} is not plain data")


def canonical_json(value: Any) -> str:
    return json.dumps(normalize(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def identity_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that defines the work (sweepctl's own keys removed)."""
    return {k: v for k, v in config.items() if k not in OWNED_KEYS}


def trial_id(config: Mapping[str, Any], image: str, dataset_sha256: str) -> str:
    payload = canonical_json({"config": identity_config(config), "image": image,
                              "dataset_sha256": dataset_sha256})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:ID_LENGTH]


def _label(text: str) -> str:
    """Lowercase, only [a-z0-9-], no runs of dashes, no dash at either end."""
    text = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    return re.sub(r"-{2,}", "-", text).strip("-")


def kube_name(experiment_name: str, slug: str, trial_id: str) -> str:
    """``<experiment>-<slug>-<id>``: an RFC 1123 label of at most 63 characters.

    The id is kept whole (it is what makes the name unique); the slug is cut first,
    then, only for an over-long experiment name, the experiment part.
    """
    ident = _label(trial_id)
    experiment = _label(experiment_name)[: MAX_NAME - len(ident) - 1].strip("-")
    room = MAX_NAME - len(experiment) - len(ident) - 2
    short = _label(slug)[: max(room, 0)].strip("-")
    parts = [p for p in (experiment, short, ident) if p]
    return "-".join(parts)


def format_value(value: Any) -> str:
    """A compact spelling for names: 2e-4, 0.05, 16, true; a list joined with ``+``."""
    if isinstance(value, list | tuple):
        return "+".join(format_value(v) for v in value)
    if isinstance(value, int | float):  # bool is an int
        return format_number(value)
    return str(value)


def abbreviate(key: str) -> str:
    if key in ABBREVIATIONS:
        return ABBREVIATIONS[key]
    # unknown keys: initials of the words (neftune_noise_alpha -> nna)
    words = [w for w in re.split(r"[^A-Za-z0-9]+", key) if w]
    if len(words) == 1:
        return words[0][:6].lower()  # bf16, optim: short enough as they are
    return "".join(w[0] for w in words).lower() or "p"


def slug(params: Mapping[str, Any]) -> str:
    """A short human label for a trial from the keys it changes: ``r16-a32``, ``lr2e-4``.

    Not unique on its own (the id in the name is); a dot becomes ``p`` (``do0p05``)
    because dots are not allowed in RFC 1123 labels.
    """
    if not params:
        return BASELINE_SLUG
    parts = []
    for key, value in params.items():
        text = format_value(value).lower().replace(".", "p")
        if isinstance(value, bool):
            parts.append(abbreviate(key) if value else f"no-{abbreviate(key)}")
        else:
            parts.append(f"{abbreviate(key)}{text}")
    return _label("-".join(parts)) or "trial"
