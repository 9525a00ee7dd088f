"""The secret detector: secret-bearing keys and token-like values, never echoed."""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sweepctl.findings import Findings
from sweepctl.spec.sensitive import check_secrets, is_secret_key, token_kind
from sweepctl.spec.yamlload import parse_document

ALNUM = string.ascii_letters + string.digits


@pytest.mark.parametrize("key", ["hf_hub_token", "ms_hub_token", "om_hub_token", "hub_token",
                                 "swanlab_api_key", "swanlab_lark_secret", "db_password",
                                 "PASSWORD", "aws_secret_access_key", "openai_apikey", "token"])
def test_secret_bearing_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_new_tokens", "add_special_tokens", "pad_token",
                                 "eos_token", "ignore_pad_token_for_loss", "tokenized_path",
                                 "use_fast_tokenizer", "secret_env", "lora_rank", "keys"])
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(("value", "kind"), [
    ("hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH", "a Hugging Face token"),
    ("Bearer ghp_" + "a1" * 18, "a GitHub token"),
    ("github_pat_" + "A1b2" * 20, "a GitHub token"),
    ("sk-proj-" + "Ab3" * 10, "an API key (sk-...)"),
    ("AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
    ("xoxb-1234567890-abcdefghij", "a Slack token"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key"),
    ("https://admin:pw@mlflow.example.com", "a password in a URL"),
    ("wEJsKsxLoWvZ9Kk1mNfD4etEfiT7ebyr", "a high-entropy string (an access token or key)"),
])
def test_token_kinds(value: str, kind: str) -> None:
    assert token_kind(value) == kind


@pytest.mark.parametrize("value", [
    "meta-llama/Meta-Llama-3-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4",
    "mistralai/Mixtral-8x7B-Instruct-v0.1", "/storage/models/llama-3-8b-instruct-v2",
    "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "risk-averse-schedule-2024",
    "ghcr.io/example/llama-factory-train@sha256:" + "ab" * 32, "https://mlflow.example.com",
    "LlamaForCausalLMWithValueHead", "hf_hub_download", "sk-learn-style-preprocessing",
])
def test_ordinary_config_strings_are_not_tokens(value: str) -> None:
    assert token_kind(value) is None


@given(st.binary(min_size=0, max_size=64))
def test_no_false_positive_on_sha256_hex(data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    assert token_kind(digest) is None
    assert token_kind(digest.upper()) is None
    assert token_kind(hashlib.sha1(data).hexdigest()) is None


WORDS = ["llama", "Llama", "Meta", "Qwen2.5", "Mixtral", "Instruct", "chat", "v2", "8B", "7b",
         "70B", "lora", "q_proj", "Model", "GPTQ", "Int4", "AWQ", "base", "train", "eval",
         "2024", "support", "For", "Causal", "LM", "storage", "models", "checkpoint", "1000"]


@given(st.lists(st.tuples(st.sampled_from(["", "-", "_", ".", "/", ","]), st.sampled_from(WORDS)),
                min_size=1, max_size=8))
@example([("", "llama"), ("", "Mixtral"), ("", "70B"), ("", "checkpoint")])  # 4.0 bits
def test_no_false_positive_on_ordinary_config_strings(parts: list[tuple[str, str]]) -> None:
    # model names, paths, CamelCase class names, module lists: words, however they are joined
    value = "".join(sep + word for sep, word in parts)
    assert token_kind(value) is None


@given(st.text(alphabet=ALNUM, min_size=34, max_size=40), st.sampled_from(["", "token: ", " "]))
def test_every_hugging_face_token_is_caught(body: str, before: str) -> None:
    assert token_kind(f"{before}hf_{body}") == "a Hugging Face token"


@given(st.text(alphabet=ALNUM, min_size=36, max_size=40), st.sampled_from("pousr"))
def test_every_github_token_is_caught(body: str, kind: str) -> None:
    assert token_kind(f"gh{kind}_{body}") == "a GitHub token"


def _findings(text: str, name: str = "baseline.yaml") -> list[str]:
    findings = Findings()
    check_secrets(parse_document(text.encode(), Path(name)), findings)
    return [str(f) for f in findings]


def test_a_secret_key_is_reported_once_without_its_value() -> None:
    token = "hf_" + "Zq" * 17
    found = _findings(f"seed: 1\nhf_hub_token: {token}\n")
    assert found == [
        "baseline.yaml:2:1: error: hf_hub_token carries a secret; secrets never go into "
        "baseline.yaml (they would be logged as MLflow params and stored in ConfigMaps): "
        "reference a Kubernetes Secret via kubernetes.secret_env in defaults.yaml [secret-key]"]


def test_a_token_as_a_key_is_not_named() -> None:
    token = "ghp_" + "x9" * 18
    found = _findings(f"tags:\n  {token}: 1\n", "experiment.yaml")
    assert found == ["experiment.yaml:2:3: error: a key in tags looks like a GitHub token; "
                     "remove it from the repository and revoke it [secret-value]"]
    assert token not in "".join(found)


def test_secret_references_in_runtime_are_not_secrets() -> None:
    text = "runtime:\n  kubernetes:\n    secret_env:\n      - secret: hf-token\n"
    assert _findings(text, "experiment.yaml") == []


def test_most_random_tokens_of_unknown_formats_are_still_caught() -> None:
    """The word-piece rule trades some of the generic catch for no false positives on
    joined words; how much is measured here (seeded, 2,000 tokens a length): 95.9% of
    32-character base62 tokens, 97.9% at 40."""
    import random

    rng = random.Random(0)
    for length, floor in ((32, 0.95), (40, 0.975)):
        tokens = ["".join(rng.choice(ALNUM) for _ in range(length)) for _ in range(2000)]
        caught = sum(token_kind(t) is not None for t in tokens) / len(tokens)
        assert caught >= floor, (length, caught)
