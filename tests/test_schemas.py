"""The JSON Schemas: editor-friendly (description + examples everywhere) and consistent
with the files they describe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from sweepctl.findings import Findings
from sweepctl.runtime import runtime_from_data
from sweepctl.spec.model import CHECKLIST_ITEMS, experiment_from_data
from sweepctl.spec.schemas import SCHEMA_KINDS, check_schema, load_schema, value_problems
from sweepctl.spec.yamlload import load_document, parse_document

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = REPO_ROOT / "schemas"
EXPERIMENTS = REPO_ROOT / "experiments"
EXAMPLES = ("lora-rank-sweep", "learning-rate-ofat")


def _schema(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    return data


def _properties(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named property anywhere in a schema (inside if/then, items, ...)."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and set(sub) - {"const", "enum", "type", "exclusiveMinimum",
                                                     "minimum"}:
                yield f"{where}/{name}", sub
        for key, value in node.items():
            yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _properties(value, f"{where}/{i}")


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_schema_is_valid_draft_2020_12_with_an_id(kind: str) -> None:
    schema = _schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://sweepctl.dev/schemas/{kind}.schema.json"
    assert schema == load_schema(kind)  # the package reads the same file


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_every_property_has_description_and_examples(kind: str) -> None:
    # constraint-only refinements inside if/then are not properties a user types
    missing = [where for where, prop in _properties(_schema(kind), kind)
               if not prop.get("description") or not prop.get("examples")]
    assert missing == []


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_examples_in_the_schema_are_valid_values(kind: str) -> None:
    validator = Draft202012Validator(_schema(kind))
    top = _schema(kind)
    for example in top["examples"]:
        errors = [e.message for e in validator.iter_errors(example)
                  if e.validator != "required"]
        assert errors == [], example
    for where, prop in _properties(top, kind):
        if where.count("/properties/") > 1 or "/allOf/" in where:
            continue
        sub = Draft202012Validator(prop)
        for example in prop["examples"]:
            assert not [e.message for e in sub.iter_errors(example) if e.validator != "required"], \
                (where, example)


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("kind", ["experiment", "baseline", "sweep", "checklist"])
def test_example_experiments_pass_plain_jsonschema(name: str, kind: str) -> None:
    path = EXPERIMENTS / name / f"{kind}.yaml"
    first = path.read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema=../../schemas/{kind}.schema.json"
    data = yaml.safe_load(path.read_text())
    assert list(Draft202012Validator(_schema(kind)).iter_errors(data)) == []


def test_defaults_pass_and_fit_the_runtime_model() -> None:
    data = yaml.safe_load((EXPERIMENTS / "defaults.yaml").read_text())
    assert list(Draft202012Validator(_schema("defaults")).iter_errors(data)) == []
    runtime = runtime_from_data(data)
    assert runtime.local.tracking_uri == "sqlite:///.sweepctl/mlflow.db"
    assert runtime.local.python == ".venv-trainer/bin/python"
    assert all(s.secret for s in runtime.kubernetes.secret_env)
    # the schema describes exactly the keys runtime_from_data reads
    k8s = _schema("defaults")["properties"]["kubernetes"]["properties"]
    assert set(k8s) == {"namespace", "image", "gpu_resource", "gpus_per_trial", "cpu", "memory",
                        "service_account", "node_selector", "tolerations", "storage",
                        "secret_env", "queue", "backoff_limit", "ttl_seconds_after_finished",
                        "nodes_per_trial", "shm_size", "ephemeral_storage", "security"}
    assert set(_schema("defaults")["properties"]) == {"mlflow", "kubernetes", "local", "github",
                                                      "policy", "prune"}
    assert runtime.prune == "queued" and runtime_from_data({"prune": "none"}).prune == "none"


def test_experiment_runtime_overrides_accept_what_defaults_accept() -> None:
    runtime = _schema("experiment")["properties"]["runtime"]["properties"]
    runtime_sections = dict(_schema("defaults")["properties"])
    # the policy limits runtime: overrides; an experiment overriding it would be no policy
    del runtime_sections["policy"]
    del runtime_sections["prune"]  # the reconcile's, across experiments: not one's own
    assert runtime == runtime_sections


def test_example_experiments_build_the_model() -> None:
    for name in EXAMPLES:
        folder = EXPERIMENTS / name
        docs = {kind: load_document(folder / f"{kind}.yaml")
                for kind in ("experiment", "baseline", "sweep", "checklist")}
        experiment = experiment_from_data(folder, docs)
        assert experiment.name == name
        assert experiment.checklist_complete
        notes = (folder / "notes.md").read_text()
        assert "<!-- sweepctl:results:begin -->" in notes
        assert "<!-- sweepctl:results:end -->" in notes


def test_checklist_schema_has_exactly_the_seven_items() -> None:
    schema = _schema("checklist")
    assert tuple(schema["required"]) == CHECKLIST_ITEMS
    assert tuple(schema["properties"]) == CHECKLIST_ITEMS


def test_baseline_requires_lora_keys_only_for_lora() -> None:
    validator = Draft202012Validator(_schema("baseline"))
    base = yaml.safe_load((EXPERIMENTS / "lora-rank-sweep" / "baseline.yaml").read_text())
    full = {k: v for k, v in base.items() if not k.startswith("lora_")} | {
        "finetuning_type": "full"}
    assert list(validator.iter_errors(full)) == []
    lora = {k: v for k, v in base.items() if k != "lora_rank"}
    assert [e.message for e in validator.iter_errors(lora)] == [
        "'lora_rank' is a required property"]
    assert list(validator.iter_errors(base | {"my_custom_flag": 1})) == []  # unknown keys pass


@pytest.mark.parametrize(("key", "value"), [
    ("learning_rate", 0), ("lora_dropout", 1.0), ("val_size", 1.5), ("quantization_bit", 7),
    ("flash_attn", "fa4"), ("lora_rank", 0), ("warmup_ratio", 1.0), ("seed", -1),
    ("finetuning_type", "qlora"), ("per_device_train_batch_size", 2.5),
])
def test_baseline_rejects_impossible_values(key: str, value: Any) -> None:
    base = yaml.safe_load((EXPERIMENTS / "lora-rank-sweep" / "baseline.yaml").read_text())
    errors = list(Draft202012Validator(_schema("baseline")).iter_errors(base | {key: value}))
    assert [list(e.absolute_path) for e in errors] == [[key]]


@pytest.mark.parametrize("sweep", [
    {"strategy": "grid", "parameters": {"lora_rank": [8, 16]}},
    {"strategy": "one-at-a-time", "parameters": {"learning_rate": [2.0e-4]}, "replicates": 2},
    {"strategy": "random", "trials": 4, "seed": 1, "parameters": {
        "learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 3e-4},
        "lora_rank": {"choices": [8, 16]},
        "cutoff_len": {"distribution": "int_uniform", "low": 512, "high": 2048}}},
    {"strategy": "list", "trials": [{"lora_rank": 16, "lora_alpha": 32}], "max_parallel": 1},
])
def test_sweep_accepts_each_strategy(sweep: dict[str, Any]) -> None:
    assert list(Draft202012Validator(_schema("sweep")).iter_errors(sweep)) == []


@pytest.mark.parametrize(("sweep", "path"), [
    ({"strategy": "grid", "parameters": {"lora_rank": []}}, ["parameters", "lora_rank"]),
    ({"strategy": "random", "trials": 2, "parameters": {
        "lora_rank": {"distribution": "int_uniform", "low": 8.5, "high": 64}}},
     ["parameters", "lora_rank", "low"]),
    ({"strategy": "random", "trials": 2, "parameters": {
        "lora_rank": {"choices": [8], "low": 1}}}, ["parameters", "lora_rank"]),
    ({"strategy": "list", "trials": [{}]}, ["trials", 0]),
    ({"strategy": "list", "trials": [{"a": 1}], "parameters": {"a": [1]}}, []),
])
def test_sweep_errors_point_at_the_offending_part(sweep: dict[str, Any],
                                                  path: list[Any]) -> None:
    errors = list(Draft202012Validator(_schema("sweep")).iter_errors(sweep))
    assert errors and all(list(e.absolute_path) == path for e in errors), \
        [(e.message, list(e.absolute_path)) for e in errors]


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("experiment", "budget:\n  max_failed_trial: 2\n",
     "unknown key 'max_failed_trial' in budget; did you mean 'max_failed_trials'?"),
    ("checklist", "seed_sett: true\n", "unknown key 'seed_sett' in checklist; did you mean "
     "'seed_set'?"),
    ("sweep", "strategy: grid\nparameters: {lora_rank: [8]}\nreplicate: 2\n",
     "unknown key 'replicate' in sweep; did you mean 'replicates'?"),
    ("defaults", "mlfow: {}\n", "unknown key 'mlfow' in defaults; did you mean 'mlflow'?"),
    # no near miss, no guess
    ("checklist", "peer_reviewed: true\n", "unknown key 'peer_reviewed' in checklist"),
])
def test_unknown_keys_suggest_the_near_miss_in_every_schema(
        tmp_path: Path, kind: str, text: str, message: str) -> None:
    findings = Findings()
    check_schema(parse_document(text.encode(), tmp_path / "f.yaml"), kind, findings)
    unknown = [f.message for f in findings if f.rule == "schema-unknown-key"]
    assert unknown == [message]


@pytest.mark.parametrize(("key", "value", "problems"), [
    ("learning_rate", -1, ["learning_rate: -1 must be greater than 0"]),
    ("lora_dropout", 1.5, ["lora_dropout: 1.5 must be less than 1"]),
    ("lora_rank", 0, ["lora_rank: 0 is less than the minimum of 1"]),
    ("per_device_train_batch_size", 2.5,
     ["per_device_train_batch_size: expected integer, got 2.5"]),
    ("learning_rate", 2.0e-4, []),
    ("my_custom_key", -1, []),  # not described by the schema: nothing to check against
])
def test_value_problems_use_the_baseline_subschema(key: str, value: Any,
                                                   problems: list[str]) -> None:
    assert value_problems("baseline", key, value) == problems
