"""Sensitivity: mean/std/count per parameter value, as a table and an error-bar PNG."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from sweepctl.clients.mlflow_store import RunRecord
from sweepctl.errors import SweepctlError
from sweepctl.renderers.markdown import sensitivity_table
from sweepctl.results.compare import Comparison, build_comparison
from sweepctl.results.sensitivity import sensitivity, write_plots
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
    text = sensitivity_table(comparison, table)
    assert "| lora_rank     | 16      | 0.415            | 0.019 | 4" in text


def test_one_png_per_parameter(tmp_path: Path) -> None:
    comparison = grid_comparison()
    table = sensitivity(comparison)
    written = write_plots(comparison, table, tmp_path / "plots")
    assert [p.name for p in written] == ["learning_rate.png", "lora_rank.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 5000


def test_a_plot_drawn_from_the_same_points_is_not_drawn_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hourly report of every experiment: an unchanged experiment costs no drawing."""
    import sweepctl.results.sensitivity as module

    comparison = grid_comparison()
    table = sensitivity(comparison)
    written = write_plots(comparison, table, tmp_path)
    stamps = [p.stat().st_mtime_ns for p in written]
    drawn: list[str] = []
    real = module._plot
    monkeypatch.setattr(module, "_plot", lambda figure, c, parameter, points: (
        drawn.append(parameter), real(figure, c, parameter, points))[1])
    assert write_plots(comparison, table, tmp_path) == written
    assert drawn == [] and [p.stat().st_mtime_ns for p in written] == stamps
    table["lora_rank"] = table["lora_rank"][:1]            # one value's result changed
    write_plots(comparison, table, tmp_path)
    assert drawn == ["lora_rank"]


def ofat_comparison() -> Comparison:
    """The issue-13 sweep: one-at-a-time over learning_rate, lora_dropout and epochs."""
    base = {"learning_rate": 1e-3, "lora_dropout": 0.0, "num_train_epochs": 1, "seed": 42}
    points: list[tuple[dict[str, object], float]] = [
        ({}, 6.06),
        ({"learning_rate": 5e-4}, 6.04), ({"learning_rate": 2e-3}, 6.08),
        ({"learning_rate": 5e-3}, 6.03),
        ({"lora_dropout": 0.1}, 6.10), ({"lora_dropout": 0.2}, 6.15),
        ({"num_train_epochs": 40}, 5.66),
    ]
    trials: list[Trial] = []
    runs: list[RunRecord] = []
    for index, (point, value) in enumerate(points):
        tid = f"t{index}"
        trials.append(Trial(index, f"p{index}", point, {**base, **point}, tid, f"x-{tid}"))
        runs.append(RunRecord(f"run-{tid}", "FINISHED", tid, None, metrics={"eval_loss": value}))
    return build_comparison("dropout-lr-ofat", trials, runs, Objective("eval_loss", "minimize"))


def test_one_at_a_time_uses_the_baseline_and_the_parameters_own_trials() -> None:
    comparison = ofat_comparison()
    # the numbers: pooling every trial with dropout 0 gives its wrong row
    pooled = [v for row in comparison.rows if row.params["lora_dropout"] == 0.0
              for v in row.values]
    assert (f"{statistics.fmean(pooled):.4g}", f"{statistics.stdev(pooled):.2g}",
            len(pooled)) == ("5.974", "0.18", 5)
    table = sensitivity(comparison)
    dropout = {p.value: (p.mean, p.std, p.count) for p in table["lora_dropout"]}
    # before: every trial that left dropout alone (the 40-epoch one too) was pooled into
    # `lora_dropout | 0 | 5.974 | 0.18 | 5`; now 0 is the baseline alone
    assert dropout == {0.0: (6.06, None, 1), 0.1: (6.10, None, 1), 0.2: (6.15, None, 1)}
    epochs = {p.value: p.mean for p in table["num_train_epochs"]}
    assert epochs == {1: 6.06, 40: 5.66}
    text = sensitivity_table(comparison, table)
    assert "5.974" not in text
    assert "| lora_dropout     | 0       | 6.06             | –     | 1      |" in text


def test_grid_keeps_marginal_means_over_every_trial() -> None:
    # the pooled view is right for a grid: each value of lora_rank is seen with every lr
    rank = {p.value: p.count for p in sensitivity(grid_comparison())["lora_rank"]}
    assert rank == {8: 4, 16: 4}


def derived_comparison(strategy_points: list[dict[str, object]]) -> Comparison:
    base = {"lora_rank": 8, "lora_alpha": 16, "learning_rate": 1e-3, "seed": 42}
    trials: list[Trial] = []
    runs: list[RunRecord] = []
    for index, point in enumerate(strategy_points):
        if "lora_rank" in point:
            point = {**point, "lora_alpha": 2 * int(str(point["lora_rank"]))}
        tid = f"t{index}"
        trials.append(Trial(index, f"p{index}", point, {**base, **point}, tid, f"x-{tid}"))
        runs.append(RunRecord(f"run-{tid}", "FINISHED", tid, None,
                              metrics={"eval_loss": 7.0 - index / 10}))
    return build_comparison("demo", trials, runs, Objective("eval_loss", "minimize"))


@pytest.mark.parametrize("points", [
    # the demo's grid: lora_rank x learning_rate with lora_alpha: 2 * lora_rank
    [{}, {"learning_rate": 5e-3}, {"lora_rank": 16}, {"lora_rank": 16, "learning_rate": 5e-3}],
    # one-at-a-time with the same derived key
    [{}, {"lora_rank": 16}, {"lora_rank": 32}, {"learning_rate": 5e-3}],
])
def test_a_derived_key_gets_no_plot_of_its_own(points: list[dict[str, object]],
                                               tmp_path: Path) -> None:
    comparison = derived_comparison(points)
    assert "lora_alpha" in comparison.varied
    table = sensitivity(comparison)
    assert sorted(table) == ["learning_rate", "lora_rank"]
    written = write_plots(comparison, table, tmp_path)
    assert sorted(p.name for p in written) == ["learning_rate.png", "lora_rank.png"]


def test_one_at_a_time_with_a_derived_key_keeps_the_leaders_trials() -> None:
    comparison = derived_comparison([{}, {"lora_rank": 16}, {"lora_rank": 32},
                                     {"learning_rate": 5e-3}])
    rank = {p.value: p.mean for p in sensitivity(comparison)["lora_rank"]}
    # the learning-rate trial (6.7) is not pooled into lora_rank = 8
    assert rank == pytest.approx({8: 7.0, 16: 6.9, 32: 6.8})


def test_a_symlink_planted_as_a_plot_is_refused_not_followed(tmp_path: Path) -> None:
    # a pull request can commit plots/lora_rank.png -> ~/.bashrc; CI runs report --notes
    target = tmp_path / "bashrc"
    target.write_text("keep", encoding="utf-8")
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "lora_rank.png").symlink_to(target)
    comparison = grid_comparison()
    with pytest.raises(SweepctlError, match="symlink is refused"):
        write_plots(comparison, sensitivity(comparison), plots)
    assert target.read_text(encoding="utf-8") == "keep"


def test_a_random_sweep_plots_every_parameter_drawn_together() -> None:
    # random and tpe change every key in every trial, each draw's values unique: the
    # rows alone cannot tell a second drawn parameter from a derived one, and it was
    # dropped as a "follower" of the first (no table rows, no plot)
    base = {"learning_rate": 1e-3, "lora_dropout": 0.0, "seed": 42}
    draws = [(2.1e-4, 0.07), (6.3e-4, 0.31), (3.3e-3, 0.12), (8.8e-3, 0.24)]
    trials = [Trial(0, "baseline", {}, base, "t0", "x-t0")]
    runs = [RunRecord("run-t0", "FINISHED", "t0", None, metrics={"eval_loss": 6.0})]
    for index, (rate, dropout) in enumerate(draws, 1):
        point = {"learning_rate": rate, "lora_dropout": dropout}
        trials.append(Trial(index, f"p{index}", point, {**base, **point}, f"t{index}",
                            f"x-t{index}"))
        runs.append(RunRecord(f"run-t{index}", "FINISHED", f"t{index}", None,
                              metrics={"eval_loss": 6.0 - index / 10}))
    comparison = build_comparison("random", trials, runs, Objective("eval_loss", "minimize"),
                                  derived=frozenset())
    table = sensitivity(comparison)
    assert sorted(table) == ["learning_rate", "lora_dropout"]
    assert [p.value for p in table["lora_dropout"]] == [0.0, 0.07, 0.12, 0.24, 0.31]


def test_compare_of_a_random_sweep_keeps_both_drawn_parameters(
        tmp_path: Path, mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_trial, make_experiment, result, trials_of
    from sweepctl.usecases.compare import compare
    from sweepctl.workspace import Workspace

    sweep = ("strategy: random\nparameters:\n"
             "  learning_rate: {distribution: log_uniform, low: 1.0e-4, high: 1.0e-2}\n"
             "  lora_dropout: {distribution: uniform, low: 0.0, high: 0.3}\n"
             "trials: 4\nseed: 7\nreplicates: 1\nmax_parallel: 1\n")
    folder, _ = make_experiment(tmp_path, sweep, max_trials=10)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    for i, trial in enumerate(trials):
        log_trial(client, experiment, trial, metrics=result(0.5 - i / 100, 100.0))
    workspace = Workspace(env_tracking_uri=mlflow_server)
    comparison = compare(workspace, workspace.resolve(workspace.load(folder)))
    assert comparison.varied == ("learning_rate", "lora_dropout")
    table = sensitivity(comparison)
    assert sorted(table) == ["learning_rate", "lora_dropout"]
    assert sum(p.count for p in table["lora_dropout"]) == 5


def test_a_kept_figure_draws_byte_for_byte_the_plots_a_new_one_draws(tmp_path: Path) -> None:
    from sweepctl.results import pngfile

    comparison = grid_comparison()
    table = sensitivity(comparison)
    rank_only = {"lora_rank": table["lora_rank"]}
    pngfile._KEPT.clear()
    fresh = write_plots(comparison, rank_only, tmp_path / "fresh")[0].read_bytes()
    assert "sensitivity" in pngfile._KEPT   # the figure is kept for the next plot
    # another plot first (other ticks, labels, error bars and annotations), then the same
    write_plots(comparison, {"learning_rate": table["learning_rate"]}, tmp_path / "other")
    assert write_plots(comparison, rank_only, tmp_path / "kept")[0].read_bytes() == fresh
