"""Adaptive search: deterministic proposals from what MLflow knows, rounds, stop rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sweepctl.spec.model import Budget, Dataset, Experiment, Objective
from sweepctl.sweep.expand import expand, random_draws, trials_for_points
from sweepctl.sweep.tpe import State, Told, finished, propose, round_size
from sweepctl.sweep.trial import Trial

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "ghcr.io/example/llama-factory-train:0.9.5"
BASELINE = {"model_name_or_path": "m", "lora_rank": 8, "lora_alpha": 16,
            "learning_rate": 1e-4, "seed": 42}
SPACE = {"learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 3e-4},
         "lora_rank": {"choices": [8, 16, 32, 64]}}
MINIMIZE = Objective("eval_loss", "minimize", 0.4)


def tpe_sweep(**extra: Any) -> dict[str, Any]:
    return {"strategy": "tpe", "parameters": SPACE, "derived": {"lora_alpha": "2 * lora_rank"},
            "trials": 6, "batch": 2, "max_parallel": 2, "seed": 7, **extra}


def experiment(sweep: dict[str, Any], max_trials: int = 20) -> Experiment:
    return Experiment(
        path=Path("lr-rank-tpe"), name="lr-rank-tpe", title="t", owner="a@example.com",
        hypothesis="h", phase="hyperparameter_search", objective=MINIMIZE,
        budget=Budget(max_trials, 100.0, 1.0), dataset=Dataset("d", "v1", "ab" * 32),
        mlflow_experiment="m", tags={}, runtime={}, baseline=BASELINE, sweep=sweep,
        checklist={})


def loss(trial: Trial) -> float:
    """A bowl around lr 1e-4, rank 32: what the runs would report."""
    import math

    return 0.5 + (math.log10(trial.config["learning_rate"]) + 4) ** 2 + (
        math.log2(trial.config["lora_rank"]) - 5) ** 2 / 10


def told(trials: list[Trial], state: State = "COMPLETE") -> list[Told]:
    return [Told(t.params, state, loss(t) if state == "COMPLETE" else None, t.trial_id,
                 t.replicate, t.name) for t in trials]


def next_round(sweep: dict[str, Any], known: list[Told], start: int) -> list[Trial]:
    n = round_size(sweep, known, MINIMIZE)
    return trials_for_points(experiment(sweep), IMAGE,
                             propose(sweep, BASELINE, known, MINIMIZE, n=n), start)


def test_expand_shows_the_baseline_and_the_first_round_drawn_like_random() -> None:
    sweep = tpe_sweep()
    trials = expand(experiment(sweep), IMAGE)
    assert len(trials) == 3 and trials[0].is_baseline
    points = random_draws({**sweep, "strategy": "random"}, 0, 2)
    assert [{k: t.config[k] for k in SPACE} for t in trials[1:]] == points
    assert all(t.config["lora_alpha"] == 2 * t.config["lora_rank"] for t in trials)
    # the first round is what propose gives with nothing told: plan shows what launch runs
    assert propose(sweep, BASELINE, [], MINIMIZE, n=2) == points


def test_budget_is_the_whole_search_not_the_first_round() -> None:
    from sweepctl.sweep.expand import SweepError, count_trials

    assert count_trials(tpe_sweep(trials=12)) == 12
    assert count_trials(tpe_sweep(trials=12, replicates=2)) == 24
    with pytest.raises(SweepError, match=r"makes 12 trials.*max_trials is 10"):
        expand(experiment(tpe_sweep(trials=12), max_trials=10), IMAGE)


def test_round_two_is_tpe_and_depends_on_round_one_results() -> None:
    sweep = tpe_sweep()
    first = expand(experiment(sweep), IMAGE)
    good = next_round(sweep, told(first), 3)
    worse_first = told(first)
    # the same points, but round 1's results ranked the other way round
    flipped = [Told(t.params, t.state, 10 - (t.value or 0), t.trial_id) for t in worse_first]
    other = next_round(sweep, flipped, 3)
    assert len(good) == len(other) == 2
    assert {t.trial_id for t in good}.isdisjoint(t.trial_id for t in first)
    assert [t.params for t in good] != [t.params for t in other]
    assert [t.index for t in good] == [3, 4]


def test_same_told_gives_the_same_proposals_whatever_the_order() -> None:
    sweep = tpe_sweep(trials=10)
    known = told(expand(experiment(sweep), IMAGE))
    known += told(next_round(sweep, known, 3))
    once = propose(sweep, BASELINE, known, MINIMIZE, n=2)
    assert propose(sweep, BASELINE, list(reversed(known)), MINIMIZE, n=2) == once
    # a crash between ask and launch: nothing was created, so the next launch asks again
    assert propose(sweep, BASELINE, known, MINIMIZE, n=2) == once


def test_proposals_are_the_same_in_another_process() -> None:
    sweep = tpe_sweep(trials=10)
    known = told(expand(experiment(sweep), IMAGE))
    here = propose(sweep, BASELINE, known, MINIMIZE, n=2)
    script = (
        "import json, sys\n"
        "from sweepctl.spec.model import Objective\n"
        "from sweepctl.sweep.tpe import Told, propose\n"
        "sweep, baseline, known = json.loads(sys.stdin.read())\n"
        "known = [Told(**k) for k in known]\n"
        "print(json.dumps(propose(sweep, baseline, known, Objective('eval_loss', 'minimize',"
        " 0.4), n=2)))\n")
    payload = json.dumps([sweep, BASELINE, [vars(k) | {"params": dict(k.params)}
                                            for k in known]])
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], input=payload, env=env,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == here
    assert out.stderr == ""  # optuna's study log and experimental warnings stay quiet


def test_running_trials_count_against_parallel_and_are_not_proposed_again() -> None:
    sweep = tpe_sweep(trials=10, batch=2, max_parallel=3, startup_trials=2)
    first = expand(experiment(sweep), IMAGE)
    known = told(first[:1]) + told(first[1:], "RUNNING")
    assert round_size(sweep, known, MINIMIZE) == 1  # 3 in parallel, 2 running
    proposed = next_round(sweep, known, 3)
    assert len(proposed) == 1
    assert proposed[0].trial_id not in {t.trial_id for t in first}


def test_a_small_discrete_space_never_repeats_a_known_point() -> None:
    sweep = {"strategy": "tpe", "parameters": {"lora_rank": [8, 16, 32]}, "trials": 6,
             "batch": 2, "seed": 1}
    known = told(expand(experiment(sweep), IMAGE))
    assert sorted(t.params.get("lora_rank", 8) for t in known) == [8, 16, 32]
    # every point of the space is known: TPE proposes nothing rather than a repeat
    assert propose(sweep, BASELINE, known, MINIMIZE, n=2) == []


def test_runs_outside_an_edited_space_are_left_out_of_the_study() -> None:
    sweep = tpe_sweep(trials=10)
    known = told(expand(experiment(sweep), IMAGE))
    narrowed = tpe_sweep(trials=10, parameters={
        **SPACE, "lora_rank": {"choices": [16, 32, 64]}})
    outside = [Told({"lora_rank": 128, "lora_alpha": 256}, "COMPLETE", 0.01, "zzz")]
    proposed = propose(narrowed, BASELINE, known + outside, MINIMIZE, n=2)
    # a run that no longer fits is not told at all: the study is the one over the rest
    assert proposed == propose(narrowed, BASELINE, known, MINIMIZE, n=2)
    assert all(point["lora_rank"] in (16, 32, 64) for point in proposed)


def test_stops_when_the_target_is_met_respecting_the_goal() -> None:
    sweep = tpe_sweep()
    known = [Told({}, "COMPLETE", 0.6, "a0", name="base"),
             Told({"lora_rank": 16}, "COMPLETE", 0.35, "b1", name="r16"),
             Told({"lora_rank": 32}, "FAIL", None, "c2", name="r32")]
    assert finished(sweep, known, MINIMIZE) == "target met by r16 after 3 trials"
    assert round_size(sweep, known, MINIMIZE) == 0
    maximize = Objective("accuracy", "maximize", 0.5)
    assert finished(sweep, known, maximize) == "target met by base after 3 trials"
    assert finished(sweep, known, Objective("accuracy", "maximize", 0.9)) is None


def test_stops_when_the_budget_is_spent() -> None:
    sweep = tpe_sweep(trials=3)
    no_target = Objective("eval_loss", "minimize", None)
    first = expand(experiment(sweep), IMAGE)
    assert len(first) == 3
    assert finished(sweep, told(first, "RUNNING"), no_target) == "budget spent"
    assert round_size(sweep, told(first), no_target) == 0


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 3))
def test_proposals_lie_in_the_space_rounded(seed: int, n: int) -> None:
    sweep = tpe_sweep(seed=seed, trials=20, batch=3, max_parallel=3)
    known = told(expand(experiment(sweep), IMAGE))
    for point in propose(sweep, BASELINE, known, MINIMIZE, n=n):
        assert 1e-5 <= point["learning_rate"] <= 3e-4
        assert float(f"{point['learning_rate']:.4g}") == point["learning_rate"]
        assert point["lora_rank"] in (8, 16, 32, 64)


def test_validate_and_expand_never_import_optuna() -> None:
    script = ("import sys\n"
              "from sweepctl.cli.main import main\n"
              "try:\n    main(['validate', 'experiments/lr-rank-tpe'])\n"
              "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
              "assert 'optuna' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)


def test_failed_and_pruned_trials_are_told_and_steer_the_study() -> None:
    sweep = tpe_sweep(trials=10)
    first = expand(experiment(sweep), IMAGE)
    complete = told(first)
    pruned = told(first[:1]) + [Told(t.params, "PRUNED", 3.0, t.trial_id) for t in first[1:]]
    failed = told(first[:1]) + told(first[1:], "FAIL")
    rounds = [propose(sweep, BASELINE, known, MINIMIZE, n=2)
              for known in (complete, pruned, failed)]
    assert all(len(r) == 2 for r in rounds)
    assert rounds[0] != rounds[1] and rounds[0] != rounds[2]


def test_mlflow_status_tags_and_plan_note() -> None:
    from sweepctl.sweep.tpe import TAG_PROPOSAL, TAG_ROUND, plan_note, round_tags, state_of

    assert [state_of(s) for s in ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")] == [
        "COMPLETE", "FAIL", "FAIL", "RUNNING", "RUNNING"]
    assert state_of("FINISHED", pruned=True) == "PRUNED"
    tags = round_tags(2, {"lora_rank": 16, "learning_rate": 1.5e-4})
    assert tags == {TAG_ROUND: "2", TAG_PROPOSAL: '{"learning_rate":0.00015,"lora_rank":16}'}
    assert plan_note(tpe_sweep(trials=12)) == (
        "up to 9 more trial(s), proposed by TPE as results arrive (2 per launch; the search "
        "stops early when objective.target is met)")
    assert plan_note(tpe_sweep(trials=3)).startswith("no later rounds")


def test_three_launches_spend_a_six_trial_budget_and_a_fourth_proposes_nothing() -> None:
    sweep = tpe_sweep(trials=6)
    no_target = Objective("eval_loss", "minimize", None)
    trials = expand(experiment(sweep), IMAGE)            # launch 1: baseline + round 1
    for _ in range(2):                                    # launches 2 and 3
        known = told(trials)
        n = round_size(sweep, known, no_target)
        points = propose(sweep, BASELINE, known, no_target, n=n)
        trials += trials_for_points(experiment(sweep), IMAGE, points, len(trials))
    assert len(trials) == 6 and len({t.trial_id for t in trials}) == 6
    assert [t.index for t in trials] == list(range(6))
    assert finished(sweep, told(trials), no_target) == "budget spent"
    assert round_size(sweep, told(trials), no_target) == 0    # launch 4


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_a_proposal_tag_rebuilds_the_same_trial(seed: int) -> None:
    """What the next launch reads back from sweepctl.proposal is the trial it launched."""
    from sweepctl.render.trainconfig import trial_tags
    from sweepctl.sweep.tpe import TAG_PROPOSAL, TAG_ROUND, fits, round_tags

    sweep = tpe_sweep(seed=seed)
    spec = experiment(sweep)
    [trial] = next_round(sweep, told(expand(spec, IMAGE)[:1]), 1)[:1]
    tags = trial_tags(spec, replace(trial, round_number=3), None, None)
    assert tags[TAG_ROUND] == "3"
    point = json.loads(tags[TAG_PROPOSAL])
    assert set(point) == set(SPACE) and fits(sweep, BASELINE, point)
    [again] = trials_for_points(spec, IMAGE, [point], 1)
    assert again.trial_id == trial.trial_id
    assert round_tags(3, point) == {k: tags[k] for k in (TAG_ROUND, TAG_PROPOSAL)}
    assert TAG_ROUND not in trial_tags(spec, trial, None, None)  # round 0: not proposed
    narrowed = tpe_sweep(parameters={**SPACE, "lora_rank": {"choices": [128]}})
    assert not fits(narrowed, BASELINE, point)
