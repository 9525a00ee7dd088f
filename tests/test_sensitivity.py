"""Sensitivity: mean/std/count per parameter value, as a table and an error-bar PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweepctl.clients.mlflow_store import RunRecord
from sweepctl.results.compare import Comparison, build_comparison
from sweepctl.results.sensitivity import markdown_table, sensitivity, write_plots
from sweepctl.spec.model import Objective
from sweepctl.sweep.trial import Trial


def grid_comparison() -> Comparison:
    base = {"lora_rank": 8, "learning_rate": 1e-4, "seed": 42}
    points: list[dict[str, object]] = [
        {}, {"learning_rate": 2e-4}, {"lora_rank": 16}, {"lora_rank": 16, "learning_rate": 2e-4}]
    values = [[0.50, 0.52], [0.46, 0.48], [0.42, 0.44], [0.40, 0.40]]
    trials: list[Trial] = []
    runs: list[RunRecord] = []
    for index, (point, results) in enumerate(zip(points, values, strict=True)):
        for replicate, value in enumerate(results):
            params = {**point, **({"seed": 42 + replicate} if replicate else {})}
            tid = f"t{index}{replicate}"
            trials.append(Trial(index * 2 + replicate, f"p{index}", params, {**base, **params},
                                tid, f"x-p{index}-{tid}", replicate))
            runs.append(RunRecord(f"run-{tid}", "FINISHED", tid, None,
                                  metrics={"eval_loss": value, "train_runtime": 60.0}))
    trials.append(Trial(9, "p9", {"lora_rank": 32}, {**base, "lora_rank": 32}, "t9", "x-p9-t9"))
    return build_comparison("grid", trials, runs, Objective("eval_loss", "minimize", 0.45))


def test_mean_std_count_per_value() -> None:
    comparison = grid_comparison()
    table = sensitivity(comparison)
    assert list(table) == ["learning_rate", "lora_rank"]
    rank = {p.value: (p.mean, p.std, p.count) for p in table["lora_rank"]}
    assert rank[8] == pytest.approx((0.49, 0.0258, 4), rel=1e-2)
    assert rank[16] == pytest.approx((0.415, 0.019, 4), rel=1e-2)
    assert 32 not in rank  # a trial without a result is no data point
    assert [p.value for p in table["learning_rate"]] == [1e-4, 2e-4]  # numeric order
    text = markdown_table(comparison, table)
    assert "| lora_rank     | 16      | 0.415            | 0.019 | 4" in text


def test_one_png_per_parameter(tmp_path: Path) -> None:
    comparison = grid_comparison()
    table = sensitivity(comparison)
    written = write_plots(comparison, table, tmp_path / "plots")
    assert [p.name for p in written] == ["learning_rate.png", "lora_rank.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 5000
