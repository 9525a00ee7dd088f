"""render/trainconfig.py: the per-trial train config, the trial's MLflow tags, meta.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from sweepctl.clients.mlflow_store import (
    TAG_EXPERIMENT,
    TAG_GIT_SHA,
    TAG_PR,
    TAG_ROLE,
    TAG_SPEC_HASH,
    TAG_TRIAL,
    TAG_TRIAL_ID,
)
from sweepctl.errors import SweepctlError
from sweepctl.render.trainconfig import (
    DEFAULT_SAVE_STEPS,
    DEFAULT_SAVE_TOTAL_LIMIT,
    param_keys,
    runner_meta,
    tier,
    train_config,
    trial_tags,
)
from sweepctl.spec.model import Budget, Dataset, Experiment, Objective
from sweepctl.sweep.trial import Trial

BASELINE: dict[str, Any] = {
    "model_name_or_path": "/models/base", "finetuning_type": "lora", "lora_rank": 16,
    "lora_alpha": 32, "learning_rate": 2.0e-4, "seed": 42, "template": "llama3",
    "report_to": "wandb", "output_dir": "/somewhere/else", "run_name": "by-hand",
}


def make_experiment(**changes: Any) -> Experiment:
    experiment = Experiment(
        path=Path("experiments/lora-rank-sweep"),
        name="lora-rank-sweep", title="LoRA rank sweep", owner="anna@example.com",
        hypothesis="rank helps", phase="hyperparameter_search",
        objective=Objective("eval_loss", "minimize", 0.4),
        budget=Budget(max_trials=10, gpu_hours=40, hours_per_trial=3.0),
        dataset=Dataset("support-chat", "v2.1.0", "3f1c" * 16),
        mlflow_experiment="llama-finetuning",
        tags={"model.base": "llama-3-8b", "team": "nlp"},
        runtime={}, baseline=BASELINE, sweep={"strategy": "grid"}, checklist={},
    )
    return dataclasses.replace(experiment, **changes)


def make_trial(**config_changes: Any) -> Trial:
    config = {**BASELINE, **config_changes}
    return Trial(index=1, slug="r16", params=config_changes, config=config,
                 trial_id="7c1e2a9f00", name="lora-rank-sweep-r16-7c1e2a9f00")


def test_train_config_sets_what_sweepctl_owns() -> None:
    trial = make_trial(lora_rank=32)
    config = train_config(trial, "/storage/lora-rank-sweep/x")
    assert config["report_to"] == "mlflow"
    assert config["output_dir"] == "/storage/lora-rank-sweep/x"
    assert config["run_name"] == trial.name
    assert config["lora_rank"] == 32
    owned = ("report_to", "output_dir", "run_name")
    checkpointing = {"save_strategy": "steps", "save_steps": DEFAULT_SAVE_STEPS,
                     "save_total_limit": DEFAULT_SAVE_TOTAL_LIMIT}
    assert {k: v for k, v in config.items() if k not in owned} \
        == {**{k: v for k, v in trial.config.items() if k not in owned}, **checkpointing}
    assert trial.config["report_to"] == "wandb"  # the trial itself is not mutated


@pytest.mark.parametrize(("changes", "expected"), [
    ({"quantization_bit": 4, "lora_rank": 64}, "memory_efficient"),
    ({"quantization_bit": 8, "lora_rank": 32}, "high_quality"),
    ({"lora_rank": 32}, "high_quality"),
    ({"lora_rank": 31}, "balanced"),
    ({"lora_rank": 8, "quantization_bit": None}, "balanced"),
    ({"lora_rank": "64"}, "balanced"),        # not a number: no claim of quality
    ({"lora_rank": True}, "balanced"),
])
def test_tier_follows_the_seed(changes: dict[str, Any], expected: str) -> None:
    assert tier({**BASELINE, **changes}) == expected


def test_trial_tags_carry_every_convention() -> None:
    tags = trial_tags(make_experiment(), make_trial(lora_rank=32), "a" * 40, 17,
                      spec_hash="cafe")
    assert tags == {
        "model.base": "llama-3-8b", "team": "nlp",
        TAG_EXPERIMENT: "lora-rank-sweep", TAG_TRIAL: "lora-rank-sweep-r16-7c1e2a9f00",
        TAG_TRIAL_ID: "7c1e2a9f00", TAG_ROLE: "trial", "phase": "hyperparameter_search",
        "tier": "high_quality", "dataset.name": "support-chat", "dataset.version": "v2.1.0",
        "dataset.sha256": "3f1c" * 16, TAG_GIT_SHA: "a" * 40,
        "mlflow.source.git.commit": "a" * 40, TAG_PR: "17", TAG_SPEC_HASH: "cafe",
    }
    assert all(isinstance(v, str) for v in tags.values())


def test_unknown_pr_and_sha_leave_no_empty_tags() -> None:
    tags = trial_tags(make_experiment(), make_trial(), None, None)
    assert TAG_PR not in tags and TAG_GIT_SHA not in tags
    assert "mlflow.source.git.commit" not in tags and TAG_SPEC_HASH not in tags


def test_experiment_tags_cannot_forge_sweepctl_tags() -> None:
    experiment = make_experiment(tags={TAG_TRIAL_ID: "forged", TAG_ROLE: "sweep", "tier": "x"})
    tags = trial_tags(experiment, make_trial(), "b" * 40, None)
    assert tags[TAG_TRIAL_ID] == "7c1e2a9f00"
    assert tags[TAG_ROLE] == "trial"
    assert tags["tier"] == "balanced"


def test_runner_meta_is_json_and_names_the_params_to_log() -> None:
    meta = runner_meta(make_experiment(), make_trial(lora_dropout=0.05), git_sha="c" * 40,
                       pr="3", parent_run_id="abc123")
    assert json.loads(json.dumps(meta)) == meta
    assert meta["mlflow_experiment"] == "llama-finetuning"
    assert meta["run_name"] == "lora-rank-sweep-r16-7c1e2a9f00"
    assert meta["parent_run_id"] == "abc123"
    assert meta["tags"][TAG_PR] == "3"
    assert "lora_rank" in meta["log_params"] and "lora_dropout" in meta["log_params"]
    assert not {"report_to", "output_dir", "run_name"} & set(meta["log_params"])
    assert param_keys({"b": 1, "a": 2, "run_name": "x"}) == ["a", "b"]


def test_a_trials_own_checkpointing_wins() -> None:
    config = train_config(make_trial(save_strategy="no", save_steps=50, save_total_limit=5),
                          "/out")
    assert (config["save_strategy"], config["save_steps"], config["save_total_limit"]) \
        == ("no", 50, 5)


def test_runner_meta_carries_adapter_and_output_choices() -> None:
    meta = runner_meta(make_experiment(), make_trial(), git_sha=None, pr=None,
                       parent_run_id=None, output_uri="pvc://storage/lora/x", log_adapter=True)
    assert meta["output_uri"] == "pvc://storage/lora/x"
    assert meta["log_adapter"] is True
    assert "early_stop" not in meta
    plain = runner_meta(make_experiment(), make_trial(), git_sha=None, pr=None,
                        parent_run_id=None)
    assert plain["log_adapter"] is False and "output_uri" not in plain


def test_early_stop_is_completed_with_the_objective() -> None:
    meta = runner_meta(make_experiment(), make_trial(), git_sha=None, pr=None,
                       parent_run_id=None, early_stop={"rule": "median", "min_steps": 20})
    assert meta["early_stop"] == {"rule": "median", "min_steps": 20, "min_trials": 1,
                                  "metric": "eval_loss", "goal": "minimize"}
    assert json.loads(json.dumps(meta)) == meta


def test_an_unknown_early_stop_rule_is_refused() -> None:
    with pytest.raises(SweepctlError, match="unknown early_stop rule 'mean'"):
        runner_meta(make_experiment(), make_trial(), git_sha=None, pr=None,
                    parent_run_id=None, early_stop={"rule": "mean"})
