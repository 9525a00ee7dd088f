"""Sweep rules: what `sweepctl validate` says about a sweep, where, and in which words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweepctl.spec.validate import validate_paths

VALID = Path(__file__).resolve().parent / "examples" / "valid"


def findings_for(tmp_path: Path, sweep: str, case: str = "grid") -> list[str]:
    folder = tmp_path / "demo-sweep"
    shutil.copytree(VALID / case / "demo-sweep", folder)
    (folder / "sweep.yaml").write_text(sweep)
    result = validate_paths([folder])
    return [str(f).replace(f"{folder}/", "") for f in result.findings.sorted()]


@pytest.mark.parametrize(("sweep", "expected"), [
    ("strategy: grid\nparameters:\n  lora_rank: [8, 16]\nderived:\n  lora_alpha: 2 * lora_rnk\n",
     "sweep.yaml:5:19: error: derived lora_alpha uses 'lora_rnk', which is not a sweep parameter "
     "(derived values use parameters only; parameters: lora_rank) [derived-unknown-name]"),
    ("strategy: grid\nparameters:\n  lora_rank: [8, 16]\nderived:\n  lora_alpha: '2 * (r'\n",
     "sweep.yaml:5:20: error: derived lora_alpha: invalid expression: '(' was never closed "
     "[derived-syntax]"),
    ("strategy: grid\nparameters:\n  lora_ranks: [8, 16]\n",
     "sweep.yaml:3:3: error: 'lora_ranks' is neither in baseline.yaml nor a known LLaMA-Factory "
     "key; did you mean 'lora_rank'? [sweep-unknown-key]"),
    ("strategy: grid\nparameters:\n  lora_rank: [8, 16, 32, 64]\n  learning_rate: [1.0e-4, 2.0e-4, "
     "3.0e-4]\n",
     "sweep.yaml:2:1: error: the sweep makes 12 trials (baseline and replicates included); "
     "budget.max_trials in experiment.yaml is 10 [budget-max-trials]"),
])
def test_sweep_findings(tmp_path: Path, sweep: str, expected: str) -> None:
    assert expected in findings_for(tmp_path, sweep)


def test_one_at_a_time_names_the_keys(tmp_path: Path) -> None:
    sweep = ("strategy: one-at-a-time\nparameters:\n  lora_rank: [16]\n  learning_rate: [2.0e-4]\n"
             "derived:\n  lora_alpha: 4 * lora_rank\n")
    found = findings_for(tmp_path, sweep, "one-at-a-time")
    # rank 16 -> alpha 64 is ONE change (alpha follows rank); the lr trial also moves alpha
    assert found == ["sweep.yaml:4:19: error: this one-at-a-time trial changes 2 keys vs the "
                     "baseline (learning_rate, lora_alpha); change one thing at a time "
                     "[ofat-multiple-changes]"]


def test_valid_examples_have_no_sweep_findings() -> None:
    result = validate_paths([VALID])
    assert [f for f in result.findings if f.severity == "error"] == []


# --- every value a sweep can produce meets baseline.schema.json (issue 13, item 1) ---------

@pytest.mark.parametrize(("sweep", "expected"), [
    # the exact cases: each validated with 0 errors, and cosinee failed on the trainer
    ("strategy: one-at-a-time\nparameters:\n  learning_rate: [-1]\n",
     ["sweep.yaml:3:19: error: learning_rate: -1 must be greater than 0 [sweep-value-invalid]"]),
    ("strategy: one-at-a-time\nparameters:\n  lora_dropout: [1.5]\n",
     ["sweep.yaml:3:18: error: lora_dropout: 1.5 must be less than 1 [sweep-value-invalid]"]),
    ("strategy: one-at-a-time\nparameters:\n  per_device_train_batch_size: [2.5]\n",
     ["sweep.yaml:3:33: error: per_device_train_batch_size: expected integer, got 2.5 "
      "[sweep-value-invalid]"]),
    ("strategy: grid\nparameters:\n  lora_rank: [8]\n  lr_scheduler_type: [cosine, cosinee]\n",
     ["sweep.yaml:4:31: error: lr_scheduler_type: 'cosinee' is not one of: linear, cosine, "
      "cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt, "
      "reduce_lr_on_plateau, cosine_with_min_lr, cosine_warmup_with_min_lr, "
      "warmup_stable_decay, greedy; did you mean 'cosine'? [sweep-value-invalid]"]),
    ("strategy: random\ntrials: 2\nparameters:\n  lora_rank: {choices: [8, 0]}\n",
     ["sweep.yaml:4:28: error: lora_rank: 0 is less than the minimum of 1 "
      "[sweep-value-invalid]"]),
    ("strategy: random\ntrials: 2\nparameters:\n  lora_rank: {distribution: uniform, low: 8, "
     "high: 16}\n",
     ["sweep.yaml:4:29: error: lora_rank: uniform draws fractional values but lora_rank is an "
      "integer; use int_uniform [sweep-value-invalid]"]),
    ("strategy: list\ntrials:\n  - {lora_rank: 16, lora_alpha: 32, lora_dropout: 1.5}\n",
     ["sweep.yaml:3:51: error: lora_dropout: 1.5 must be less than 1 [sweep-value-invalid]"]),
    ("strategy: grid\nparameters:\n  lora_rank: [8, 16]\nderived:\n  lora_alpha: lora_rank - 8\n",
     ["sweep.yaml:5:15: error: lora_alpha: 0 is less than the minimum of 1 (derived from "
      "lora_rank=8) [sweep-value-invalid]"]),
])
def test_sweep_values_meet_the_baseline_schema(tmp_path: Path, sweep: str,
                                               expected: list[str]) -> None:
    seen = findings_for(tmp_path, sweep)
    assert [f for f in seen if "[sweep-value-invalid]" in f] == expected
    # the error replaces the typical-range warning: one finding per bad value
    assert not any("[typical-range]" in f for f in seen if f.split(": ")[0] in
                   {e.split(": ")[0] for e in expected})


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.floats(max_value=0, allow_nan=False, allow_infinity=False),
                       st.floats(min_value=1, allow_nan=False, allow_infinity=False,
                                 exclude_min=True, max_value=1e300)))
def test_any_learning_rate_outside_the_schema_is_flagged(tmp_path: Path, value: float) -> None:
    folder = tmp_path / "demo-sweep"
    shutil.rmtree(folder, ignore_errors=True)
    seen = findings_for(tmp_path, f"strategy: one-at-a-time\nparameters:\n  learning_rate: "
                        f"[{value!r}]\n")
    flagged = [f for f in seen if "[sweep-value-invalid]" in f]
    assert len(flagged) == 1 and flagged[0].startswith("sweep.yaml:3:19: error: learning_rate: ")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_any_dropout_inside_the_schema_is_not_flagged(tmp_path: Path, value: float) -> None:
    shutil.rmtree(tmp_path / "demo-sweep", ignore_errors=True)
    seen = findings_for(tmp_path, f"strategy: grid\nparameters:\n  lora_dropout: [{value!r}]\n")
    assert not any("[sweep-value-invalid]" in f for f in seen)
