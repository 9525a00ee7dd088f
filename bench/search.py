"""How many trials each strategy needs to reach a target, on a synthetic objective.

The objective is a noisy bowl in (log10 learning_rate, log2 lora_rank) with its minimum
at learning_rate 2e-4, lora_rank 32: roughly what an eval_loss surface looks like. Each
strategy is run through the planning code round by round (batch 2, as ``sweepctl launch``
would: ``round_size`` -> ``propose`` -> results told back), until ``finished`` says the
target is met or the budget is spent. tpe draws its first 4 trials at random
(``startup_trials: 4``, two rounds) and then asks TPE. Trials are counted baseline
included, in whole rounds; a run that never meets the target counts as the whole budget.
Median over 20 seeds (``--seeds`` for more; the ratio was 0.43-0.50 for 20, 40, 60).

    .venv/bin/python bench/search.py [--seeds 20] [--budget 80]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from sweepctl.spec.model import Objective
from sweepctl.sweep.expand import expand_points
from sweepctl.sweep.identity import canonical_json
from sweepctl.sweep.tpe import Told, finished, propose, round_size

BASELINE = {"learning_rate": 1e-6, "lora_rank": 8, "seed": 0}
RANKS = [4, 8, 16, 32, 64, 128]
LR = {"distribution": "log_uniform", "low": 1e-6, "high": 1e-1}
TARGET = 0.53          # the bowl's floor is 0.5; about 4% of the space is below target
OBJECTIVE = Objective("eval_loss", "minimize", TARGET)
BATCH = 2


def loss(point: Mapping[str, Any], noise: random.Random) -> float:
    """A bowl with its minimum 0.5 at lr 2e-4, rank 32, plus Gaussian noise (sd 0.01)."""
    lr_term = (math.log10(point["learning_rate"]) - math.log10(2e-4)) / 0.5
    rank_term = (math.log2(point["lora_rank"]) - 5) / 2.5
    return 0.5 + 0.12 * (lr_term ** 2 + rank_term ** 2) + noise.gauss(0, 0.01)


def tpe_sweep(seed: int, budget: int) -> dict[str, Any]:
    return {"strategy": "tpe", "parameters": {"learning_rate": LR, "lora_rank": RANKS},
            "trials": budget, "batch": BATCH, "max_parallel": BATCH, "seed": seed,
            "startup_trials": 2 * BATCH}


def run_adaptive(seed: int, budget: int) -> int:
    """tpe through round_size / propose / finished, each round's results told back."""
    sweep, noise = tpe_sweep(seed, budget), random.Random(seed)
    told = [Told({}, "COMPLETE", loss(BASELINE, noise), "t000")]
    while finished(sweep, told, OBJECTIVE) is None:
        n = round_size(sweep, told, OBJECTIVE)
        for point in propose(sweep, BASELINE, told, OBJECTIVE, n=n):
            told.append(Told(point, "COMPLETE", loss(point, noise), f"t{len(told):03d}"))
    return _first_hit(told, budget)


def run_fixed(points: list[dict[str, Any]], seed: int, budget: int) -> int:
    """A fixed strategy's trials in expansion order (baseline first), in rounds of 2."""
    noise = random.Random(seed)
    told = [Told(p, "COMPLETE", loss({**BASELINE, **p}, noise), f"t{i:03d}")
            for i, p in enumerate(points[:budget])]
    return _first_hit(told, budget)


def _first_hit(told: list[Told], budget: int) -> int:
    for count, item in enumerate(told, 1):
        if item.value is not None and OBJECTIVE.met(item.value):
            # trials launch in rounds, so the whole round of the hit was spent
            return min(budget, 1 + math.ceil((count - 1) / BATCH) * BATCH)
    return budget


def random_points(seed: int, budget: int) -> list[dict[str, Any]]:
    sweep = {"strategy": "random", "parameters": {"learning_rate": LR,
                                                  "lora_rank": RANKS},
             "trials": budget - 1, "seed": seed}
    return expand_points(BASELINE, sweep)


def grid_points(budget: int) -> list[dict[str, Any]]:
    """The same space on a grid: 11 learning rates, 2 per decade, x the 6 ranks."""
    rates = [float(f"{10 ** (-6 + i / 2):.4g}") for i in range(11)]
    return expand_points(BASELINE, {"strategy": "grid",
                                    "parameters": {"learning_rate": rates,
                                                   "lora_rank": RANKS}})[:budget]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=80)
    args = parser.parse_args(argv)
    strategies: dict[str, Callable[[int], int]] = {
        "tpe": lambda s: run_adaptive(s, args.budget),
        "random": lambda s: run_fixed(random_points(s, args.budget), s, args.budget),
        "grid": lambda s: run_fixed(grid_points(args.budget), s, args.budget),
    }
    rows, medians = [], {}
    for name, run in strategies.items():
        start = time.perf_counter()
        counts = [run(seed) for seed in range(args.seeds)]
        medians[name] = statistics.median(counts)
        missed = sum(1 for c in counts if c >= args.budget)
        rows.append(f"| {name:<6} | {medians[name]:>14g} | {min(counts):>3} | "
                    f"{max(counts):>3} | {missed:>6} | {time.perf_counter() - start:>6.1f} |")
    print(f"trials to reach eval_loss < {TARGET} (baseline included, batch {BATCH}, "
          f"budget {args.budget}, {args.seeds} seeds; space {canonical_json(LR)} x "
          f"lora_rank {RANKS})\n")
    print("| strategy | median trials | min | max | missed | seconds |")
    print("|----------|---------------|-----|-----|--------|---------|")
    print("\n".join(rows))
    ratio = medians["tpe"] / medians["random"]
    print(f"\ntpe / random = {ratio:.2f} (goal: <= 0.50)")
    return 0 if ratio <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
