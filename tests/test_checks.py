"""Sweep rules: what `sweepctl validate` says about a sweep, where, and in which words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
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
