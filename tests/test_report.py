"""`sweepctl report` end to end: a real MLflow server, the GitHub stand-in, real git."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from github_standin import REPO, GitHubStandIn
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow_runs import log_trial, make_experiment, result, trials_of
from pytest_httpserver import HTTPServer
from sweepctl.cli.main import main
from sweepctl.clients.notes_file import BEGIN, END
from sweepctl.renderers.markdown import comment_marker


@pytest.fixture
def github(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(httpserver).install()
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_API_URL", standin.url)
    yield standin
    httpserver.clear()


def report(folder: Path, uri: str, capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    capsys.readouterr()
    code = main(["report", str(folder), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def finish(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    client.log_batch(run_id, metrics=[Metric(k, v, 0, 3) for k, v in metrics.items()])
    client.set_terminated(run_id, "FINISHED")


def test_one_comment_moves_through_the_states(
        tmp_path: Path, mlflow_server: str, github: GitHubStandIn,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    notes = folder / "notes.md"
    before, after = notes.read_bytes().split(BEGIN.encode())[0], \
        notes.read_bytes().split(END.encode())[1]
    github.add(7, "a human's review comment")
    client = MlflowClient(mlflow_server)
    states = []

    def step() -> None:
        code, _, err = report(folder, mlflow_server, capsys, monkeypatch, "--pr", "7", "--notes")
        assert code == 0, err
        ours = [c for c in github.on(7) if c["body"].startswith(comment_marker(experiment.name))]
        assert len(ours) == 1
        states.append(ours[0]["body"].splitlines()[2])

    step()
    run_ids = [log_trial(client, experiment, t, status="RUNNING") for t in trials]
    step()
    for run_id, values in zip(run_ids, [(0.45, 100.0), (0.39, 150.0), (0.385, 300.0)],
                              strict=True):
        finish(client, run_id, result(*values))
        step()

    assert states == [
        "### sweepctl · `lora-rank-sweep` · planned",
        "### sweepctl · `lora-rank-sweep` · launched",
        "### sweepctl · `lora-rank-sweep` · running (1 of 3 finished)",
        "### sweepctl · `lora-rank-sweep` · running (2 of 3 finished)",
        "### sweepctl · `lora-rank-sweep` · results",
    ]
    assert [m for m, _ in github.writes] == ["POST", "PATCH", "PATCH", "PATCH", "PATCH"]
    final = next(c for c in github.on(7) if c["body"].startswith("<!-- sweepctl:report"))
    assert "target met: best eval_loss 0.385 (r32-a64)" in final["body"]
    assert f"{mlflow_server}/#/experiments/" in final["body"]  # trial names link to runs
    assert next(c for c in github.on(7) if c["body"] == "a human's review comment")
    text = notes.read_bytes()
    assert text.startswith(before) and text.endswith(after)
    block = text.decode().split(BEGIN)[1].split(END)[0]
    assert "**Sweet spot:** r16-a32" in block and "![eval_loss vs lora_rank](plots/lora_rank.png)" \
        in block
    assert (folder / "plots" / "lora_rank.png").is_file()


def test_the_pr_is_found_from_the_commit_that_added_the_experiment(
        git_repo: Path, mlflow_server: str, github: GitHubStandIn,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(git_repo)
    subprocess.run(["git", "add", "."], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "Add lora-rank-sweep"], cwd=git_repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=git_repo, check=True,
                         capture_output=True, text=True).stdout.strip()
    (folder / "notes.md").write_text("later edit\n")
    subprocess.run(["git", "commit", "-qam", "notes"], cwd=git_repo, check=True)
    github.pulls[sha] = [12]

    code, _, err = report(folder, mlflow_server, capsys, monkeypatch)

    assert code == 0, err
    assert len(github.on(12)) == 1 and f"{REPO}#12: comment created" in err


def test_mlflow_down_writes_and_posts_nothing(
        tmp_path: Path, github: GitHubStandIn, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    notes = folder / "notes.md"
    original = notes.read_bytes()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")

    code, out, err = report(folder, f"http://127.0.0.1:{free_port()}", capsys, monkeypatch,
                            "--pr", "7", "--notes")

    assert code == 1 and out == ""
    assert err.startswith("sweepctl: error: mlflow: ") and len(err.strip().splitlines()) == 1
    assert notes.read_bytes() == original
    assert github.comments == {} and github.writes == []
    assert not (folder / "plots").exists()


def test_malformed_markers_stop_the_report(
        tmp_path: Path, mlflow_server: str, github: GitHubStandIn,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    notes = folder / "notes.md"
    notes.write_text(f"# notes\n{END}\n{BEGIN}\n")
    code, _, err = report(folder, mlflow_server, capsys, monkeypatch, "--pr", "7", "--notes")
    assert code == 1
    assert f"{notes}:2:1: error: {END} comes before {BEGIN} [notes-markers]" in err
    assert github.writes == [] and notes.read_text() == f"# notes\n{END}\n{BEGIN}\n"


def test_without_github_the_body_is_printed(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    code, out, err = report(folder, mlflow_server, capsys, monkeypatch)
    assert code == 0
    assert out.startswith(comment_marker("lora-rank-sweep")) and "planned" in out
    assert "comment not posted" in err and "comment not posted" not in out
    # with --notes too (issue 13): `report --notes > body.md` captures the body, only it
    code, notes_out, err = report(folder, mlflow_server, capsys, monkeypatch, "--notes")
    assert code == 0 and notes_out == out and "notes.md: updated" in err
    code, _, err = report(folder, mlflow_server, capsys, monkeypatch, "--pr", "3")
    assert code == 2 and "GITHUB_TOKEN" in err


def test_plan_json_then_report_edit_the_same_comment(
        tmp_path: Path, mlflow_server: str, github: GitHubStandIn,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """pr-comment.yml renders `plan --format json` with --plan-json; a later report edits
    that same comment (one marker for both), and the body is what `plan --format
    markdown` prints."""
    folder, _ = make_experiment(tmp_path)
    experiment, _ = trials_of(folder)
    plan_json = tmp_path / "plan.json"
    capsys.readouterr()
    assert main(["plan", str(folder), "--format", "json", "--offline"]) == 0
    plan_json.write_text(capsys.readouterr().out)
    assert main(["plan", str(folder), "--format", "markdown", "--offline"]) == 0
    markdown = capsys.readouterr().out
    assert main(["report", "--pr", "9", "--plan-json", str(plan_json)]) == 0
    ours = [c for c in github.on(9) if c["body"].startswith(comment_marker(experiment.name))]
    assert len(ours) == 1 and ours[0]["body"] == markdown

    code, _, err = report(folder, mlflow_server, capsys, monkeypatch, "--pr", "9")
    assert code == 0, err
    ours = [c for c in github.on(9) if c["body"].startswith(comment_marker(experiment.name))]
    assert len(ours) == 1 and "planned" in ours[0]["body"]
    assert [m for m, _ in github.writes] == ["POST", "PATCH"]


def test_plan_json_needs_the_pr(tmp_path: Path, github: GitHubStandIn,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plan.json"
    path.write_text("{}")
    assert main(["report", "--plan-json", str(path)]) == 2
    assert "--plan-json needs --pr N" in capsys.readouterr().err
    assert github.writes == []


def test_a_shallow_clone_never_guesses_the_pr(
        git_repo: Path, tmp_path: Path, mlflow_server: str, github: GitHubStandIn,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With fetch-depth 1 the only commit seems to add every file: its PR (another one)
    must not get the comment."""
    folder, _ = make_experiment(git_repo)
    subprocess.run(["git", "add", "."], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "Add lora-rank-sweep (#3)"], cwd=git_repo, check=True)
    (git_repo / "unrelated.txt").write_text("x\n")
    subprocess.run(["git", "add", "."], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "Unrelated (#4)"], cwd=git_repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=git_repo, check=True,
                          capture_output=True, text=True).stdout.strip()
    github.pulls[head] = [4]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{git_repo}", str(clone)],
                   check=True, capture_output=True)

    code, _, err = report(clone / folder.relative_to(git_repo), mlflow_server, capsys,
                          monkeypatch)

    assert code == 1 and "this clone is shallow" in err and "--pr N" in err
    assert github.comments == {} and github.writes == []


def test_scheduled_notes_for_an_experiment_merged_without_a_pr(
        git_repo: Path, mlflow_server: str, github: GitHubStandIn,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """report.yml runs `report --notes` for every experiment: one pushed straight to main
    has no PR; its notes.md is still written and that is not a failure. Without --notes
    the missing PR stays an error."""
    folder, _ = make_experiment(git_repo)
    subprocess.run(["git", "add", "."], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "Add lora-rank-sweep"], cwd=git_repo, check=True)

    code, _, err = report(folder, mlflow_server, capsys, monkeypatch, "--notes")
    assert code == 0, err
    assert "comment not posted: github: no pull request contains commit" in err
    assert "sweepctl:results:begin" in (folder / "notes.md").read_text()
    assert github.writes == []

    code, _, err = report(folder, mlflow_server, capsys, monkeypatch)
    assert code == 1 and "no pull request contains commit" in err


def test_a_sweep_stopped_by_failures_does_not_claim_to_be_running(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    finish(client, log_trial(client, experiment, trials[0], status="RUNNING"),
           result(0.45, 100.0))
    log_trial(client, experiment, trials[1], status="FAILED")   # the third never started

    code, out, err = report(folder, mlflow_server, capsys, monkeypatch)
    assert code == 0, err
    assert "· stopped (1 of 3 finished, 1 failed)" in out
    assert "running (" not in out
