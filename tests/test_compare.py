"""`sweepctl compare` against a real MLflow server, with runs logged as the runner logs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow_runs import log_trial, make_experiment, result, trials_of
from sweepctl.cli.main import main
from sweepctl.clients import mlflow_store
from sweepctl.results.compare import build_comparison
from sweepctl.spec.model import Objective

FOUR_TRIALS = "strategy: grid\nparameters:\n  lora_rank: [16, 32, 64]\nderived:\n" \
              "  lora_alpha: 2 * lora_rank\nreplicates: 1\nmax_parallel: 3\n"


def compare(folder: Path, uri: str, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    capsys.readouterr()  # mlflow prints "View run ..." when the test logs runs
    code = main(["compare", str(folder), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_deltas_best_sweet_spot_and_verdict(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    for trial, (ev, rt) in zip(trials, [(0.45, 100.0), (0.39, 150.0), (0.385, 300.0)],
                               strict=True):
        log_trial(client, experiment, trial, metrics=result(ev, rt, loss=ev - 0.1))

    code, out, err = compare(folder, mlflow_server, capsys, monkeypatch)

    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| trial"))
    # only the parameters that vary, not the ~20 fixed keys of the baseline
    assert "lora_rank" in header and "lora_alpha" in header and "learning_rate" not in header
    r16 = next(line for line in lines if line.startswith("| r16-a32"))
    assert "| 0.39 " in r16 and "-13.3%" in r16 and "+50.0%" in r16 and "sweet spot" in r16
    r32 = next(line for line in lines if line.startswith("| r32-a64"))
    assert "best" in r32 and "+200.0%" in r32
    baseline = next(line for line in lines if line.startswith("| baseline"))
    assert "| 0.35 " in baseline  # final train loss = the last step's `loss`
    assert "target met: best eval_loss 0.385 (r32-a64) < 0.4" in out
    assert "within 2% of the best" in out
    assert "**Sweet spot:** r16-a32" in out

    code, out, _ = compare(folder, mlflow_server, capsys, monkeypatch, "--tolerance", "0")
    assert code == 0 and "**Sweet spot:** r32-a64" in out

    code, out, _ = compare(folder, mlflow_server, capsys, monkeypatch, "--format", "json")
    data = json.loads(out)
    assert (data["best"], data["sweet_spot"], data["verdict"]) == ("r32-a64", "r16-a32", "met")
    assert data["varied_parameters"] == ["lora_rank", "lora_alpha"]
    assert [row["trial"] for row in data["rows"]] == ["baseline", "r16-a32", "r32-a64"]
    assert data["rows"][1]["delta_runtime_pct"] == pytest.approx(50.0)

    code, out, _ = compare(folder, mlflow_server, capsys, monkeypatch, "--format", "csv")
    assert out.splitlines()[0].startswith(
        "trial,index,lora_rank,lora_alpha,status,replicates,finished,eval_loss,")
    assert len(out.splitlines()) == 4


def test_failed_running_and_missing_trials_are_shown(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path, FOUR_TRIALS)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    log_trial(client, experiment, trials[0], metrics=result(0.45, 100.0))
    log_trial(client, experiment, trials[1], status="FAILED", metrics={"loss": 2.0})
    log_trial(client, experiment, trials[2], status="RUNNING", metrics={"loss": 1.0})
    # trials[3] never started

    code, out, _ = compare(folder, mlflow_server, capsys, monkeypatch, "--format", "json")

    assert code == 0
    data = json.loads(out)
    assert [(r["trial"], r["status"]) for r in data["rows"]] == [
        ("baseline", "finished"), ("r16-a32", "failed"), ("r32-a64", "running"),
        ("r64-a128", "missing")]
    assert data["counts"] == {"expected": 4, "finished": 1, "failed": 1, "cancelled": 0,
                              "running": 1, "missing": 1, "outside_sweep": 0}
    assert data["verdict"] == "not_met"
    assert "1 of 4 trials finished, may still change" in data["verdict_text"]
    code, out, _ = compare(folder, mlflow_server, capsys, monkeypatch)
    assert "1 finished, 1 failed, 1 running, 1 not started, of 4" in out


def test_replicates_fold_into_mean_and_std(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = "strategy: grid\nparameters:\n  lora_rank: [16]\nreplicates: 3\nmax_parallel: 3\n"
    folder, _ = make_experiment(tmp_path, sweep)
    experiment, trials = trials_of(folder)
    assert len(trials) == 6
    client = MlflowClient(mlflow_server)
    values = iter([0.50, 0.52, 0.54, 0.40, 0.41, 0.42])
    for trial in trials:
        log_trial(client, experiment, trial, metrics=result(next(values), 100.0))

    code, out, _ = compare(folder, mlflow_server, capsys, monkeypatch, "--format", "json")
    assert code == 0

    data = json.loads(out)
    assert data["varied_parameters"] == ["lora_rank"]  # seed is what a replicate changes
    baseline, r16 = data["rows"]
    assert baseline["eval_loss"] == pytest.approx(0.52)
    assert baseline["eval_loss_std"] == pytest.approx(0.02)
    assert (r16["replicates"], r16["finished"]) == (3, 3)
    assert r16["eval_loss"] == pytest.approx(0.41)
    _, out, _ = compare(folder, mlflow_server, capsys, monkeypatch)
    assert "0.41 ± 0.01 (n=3)" in out


def test_metric_override_and_outside_runs(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    for trial, loss in zip(trials, [0.9, 0.7, 0.8], strict=True):
        log_trial(client, experiment, trial, metrics=result(0.5, 100.0, loss=loss))
    # a run of an earlier version of the sweep: shown, never dropped, never the best
    old = trials[1].__class__(index=9, slug="r4", params={"lora_rank": 4},
                              config={**trials[0].config, "lora_rank": 4},
                              trial_id="0ldtrial00", name="lora-rank-sweep-r4-0ldtrial00")
    log_trial(client, experiment, old, metrics=result(0.1, 10.0, loss=0.1))

    _, out, _ = compare(folder, mlflow_server, capsys, monkeypatch, "--metric", "train_loss",
                        "--format", "json")

    data = json.loads(out)
    assert data["metric"] == "train_loss" and data["target"] is None
    assert data["best"] == "r16-a32" and data["verdict"] == "no_target"
    outside = data["rows"][-1]
    assert (outside["trial"], outside["in_sweep"]) == ("lora-rank-sweep-r4-0ldtrial00", False)


def test_pages_through_every_run(tmp_path: Path, mlflow_server: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    for trial in trials:
        for attempt in range(3):  # retries of the same trial: the newest finished one counts
            log_trial(client, experiment, trial, metrics=result(0.4 + attempt / 100, 100.0),
                      start=1_000 + attempt)
    monkeypatch.setattr(mlflow_store, "PAGE_SIZE", 2)
    runs = mlflow_store.trial_runs(mlflow_server, experiment.mlflow_experiment, experiment.name)
    assert len(runs) == 9
    comparison = build_comparison(experiment.name, trials, runs, experiment.objective)
    assert [row.objective for row in comparison.rows] == pytest.approx([0.42, 0.42, 0.42])


def test_hand_built_trials_without_baseline_result() -> None:
    from sweepctl.clients.mlflow_store import RunRecord
    from sweepctl.sweep.trial import Trial

    base = {"lora_rank": 8, "learning_rate": 1e-4}
    trials = [Trial(0, "baseline", {}, base, "aaa", "x-baseline-aaa"),
              Trial(1, "r16", {"lora_rank": 16}, {**base, "lora_rank": 16}, "bbb", "x-r16-bbb")]
    runs = [RunRecord("run-b", "FINISHED", "bbb", "x-r16-bbb",
                      metrics={"eval_loss": 0.3, "train_runtime": 5.0})]
    comparison = build_comparison("x", trials, runs, Objective("eval_loss", "minimize", 0.4))
    assert comparison.varied == ("lora_rank",)
    assert comparison.rows[0].status == "missing"
    assert comparison.rows[1].delta_objective_pct is None  # no baseline result to compare to
    assert comparison.best is comparison.rows[1] and comparison.verdict == "met"


def test_mlflow_down_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import free_port

    folder, _ = make_experiment(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    code, out, err = compare(folder, f"http://127.0.0.1:{free_port()}", capsys, monkeypatch)
    assert code == 1 and out == ""
    assert err.startswith("sweepctl: error: mlflow: cannot read experiments at http://127.0.0.1")
    assert len(err.strip().splitlines()) == 1


def test_a_nan_objective_is_never_the_best_and_json_stays_valid() -> None:
    """A diverged trial logs eval_loss = NaN; it must not win, poison the deltas, or make
    `--format json` emit the non-JSON token NaN."""
    from sweepctl.clients.mlflow_store import RunRecord
    from sweepctl.renderers.comparison import render_json, render_markdown
    from sweepctl.sweep.trial import Trial

    base = {"lora_rank": 8}
    trials = [Trial(0, "baseline", {}, base, "aaa", "x-baseline-aaa"),
              Trial(1, "r16", {"lora_rank": 16}, {**base, "lora_rank": 16}, "bbb", "x-r16-bbb"),
              Trial(2, "r32", {"lora_rank": 32}, {**base, "lora_rank": 32}, "ccc", "x-r32-ccc")]
    nan = float("nan")
    runs = [RunRecord("run-a", "FINISHED", "aaa", None,
                      metrics={"eval_loss": 0.5, "train_runtime": 10.0}),
            RunRecord("run-b", "FINISHED", "bbb", None,
                      metrics={"eval_loss": nan, "train_runtime": 1.0, "loss": nan}),
            RunRecord("run-c", "FINISHED", "ccc", None,
                      metrics={"eval_loss": 0.45, "train_runtime": 20.0})]
    for order in (runs, runs[::-1]):
        comparison = build_comparison("x", trials, order, Objective("eval_loss", "minimize", 0.4))
        assert comparison.best is not None and comparison.best.label == "r32"
        assert comparison.sweet_spot is comparison.best
        assert comparison.verdict_text.startswith("target not met: best eval_loss 0.45 (r32)")
        diverged = comparison.rows[1]
        assert diverged.objective is None and diverged.delta_objective_pct is None
        assert diverged.status == "finished (eval_loss = nan)"
        data = json.loads(render_json(comparison),
                          parse_constant=lambda token: pytest.fail(f"{token} in JSON"))
        assert data["rows"][1]["eval_loss"] is None and data["rows"][1]["train_loss"] is None
        assert "| r16 " in render_markdown(comparison)


def test_an_unusable_tracking_uri_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped MLFLOW_TRACKING_URI is bad input: not an internal error (exit 3)."""
    folder, _ = make_experiment(tmp_path)
    code, out, err = compare(folder, "bogus://nowhere", capsys, monkeypatch)
    assert (code, out) == (1, "")
    assert err.startswith("sweepctl: error: mlflow: cannot open the tracking store at "
                          "bogus://nowhere: ")
    assert len(err.strip().splitlines()) == 1


def test_the_adapter_of_the_best_and_the_sweet_spot_is_shown_as_text(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    ids = [log_trial(client, experiment, trial, metrics=result(ev, rt))
           for trial, (ev, rt) in zip(trials, [(0.45, 100.0), (0.39, 150.0), (0.385, 300.0)],
                                      strict=True)]
    # the runner's tag on the best; the sweet spot has only the callback's output_dir param
    client.set_tag(ids[2], "sweepctl.output_dir", "/storage/runs/r32 `x` [a](http://e) <b>")
    client.log_param(ids[1], "output_dir", "/storage/runs/r16")

    code, out, err = compare(folder, mlflow_server, capsys, monkeypatch)

    assert code == 0, err
    assert "- **Adapter of r32-a64:** `` /storage/runs/r32 `x` [a](http://e) <b> ``" in out
    assert "- **Adapter of r16-a32:** ` /storage/runs/r16 `" in out
    assert "Adapter of baseline" not in out
    code, out, _ = compare(folder, mlflow_server, capsys, monkeypatch, "--format", "json")
    assert [row["adapter"] for row in json.loads(out)["rows"]] == [
        None, "/storage/runs/r16", "/storage/runs/r32 `x` [a](http://e) <b>"]


def test_several_experiments_make_one_table_with_the_experiment_as_a_column(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ranks, _ = make_experiment(tmp_path)
    rates, _ = make_experiment(tmp_path, source="learning-rate-ofat")
    client = MlflowClient(mlflow_server)
    for folder, loss in ((ranks, 0.45), (rates, 0.5)):
        experiment, trials = trials_of(folder)
        for offset, trial in enumerate(trials):
            log_trial(client, experiment, trial, metrics=result(loss - offset / 100, 100.0))
    monkeypatch.chdir(tmp_path)

    code, out, err = compare(Path("lora-rank-sweep"), mlflow_server, capsys, monkeypatch,
                             "learning-rate-ofat")

    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| experiment"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:4] == ["experiment", "trial", "lora_rank", "lora_alpha"]
    assert "learning_rate" in cells and "metric" in cells and "value" in cells
    rows = [line for line in lines if line.startswith("| lora-rank-sweep ")
            or line.startswith("| learning-rate-ofat ")]
    _, rank_trials = trials_of(ranks)
    _, rate_trials = trials_of(rates)
    assert len(rows) == len(rank_trials) + len(rate_trials)
    assert "- **lora-rank-sweep:** no target set" not in out
    assert "- **lora-rank-sweep:** target" in out and "- **learning-rate-ofat:**" in out

    code, out, _ = compare(Path("lora-rank-sweep"), mlflow_server, capsys, monkeypatch,
                           "learning-rate-ofat", "--format", "json")
    data = json.loads(out)
    assert data["experiments"] == ["lora-rank-sweep", "learning-rate-ofat"]
    assert {row["experiment"] for row in data["rows"]} == set(data["experiments"])


def test_several_experiments_escape_what_mlflow_says(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The table of several experiments is markdown too (pasted into a PR): a run outside
    the sweep, logged by anyone who can write to MLflow, shows its name and params inert."""
    from mlflow.entities import Metric, Param

    ranks, _ = make_experiment(tmp_path)
    make_experiment(tmp_path, source="learning-rate-ofat")
    experiment, trials = trials_of(ranks)
    client = MlflowClient(mlflow_server)
    log_trial(client, experiment, trials[0], metrics=result(0.45, 100.0))
    eid = client.get_experiment_by_name(experiment.mlflow_experiment).experiment_id
    run = client.create_run(eid, tags={
        mlflow_store.TAG_EXPERIMENT: experiment.name, mlflow_store.TAG_ROLE: "trial",
        mlflow_store.TAG_TRIAL: "[x](https://evil.example) <img src=x> @admin",
        mlflow_store.TAG_TRIAL_ID: "f00dfeed0001"})
    client.log_batch(run.info.run_id, params=[Param("lora_rank", "**b** <b>hi</b>")],
                     metrics=[Metric(k, v, 0, 3) for k, v in result(0.01, 5.0).items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    monkeypatch.chdir(tmp_path)

    code, out, err = compare(Path("lora-rank-sweep"), mlflow_server, capsys, monkeypatch,
                             "learning-rate-ofat")

    assert code == 0, err
    assert "](https://" not in out and "<img" not in out and "<b>" not in out
    assert "@admin" not in out and "**b**" not in out
    assert "\\[x\\]" in out and "&lt;img src=x>" in out


@pytest.mark.parametrize(("uri", "local"), [
    ("sqlite:////repo/.sweepctl/mlflow.db", True), ("file:///tmp/mlruns", True),
    ("/tmp/mlruns", True), ("http://mlflow.mlflow.svc:5000", False),
    ("https://mlflow.example.com", False), ("databricks", False)])
def test_only_a_store_on_this_machine_makes_overlapping_runs_contend(uri: str,
                                                                     local: bool) -> None:
    from sweepctl.usecases.compare import is_local_store

    # the scheduled report runs in CI with no cluster: a shared server's runs are pods
    assert is_local_store(uri) is local
