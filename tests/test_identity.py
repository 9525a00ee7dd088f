"""Trial identity: canonical JSON, ids, Kubernetes names, slugs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweepctl.sweep.identity import (
    ID_LENGTH,
    IdentityError,
    canonical_json,
    kube_name,
    slug,
    trial_id,
)

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IMAGE = "ghcr.io/example/llama-factory-train:0.9.5"
SHA = "5650bd330f86d545688683fb1ecb2debf65b75af3771c99e278da56d26821346"

scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                    st.none())
configs = st.dictionaries(st.text(min_size=1, max_size=12), scalars, max_size=8)


def test_float_spelling_and_integral_floats_do_not_matter() -> None:
    a = {"learning_rate": 1e-4, "num_train_epochs": 3, "lora_dropout": 0.05}
    b = {"lora_dropout": 5e-2, "num_train_epochs": 3.0, "learning_rate": 0.0001}
    assert canonical_json(a) == canonical_json(b)
    assert trial_id(a, IMAGE, SHA) == trial_id(b, IMAGE, SHA)


def test_booleans_are_not_numbers() -> None:
    assert trial_id({"bf16": True}, IMAGE, SHA) != trial_id({"bf16": 1}, IMAGE, SHA)


def test_image_dataset_and_owned_keys() -> None:
    config = {"lora_rank": 16}
    base = trial_id(config, IMAGE, SHA)
    assert len(base) == ID_LENGTH and re.fullmatch(r"[0-9a-f]+", base)
    assert trial_id(config, IMAGE + "-cu12", SHA) != base
    assert trial_id(config, IMAGE, "0" * 64) != base
    # sweepctl's per-trial keys name the trial; they cannot be part of what names it
    assert trial_id({**config, "output_dir": "/out/x", "run_name": "x",
                     "report_to": "mlflow"}, IMAGE, SHA) == base


def test_non_data_is_refused() -> None:
    with pytest.raises(IdentityError, match="learning_rate"):
        canonical_json({"learning_rate": float("nan")})


@given(configs, st.randoms())
def test_ids_invariant_to_key_order(config: dict[str, Any], rnd: Any) -> None:
    items = list(config.items())
    rnd.shuffle(items)
    assert trial_id(dict(items), IMAGE, SHA) == trial_id(config, IMAGE, SHA)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_ids_invariant_to_float_spelling(value: float) -> None:
    respelled = float(f"{value:.17e}")  # another text for the same number
    assert trial_id({"x": respelled}, IMAGE, SHA) == trial_id({"x": value}, IMAGE, SHA)


@given(configs, configs)
def test_different_configs_never_share_an_id(a: dict[str, Any], b: dict[str, Any]) -> None:
    if canonical_json(a) != canonical_json(b):
        assert trial_id(a, IMAGE, SHA) != trial_id(b, IMAGE, SHA)


def test_names() -> None:
    assert kube_name("lora-rank-sweep", "r16-a32", "7c1e2a9f00") == (
        "lora-rank-sweep-r16-a32-7c1e2a9f00")
    assert kube_name("lora-rank-sweep", "", "7c1e2a9f00") == "lora-rank-sweep-7c1e2a9f00"


@given(st.text(max_size=80), st.text(max_size=200),
       st.text(alphabet="0123456789abcdef", min_size=ID_LENGTH, max_size=ID_LENGTH))
def test_names_are_labels_that_keep_the_id(experiment: str, label: str, ident: str) -> None:
    name = kube_name(experiment or "x", label, ident)
    assert len(name) <= 63
    assert LABEL.match(name), name
    assert name.endswith(ident)


@pytest.mark.parametrize(("params", "expected"), [
    ({}, "baseline"),
    ({"lora_rank": 16, "lora_alpha": 32}, "r16-a32"),
    ({"learning_rate": 2e-4}, "lr2e-4"),
    ({"lora_dropout": 0.05}, "do0p05"),
    ({"seed": 43}, "s43"),
    ({"bf16": True, "flash_attn": "fa2"}, "bf16-fafa2"),
    ({"gradient_checkpointing": False}, "no-gc"),
    ({"lora_target": "q_proj,v_proj"}, "tq-proj-v-proj"),
    ({"neftune_noise_alpha": 5.0}, "nna5"),
    ({"Weird Key!": "Ünïcode $(x)"}, "wk-n-code-x"),
])
def test_slugs(params: dict[str, Any], expected: str) -> None:
    assert slug(params) == expected
