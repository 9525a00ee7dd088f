"""Sweep expansion: every strategy, derived, replicates, duplicates, budget, determinism."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sweepctl.spec.model import Budget, Dataset, Experiment, Objective
from sweepctl.sweep.expand import SweepError, expand, expand_points, resolve_points

IMAGE = "ghcr.io/example/llama-factory-train:0.9.5"
BASELINE = {"model_name_or_path": "m", "lora_rank": 8, "lora_alpha": 16,
            "learning_rate": 1e-4, "lora_dropout": 0.05, "seed": 42}


def experiment(sweep: dict[str, Any], baseline: dict[str, Any] | None = None,
               max_trials: int = 100, name: str = "lora-rank-sweep") -> Experiment:
    return Experiment(
        path=Path(name), name=name, title=name, owner="a@example.com", hypothesis="h",
        phase="hyperparameter_search", objective=Objective("eval_loss", "minimize", 0.4),
        budget=Budget(max_trials, 100.0, 1.0), dataset=Dataset("d", "v1", "ab" * 32),
        mlflow_experiment="m", tags={}, runtime={},
        baseline=BASELINE if baseline is None else baseline, sweep=sweep, checklist={})


def test_grid_with_derived_keeps_the_baseline_point_as_trial_0() -> None:
    sweep = {"strategy": "grid", "parameters": {"lora_rank": [8, 16, 32]},
             "derived": {"lora_alpha": "2 * lora_rank"}}
    trials = expand(experiment(sweep), IMAGE)
    assert [t.params for t in trials] == [
        {}, {"lora_rank": 16, "lora_alpha": 32}, {"lora_rank": 32, "lora_alpha": 64}]
    assert [t.index for t in trials] == [0, 1, 2]
    assert trials[0].is_baseline and trials[0].slug == "baseline"
    assert trials[1].name == f"lora-rank-sweep-r16-a32-{trials[1].trial_id}"
    assert trials[1].config["lora_alpha"] == 32 and trials[1].config["model_name_or_path"] == "m"


def test_grid_order_is_the_product_last_key_fastest() -> None:
    sweep = {"strategy": "grid", "parameters": {"lora_rank": [16, 32],
                                                "learning_rate": [2e-4, 3e-4]}}
    assert expand_points(BASELINE, sweep)[1:] == [
        {"lora_rank": 16, "learning_rate": 2e-4}, {"lora_rank": 16, "learning_rate": 3e-4},
        {"lora_rank": 32, "learning_rate": 2e-4}, {"lora_rank": 32, "learning_rate": 3e-4}]


values = st.lists(st.integers(100, 10_000), min_size=1, max_size=3, unique=True)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["max_steps", "cutoff_len", "save_steps", "eval_steps"]),
                       values, min_size=1, max_size=3), st.integers(1, 3))
def test_grid_count_is_the_product(params: dict[str, list[int]], replicates: int) -> None:
    sweep = {"strategy": "grid", "parameters": params, "replicates": replicates}
    points = expand_points(BASELINE, sweep)
    assert len(points) == (math.prod(len(v) for v in params.values()) + 1) * replicates
    assert points == expand_points(BASELINE, sweep)  # deterministic


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["lora_rank", "learning_rate", "lora_dropout", "x"]),
                       st.lists(st.one_of(st.integers(1, 64), st.sampled_from([0.1, 1e-3])),
                                min_size=1, max_size=4, unique=True), min_size=1))
def test_one_at_a_time_changes_exactly_one_key(params: dict[str, list[Any]]) -> None:
    sweep = {"strategy": "one-at-a-time", "parameters": params}
    points = expand_points(BASELINE, sweep)
    assert points[0] == {}
    assert all(len(p) == 1 for p in points[1:])
    expected = sum(1 for k, vs in params.items() for v in vs
                   if k not in BASELINE or BASELINE[k] != v)
    assert len(points) == 1 + expected


def test_one_at_a_time_with_coupled_derived() -> None:
    sweep = {"strategy": "one-at-a-time",
             "parameters": {"lora_rank": [16], "learning_rate": [2e-4]},
             "derived": {"lora_alpha": "2 * lora_rank"}}
    assert expand_points(BASELINE, sweep)[1:] == [{"lora_rank": 16, "lora_alpha": 32},
                                                  {"learning_rate": 2e-4}]


RANDOM = {"strategy": "random", "trials": 12, "seed": 7, "parameters": {
    "learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 3e-4},
    "lora_rank": {"distribution": "choices", "choices": [8, 16, 32, 64]},
    "lora_dropout": {"distribution": "uniform", "low": 0.0, "high": 0.1},
    "cutoff_len": {"distribution": "int_uniform", "low": 512, "high": 4096}}}


def test_random_is_seeded_rounded_and_in_range() -> None:
    points = [p.changes for p in resolve_points(BASELINE, RANDOM)]
    assert len(points) == 13
    for point in points[1:]:
        assert 1e-5 <= point["learning_rate"] <= 3e-4
        assert point["learning_rate"] == float(f"{point['learning_rate']:.4g}")
        assert point.get("lora_rank", 8) in (8, 16, 32, 64)
        assert 512 <= point["cutoff_len"] <= 4096 and isinstance(point["cutoff_len"], int)
    # pinned: the same spec gives the same trials on every run and platform
    # (lora_rank drew 8, the baseline's value, so it is not a change)
    assert points[1] == {"learning_rate": 0.0002513, "lora_dropout": 0.03948, "cutoff_len": 1838}
    reordered = {**RANDOM, "parameters": dict(reversed(list(RANDOM["parameters"].items())))}
    assert [sorted(p.changes.items()) for p in resolve_points(BASELINE, reordered)] == [
        sorted(p.items()) for p in points]
    other = [p.changes for p in resolve_points(BASELINE, {**RANDOM, "seed": 8})]
    assert other != points


def test_list_and_duplicates() -> None:
    sweep = {"strategy": "list", "trials": [{"lora_rank": 16}, {"lora_rank": 8},
                                            {"lora_rank": 16.0}, {"lora_rank": 32}]}
    points = resolve_points(BASELINE, sweep)
    assert [p.duplicate_of for p in points] == [None, None, 0, 1, None]
    trials = expand(experiment(sweep), IMAGE)
    assert [t.params for t in trials] == [{}, {"lora_rank": 16}, {"lora_rank": 32}]
    assert len({t.trial_id for t in trials}) == 3


def test_replicates_repeat_every_point_with_the_next_seeds() -> None:
    sweep = {"strategy": "grid", "parameters": {"lora_rank": [16]}, "replicates": 3}
    trials = expand(experiment(sweep), IMAGE)
    assert [(t.params, t.replicate) for t in trials] == [
        ({}, 0), ({"seed": 43}, 1), ({"seed": 44}, 2),
        ({"lora_rank": 16}, 0), ({"lora_rank": 16, "seed": 43}, 1),
        ({"lora_rank": 16, "seed": 44}, 2)]
    assert [t.slug for t in trials[3:]] == ["r16", "r16-s43", "r16-s44"]


def test_replicates_need_a_seed() -> None:
    baseline = {k: v for k, v in BASELINE.items() if k != "seed"}
    sweep = {"strategy": "grid", "parameters": {"lora_rank": [16]}, "replicates": 2}
    with pytest.raises(SweepError, match=r"needs a seed in baseline\.yaml") as caught:
        expand(experiment(sweep, baseline), IMAGE)
    assert caught.value.rule == "replicates-need-seed" and caught.value.key == ("replicates",)


def test_max_trials_is_enforced() -> None:
    sweep = {"strategy": "grid", "parameters": {"lora_rank": [16, 32, 64]}}
    with pytest.raises(SweepError, match=r"makes 4 trials .*budget.max_trials is 3"):
        expand(experiment(sweep, max_trials=3), IMAGE)
    assert len(expand(experiment(sweep, max_trials=4), IMAGE)) == 4


def test_huge_grids_are_refused_before_expansion() -> None:
    sweep = {"strategy": "grid", "parameters": {f"k{i}": list(range(10)) for i in range(12)}}
    with pytest.raises(SweepError, match="expands at most"):
        expand_points(BASELINE, sweep)


@pytest.mark.parametrize(("sweep", "rule", "key"), [
    ({"strategy": "grid", "parameters": {"lora_rank": [16]}, "derived": {"lora_alpha": "2 *"}},
     "derived-syntax", ("derived", "lora_alpha")),
    ({"strategy": "grid", "parameters": {"lora_rank": [16]},
      "derived": {"lora_alpha": "2 * learning_rate"}},
     "derived-unknown-name", ("derived", "lora_alpha")),
    ({"strategy": "grid", "parameters": {"lora_rank": [0]},
      "derived": {"lora_alpha": "32 / lora_rank"}},
     "derived-value", ("derived", "lora_alpha")),
    ({"strategy": "random", "trials": 2, "parameters": {
        "learning_rate": {"distribution": "log_uniform", "low": 0, "high": 1}}},
     "sweep-range", ("parameters", "learning_rate")),
    ({"strategy": "annealing"}, "sweep-invalid", ("strategy",)),
])
def test_errors_name_the_rule_and_place(sweep: dict[str, Any], rule: str,
                                        key: tuple[str, ...]) -> None:
    with pytest.raises(SweepError) as caught:
        expand_points(BASELINE, sweep)
    assert (caught.value.rule, caught.value.key) == (rule, key)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 20))
def test_expansion_is_deterministic(seed: int, n: int) -> None:
    sweep = {**RANDOM, "seed": seed, "trials": n}
    first = expand(experiment(sweep), IMAGE)
    assert first == expand(experiment(sweep), IMAGE)
    assert len({t.trial_id for t in first}) == len(first)
    assert len({t.name for t in first}) == len(first)


TPE = {"strategy": "tpe", "trials": 8, "batch": 2, "seed": 3,
       "parameters": {"learning_rate": {"distribution": "log_uniform", "low": 1e-5,
                                        "high": 3e-4}, "lora_rank": {"choices": [8, 16, 32]}},
       "derived": {"lora_alpha": "2 * lora_rank"}}


def test_tpe_expands_to_the_baseline_and_the_first_round_only() -> None:
    from sweepctl.sweep.expand import count_trials

    trials = expand(experiment(TPE), IMAGE)
    assert [t.index for t in trials] == [0, 1, 2] and trials[0].is_baseline
    assert count_trials(TPE) == 8  # the budget counts every round
    assert trials == expand(experiment(TPE), IMAGE)


def test_trials_for_points_is_the_path_expand_takes() -> None:
    from sweepctl.sweep.expand import trials_for_points

    first = expand(experiment(TPE), IMAGE)
    points = [{k: t.config[k] for k in ("learning_rate", "lora_rank")} for t in first[1:]]
    again = trials_for_points(experiment(TPE), IMAGE, points, 1)
    assert [(t.index, t.trial_id, t.name, t.params) for t in again] == [
        (t.index, t.trial_id, t.name, t.params) for t in first[1:]]
    # the baseline's own point and a repeat are dropped, as expand drops them
    base = {"learning_rate": 1e-4, "lora_rank": 8}
    assert (trials_for_points(experiment(TPE), IMAGE, [base, points[0], points[0]], 5)
            == trials_for_points(experiment(TPE), IMAGE, [points[0]], 5))


def test_trials_for_points_applies_replicates() -> None:
    from sweepctl.sweep.expand import trials_for_points

    sweep = {**TPE, "replicates": 2}
    trials = trials_for_points(experiment(sweep), IMAGE, [{"lora_rank": 16}], 4)
    assert [(t.index, t.replicate, t.config["seed"], t.config["lora_alpha"])
            for t in trials] == [(4, 0, 42, 32), (5, 1, 43, 32)]
