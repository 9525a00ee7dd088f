"""`promote`: a new experiment whose baseline is a trial of another, and that validates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from sweepctl.cli.main import main
from sweepctl.errors import SweepctlError, UsageError
from sweepctl.spec.folder import load_experiment
from sweepctl.spec.model import OWNED_KEYS
from sweepctl.spec.promote import Source, find_trial, promote, render_promoted, run_url
from sweepctl.sweep.expand import expand

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE = "ghcr.io/example/llama-factory-train:0.9.5"
RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """schemas/ beside experiments/ holding the demo and this repo's defaults.yaml."""
    (tmp_path / "schemas").symlink_to(REPO_ROOT / "schemas")
    shutil.copytree(REPO_ROOT / "experiments" / "tiny-lora-demo",
                    tmp_path / "experiments" / "tiny-lora-demo")
    shutil.copy(REPO_ROOT / "experiments" / "defaults.yaml", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def promote_r16(repo: Path, origin: Source | None = None) -> Path:
    source = load_experiment(repo / "experiments" / "tiny-lora-demo")
    trial = find_trial(expand(source, IMAGE), "r16-lr5e-3-a32")
    return promote(repo / "experiments", source, trial, "tiny-lora-next", origin or Source(),
                   schemas_dir=repo / "schemas")


def test_promoted_folder_validates_and_its_baseline_is_the_trial(
        repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = promote_r16(repo_copy)
    assert sorted(p.name for p in folder.iterdir()) == [
        "baseline.yaml", "checklist.yaml", "experiment.yaml", "notes.md", "sweep.yaml"]
    assert main(["validate", "experiments", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checked"] == 2 and report["errors"] == 0, report["findings"]
    # the sweep is a skeleton: the unticked item says so, and the folder does not launch
    assert any("parameter_space_defined" in f["message"] for f in report["findings"]
               if f["path"].startswith("experiments/tiny-lora-next/"))

    source = load_experiment(repo_copy / "experiments" / "tiny-lora-demo")
    promoted = load_experiment(folder)
    trial = find_trial(expand(source, IMAGE), "r16-lr5e-3-a32")
    assert promoted.baseline == dict(trial.config)
    assert (promoted.baseline["lora_rank"], promoted.baseline["lora_alpha"],
            promoted.baseline["learning_rate"]) == (16, 32, 5e-3)
    # trial 0 of the new experiment IS the promoted trial: its finished run is reused
    assert expand(promoted, IMAGE)[0].trial_id == trial.trial_id
    assert (promoted.phase, promoted.objective, promoted.budget, promoted.dataset) == (
        "iteration", source.objective, source.budget, source.dataset)
    assert promoted.mlflow_experiment == source.mlflow_experiment
    assert promoted.hypothesis.startswith("REWRITE BEFORE LAUNCH")
    # the skeleton: half and double the promoted learning rate, one at a time
    assert [t.params for t in expand(promoted, IMAGE)][1:] == [
        {"learning_rate": 2.5e-3}, {"learning_rate": 1e-2}]


def test_notes_link_back_to_the_source_and_its_run(repo_copy: Path) -> None:
    folder = promote_r16(repo_copy, Source(RUN_ID, "3", "https://ml:s3cret@mlflow.example/"))
    notes = (folder / "notes.md").read_text()
    assert ("Promoted from [tiny-lora-demo](../tiny-lora-demo/notes.md), "
            "trial `r16-lr5e-3-a32`") in notes
    assert (f"run `{RUN_ID}` ([MLflow](https://mlflow.example/#/experiments/3/runs/{RUN_ID}))"
            in notes)
    assert "s3cret" not in notes  # never echo a password from the tracking URI
    assert notes.count("<!-- sweepctl:results:begin -->") == 1


@pytest.mark.parametrize(("source", "url"), [
    (Source(RUN_ID, "3", "sqlite:///.sweepctl/mlflow.db"), None),    # no UI to link
    (Source(RUN_ID, "3", "http://mlflow:5000"),
     f"http://mlflow:5000/#/experiments/3/runs/{RUN_ID}"),
    (Source("x)](javascript:alert(1)", "3", "http://mlflow:5000"), None),  # a hostile id
    (Source(RUN_ID, "../1", "http://mlflow:5000"), None),
    (Source(RUN_ID, None, "http://mlflow:5000"), None),
])
def test_run_url(source: Source, url: str | None) -> None:
    assert run_url(source) == url


def test_hostile_run_id_is_not_written(repo_copy: Path) -> None:
    folder = promote_r16(repo_copy, Source("x`](javascript:alert(1))", "3", "http://m:5000"))
    notes = (folder / "notes.md").read_text()
    assert "javascript" not in notes and ", run `" not in notes


def test_owned_keys_are_dropped(repo_copy: Path) -> None:
    source = load_experiment(repo_copy / "experiments" / "tiny-lora-demo")
    trial = expand(source, IMAGE)[1]
    tainted = type(trial)(trial.index, trial.slug, trial.params,
                          {**trial.config, **{k: "x" for k in OWNED_KEYS}}, trial.trial_id,
                          trial.name)
    baseline = yaml.safe_load(render_promoted(source, tainted, "next")["baseline.yaml"])
    assert not set(OWNED_KEYS) & set(baseline) and baseline["lora_rank"] == trial.config[
        "lora_rank"]


def test_unknown_trial_lists_the_choices(repo_copy: Path) -> None:
    source = load_experiment(repo_copy / "experiments" / "tiny-lora-demo")
    with pytest.raises(UsageError, match=r"no trial 'r64'.*baseline, "):
        find_trial(expand(source, IMAGE), "r64")


def test_existing_folder_or_bad_name_is_refused(repo_copy: Path) -> None:
    promote_r16(repo_copy)
    with pytest.raises(SweepctlError, match="already exists"):
        promote_r16(repo_copy)
    source = load_experiment(repo_copy / "experiments" / "tiny-lora-demo")
    with pytest.raises(SweepctlError, match="RFC 1123"):
        promote(repo_copy / "experiments", source, expand(source, IMAGE)[0], "../evil")
    assert not (repo_copy / "evil").exists()


# -- `sweepctl promote` end to end, against a real MLflow server -------------------------

def test_promote_the_best_trial_from_mlflow_and_the_folder_validates(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_trial, make_experiment, result, trials_of

    folder, _ = make_experiment(tmp_path)
    (tmp_path / "schemas").symlink_to(REPO_ROOT / "schemas")
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    run_ids = [log_trial(client, experiment, trial, metrics=result(ev, 100.0))
               for trial, ev in zip(trials, (0.45, 0.39, 0.41), strict=True)]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()

    # a bare name, no --trial: the best (r16-a32, eval_loss 0.39) is promoted
    assert main(["promote", "lora-rank-sweep", "--to", "rank16-next"]) == 0
    out = capsys.readouterr().out
    assert f"promoted r16-a32 of lora-rank-sweep, run {run_ids[1]}" in out
    assert ("created experiments/rank16-next/ (edit sweep.yaml and the hypothesis, then "
            "tick parameter_space_defined)") in out
    new = tmp_path / "experiments" / "rank16-next"
    promoted = load_experiment(new)
    assert promoted.baseline == dict(trials[1].config)
    notes = (new / "notes.md").read_text()
    assert f"run `{run_ids[1]}`" in notes and "(../lora-rank-sweep/notes.md)" in notes
    assert f"{mlflow_server.rstrip('/')}/#/experiments/" in notes

    assert main(["validate", str(new), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == 0, report["findings"]

    # --trial picks another one; the same name again is refused
    assert main(["promote", str(folder), "--trial", "r32-a64", "--to", "rank32-next"]) == 0
    assert load_experiment(tmp_path / "experiments" / "rank32-next").baseline == dict(
        trials[2].config)
    capsys.readouterr()
    assert main(["promote", "lora-rank-sweep", "--to", "rank32-next"]) != 0
    assert "already exists" in capsys.readouterr().err


def test_promote_without_results_is_a_usage_error_and_with_trial_needs_no_mlflow(
        repo_copy: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import free_port

    # nothing listens there: MLflow is unreachable (no retries, so the test is quick)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(["promote", "tiny-lora-demo", "--to", "tiny-next"]) == 2
    assert "no finished trial to promote yet" in capsys.readouterr().err
    assert not (repo_copy / "experiments" / "tiny-next").exists()

    assert main(["promote", "tiny-lora-demo", "--trial", "r16-a32", "--to", "tiny-next"]) == 0
    captured = capsys.readouterr()
    assert "MLflow not read" in captured.err
    assert "created experiments/tiny-next/" in captured.out
    assert "run `" not in (repo_copy / "experiments" / "tiny-next" / "notes.md").read_text()


def test_promote_a_later_round_trial_of_a_tpe_search(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A tpe search's best is often a round-2 trial, which is not in expand's trials (the
    baseline and round 1): promote finds it among the trials proposed so far."""
    import uuid

    from mlflow.tracking import MlflowClient
    from sweepctl.render.trainconfig import trial_tags
    from sweepctl.runindex import RunIndex
    from sweepctl.usecases.adaptive import next_round
    from sweepctl.workspace import Workspace
    from test_adaptive import finished_runs, make_tpe

    name = f"tpe-promote-{uuid.uuid4().hex[:8]}"
    folder = make_tpe(tmp_path, name, target=0.001)
    (tmp_path / "schemas").symlink_to(REPO_ROOT / "schemas")
    workspace = Workspace(env_tracking_uri=mlflow_server)
    resolved = workspace.resolve(workspace.load(folder))
    first = next_round(resolved, RunIndex("x"), {})
    index = RunIndex.from_runs("x", finished_runs(resolved, first.trials, {}),
                               experiment_ids={name: "1"})
    trials = next_round(resolved, index, {}).trials  # the baseline, round 1 and round 2
    later = trials[3]
    assert later.round_number == 2 and later.trial_id not in resolved.trial_ids
    client = MlflowClient(mlflow_server)
    experiment_id = client.create_experiment(name)
    runs = {}
    for i, trial in enumerate(trials):
        run = client.create_run(experiment_id, run_name=trial.name,
                                tags=trial_tags(resolved.experiment, trial, None, None))
        # the round-2 trial is the best
        client.log_metric(run.info.run_id, "eval_loss", 0.3 if trial is later else 4.0 - i / 10)
        client.set_terminated(run.info.run_id, "FINISHED")
        runs[trial.trial_id] = run.info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()  # mlflow prints "View run ..." when the test logs runs

    assert main(["promote", str(folder), "--to", "tpe-next"]) == 0, capsys.readouterr().err
    assert f"promoted {later.slug} of tiny-lora-demo, run {runs[later.trial_id]}" in (
        capsys.readouterr().out)
    promoted = load_experiment(tmp_path / "experiments" / "tpe-next")
    assert promoted.baseline == {k: v for k, v in later.config.items() if k not in OWNED_KEYS}
    assert main(["promote", str(folder), "--trial", later.slug, "--to", "tpe-next2"]) == 0
