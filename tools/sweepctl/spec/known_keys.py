"""Every key the pinned LLaMA-Factory accepts in a train config, and near-miss suggestions.

The list is data (``data/llamafactory_keys.json``), extracted from LLaMA-Factory's
argument dataclasses and transformers' ``TrainingArguments`` by
``scripts/extract_known_keys.py``, so validation knows every real key without
importing either (importing them takes seconds and a GPU-sized install).
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

# SequenceMatcher ratio above which an unknown key is taken for a typo of a known one:
# `lora_ranks`/`lora_rank` is 0.95, `learnig_rate`/`learning_rate` 0.96, while unrelated
# custom keys (`my_flag` vs `mask_history`) stay well below.
SUGGEST_CUTOFF = 0.8


@cache
def _data() -> dict[str, Any]:
    text = resources.files("sweepctl").joinpath("data", "llamafactory_keys.json").read_text(
        encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _keys() -> frozenset[str]:
    return frozenset(_data()["keys"])


@cache
def _normalized() -> dict[str, str]:
    # `Learning-Rate` is the same key typed differently; map the spelling back
    return {_normalize(key): key for key in _keys()}


def _normalize(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def versions() -> dict[str, str]:
    """The LLaMA-Factory and transformers versions the list was extracted from."""
    data = _data()
    return {"llamafactory": str(data.get("llamafactory_version", "")),
            "transformers": str(data.get("transformers_version", ""))}


def all_keys() -> frozenset[str]:
    return _keys()


def is_known(key: str) -> bool:
    return key in _keys()


def suggest(key: str) -> str | None:
    """The known key ``key`` most likely misspells, or None (also None for a known key)."""
    if key in _keys():
        return None
    same = _normalized().get(_normalize(key))
    if same is not None:
        return same
    matches = difflib.get_close_matches(key, sorted(_keys()), n=1, cutoff=SUGGEST_CUTOFF)
    return matches[0] if matches else None


def key_info(key: str) -> dict[str, Any] | None:
    """``{"type", "default", "help", "source"}`` for a known key, else None."""
    info = _data()["keys"].get(key)
    return dict(info) if info is not None else None
