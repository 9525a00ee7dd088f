"""Attacks on the PR comment and notes.md (issue 10, findings 4-6), each reproduced end to
end: a real MLflow server, the GitHub stand-in, `sweepctl report` as a user runs it."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from github_standin import REPO, GitHubStandIn
from hypothesis import given
from hypothesis import strategies as st
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow_runs import log_trial, make_experiment, result, trials_of
from pytest_httpserver import HTTPServer
from sweepctl.cli.main import main
from sweepctl.clients.mlflow_store import TAG_EXPERIMENT, TAG_ROLE, TAG_TRIAL, TAG_TRIAL_ID
from sweepctl.clients.notes_file import BEGIN, END
from sweepctl.renderers.escape import md_cell
from sweepctl.renderers.markdown import comment_marker

J = "\u2060"  # the word joiner that breaks mentions, references and autolinks
EVIL_NAME = "[x](https://evil.example/p) ![i](https://evil.example/i.png) <img src=x> @admin #1"
EVIL_NAME_SHOWN = (f"\\[x\\](https:{J}//evil.example/p) !\\[i\\](https:{J}//evil.example/i.png)"
                   f" &lt;img src=x> @{J}admin #{J}1")
EVIL_RANK = "<script>alert(1)</script>|**b** _u_ `c` www.evil.example"
EVIL_RANK_SHOWN = (f"&lt;script>alert(1)&lt;/script>\\|\\*\\*b\\*\\* \\_u\\_ \\`c\\` "
                   f"www{J}.evil.example")


@pytest.fixture
def github(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(httpserver).install()
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_API_URL", standin.url)
    yield standin
    httpserver.clear()


def run_report(uri: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
               *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    capsys.readouterr()
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def forge_run(client: MlflowClient, mlflow_experiment: str, experiment: str) -> str:
    """A FINISHED run outside the sweep, logged by anyone who can write to MLflow, with
    markup in its trial name, its swept param and a tag; it is the best run."""
    eid = client.get_experiment_by_name(mlflow_experiment).experiment_id
    run = client.create_run(eid, tags={TAG_EXPERIMENT: experiment, TAG_TRIAL: EVIL_NAME,
                                       TAG_TRIAL_ID: "f00dfeed0001", TAG_ROLE: "trial",
                                       "note": "<b>@everyone</b>"})
    client.log_batch(run.info.run_id, params=[Param("lora_rank", EVIL_RANK)],
                     metrics=[Metric(k, v, 0, 3) for k, v in result(0.01, 50.0).items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)


def test_a_squatters_marker_comment_is_never_edited(github: GitHubStandIn,
                                                    tmp_path: Path, mlflow_server: str,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    marker = comment_marker("lora-rank-sweep")
    squatted = github.add(7, f"{marker}\n### sweepctl · results: ship it", login="mallory")

    for _ in range(2):
        code, _, err = run_report(mlflow_server, capsys, monkeypatch, str(folder), "--pr", "7")
        assert code == 0, err

    assert github.comments[squatted]["body"] == f"{marker}\n### sweepctl · results: ship it"
    ours = [c for c in github.on(7) if c["user"]["login"] == "github-actions[bot]"]
    assert len(ours) == 1 and ours[0]["body"].startswith(marker)
    assert [m for m, _ in github.writes] == ["POST"]  # the second report: unchanged
    assert all(comment_id != squatted for _, comment_id in github.writes)


def test_the_bot_login_is_configurable(github: GitHubStandIn, tmp_path: Path,
                                       mlflow_server: str, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A GitHub App posts as <slug>[bot]: its comments are the ones to edit, and a comment
    by github-actions[bot] (any workflow's token) is then a stranger's."""
    folder, _ = make_experiment(tmp_path)
    defaults = folder.parent / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace(
        "github:\n", "github:\n  bot_login: sweepctl-results[bot]\n"))
    github.bot_login = "sweepctl-results[bot]"
    marker = comment_marker("lora-rank-sweep")
    other = github.add(7, f"{marker}\nold", login="github-actions[bot]")
    mine = github.add(7, f"{marker}\nold", login="sweepctl-results[bot]")

    code, _, err = run_report(mlflow_server, capsys, monkeypatch, str(folder), "--pr", "7")
    assert code == 0, err
    assert github.writes == [("PATCH", mine)] and github.comments[other]["body"] == f"{marker}\nold"

    monkeypatch.setenv("SWEEPCTL_BOT_LOGIN", "github-actions[bot]")  # the variable wins
    code, _, err = run_report(mlflow_server, capsys, monkeypatch, str(folder), "--pr", "7")
    assert code == 0, err
    assert github.writes[-1] == ("PATCH", other)


def test_a_forged_run_renders_inert_in_the_comment_and_notes(
        github: GitHubStandIn, tmp_path: Path, mlflow_server: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, mlflow_name = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    log_trial(client, experiment, trials[0], metrics=result(0.45, 100.0))
    forged = forge_run(client, mlflow_name, experiment.name)

    code, _, err = run_report(mlflow_server, capsys, monkeypatch, str(folder), "--pr", "7",
                              "--notes")
    assert code == 0, err

    body = github.on(7)[0]["body"]
    notes = (folder / "notes.md").read_text().split(BEGIN)[1].split(END)[0]
    for text in (body, notes):
        assert f"| [{EVIL_NAME_SHOWN}]({mlflow_server}/#/experiments/" in text
        row = next(line for line in text.splitlines() if f"/runs/{forged})" in line)
        assert row.split(" | ")[1].strip() == EVIL_RANK_SHOWN
        assert "](https://evil" not in text and "<img" not in text and "<script" not in text
        assert "@admin" not in text and "@everyone" not in text and "|**" not in text
        # every row of the results table still has the header's number of cells
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("| trial "))
        table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
        assert len(table) == 6  # header, rule, three trials, the forged run
        cells = {len(line.replace("\\|", "").split("|")) for line in table}
        assert len(cells) == 1, table


def test_a_long_value_is_capped(github: GitHubStandIn, tmp_path: Path, mlflow_server: str,
                                capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder, mlflow_name = make_experiment(tmp_path)
    experiment, _ = trials_of(folder)
    client = MlflowClient(mlflow_server)
    log_trial(client, experiment, trials_of(folder)[1][0], status="RUNNING")
    eid = client.get_experiment_by_name(mlflow_name).experiment_id
    run = client.create_run(eid, tags={TAG_EXPERIMENT: experiment.name, TAG_TRIAL: "n" * 5000,
                                       TAG_TRIAL_ID: "f00dfeed0002", TAG_ROLE: "trial"})
    client.set_terminated(run.info.run_id, "FINISHED")

    code, _, err = run_report(mlflow_server, capsys, monkeypatch, str(folder), "--pr", "7")
    assert code == 0, err
    body = github.on(7)[0]["body"]
    assert "n" * 119 + "…" in body and "n" * 120 not in body


def test_a_runs_pr_tag_does_not_move_the_report(
        git_repo: Path, mlflow_server: str, github: GitHubStandIn,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(git_repo)
    subprocess.run(["git", "add", "."], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "Add lora-rank-sweep"], cwd=git_repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=git_repo, check=True,
                         capture_output=True, text=True).stdout.strip()
    github.pulls[sha] = [12]
    experiment, trials = trials_of(folder)
    log_trial(MlflowClient(mlflow_server), experiment, trials[0], metrics=result(0.4, 9.0),
              pr=5)

    code, _, err = run_report(mlflow_server, capsys, monkeypatch, str(folder))

    assert code == 0, err
    assert github.on(5) == [] and len(github.on(12)) == 1
    assert f"{REPO}#12: comment created" in err


def test_the_tracking_uris_credentials_never_appear(
        github: GitHubStandIn, tmp_path: Path, mlflow_server: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    log_trial(MlflowClient(mlflow_server), experiment, trials[0], metrics=result(0.4, 9.0))
    host = urlsplit(mlflow_server).netloc
    with_password = mlflow_server.replace(host, f"alice:s3cr3t-pw@{host}")

    code, out, err = run_report(with_password, capsys, monkeypatch, str(folder), "--pr", "7",
                                "--notes")
    assert code == 0, err
    monkeypatch.delenv("GITHUB_TOKEN")  # the body is printed instead
    code, printed, err2 = run_report(with_password, capsys, monkeypatch, str(folder))
    assert code == 0

    body = github.on(7)[0]["body"]
    notes = (folder / "notes.md").read_text()
    assert f"Runs in MLflow: {mlflow_server} " in notes
    assert f"]({mlflow_server}/#/experiments/" in body
    for text in (body, notes, out, err, printed, err2):
        assert "s3cr3t-pw" not in text and "alice" not in text


def plan_json(tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    capsys.readouterr()
    assert main(["plan", str(folder), "--format", "json", "--offline"]) == 0
    path = tmp_path / "plans" / "lora-rank-sweep.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(capsys.readouterr().out)
    return path


def test_a_forged_plan_is_rendered_by_sweepctl_and_inert(
        github: GitHubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The PR's code writes the artifact: markdown in its values stays text, and the body
    is sweepctl's rendering (the marker, the header), never the PR's own markdown."""
    folder, _ = make_experiment(tmp_path)
    path = plan_json(tmp_path, folder, capsys)
    data = json.loads(path.read_text())
    plan = data["plans"][0]
    plan["trials"][1]["changes"]["lora_rank"] = EVIL_RANK
    plan["image"] = "img` <img src=x> @admin"
    path.write_text(json.dumps(data))

    assert main(["report", "--pr", "9", "--plan-json", str(path)]) == 0, capsys.readouterr().err
    (comment,) = github.on(9)
    assert comment["body"].startswith(comment_marker("lora-rank-sweep") + "\n### sweepctl plan")
    assert f"| {EVIL_RANK_SHOWN} " in comment["body"]
    assert "<img" not in comment["body"] and "@admin" not in comment["body"]


def test_a_forged_plans_notes_cannot_start_a_heading_or_a_list(
        github: GitHubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plan's notes are free text of the artifact and each starts a list item of the
    bot's comment: a leading '#', '-', '+' or '1.' would make a heading or a nested list."""
    folder, _ = make_experiment(tmp_path)
    path = plan_json(tmp_path, folder, capsys)
    data = json.loads(path.read_text())
    data["plans"][0]["search"] = {"trials": 3, "note": "# Approved by the security team"}
    data["plans"][0]["dropped"] = 0
    data["plans"][0]["base"] = {"ref": "main", "note": "- [x] reviewed", "new": 0,
                                "unchanged": 0, "removed": []}
    data["plans"][0]["reuse"] = {"reused": 0, "note": "1. step one"}
    path.write_text(json.dumps(data))

    assert main(["report", "--pr", "9", "--plan-json", str(path)]) == 0, capsys.readouterr().err
    (comment,) = github.on(9)
    lines = comment["body"].splitlines()
    assert "- \\# Approved by the security team" in lines
    assert "- \\- \\[x\\] reviewed" in lines and "- 1\\. step one" in lines


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["plans"][0].update(experiment="../Evil"), "experiment must be like"),
    (lambda d: d["plans"][0]["trials"][0].update(name="a|b"), "name must be like"),
    (lambda d: d["plans"][0]["trials"][0].update(trial_id="<b>"), "trial_id must be like"),
    (lambda d: d["plans"][0]["budget"].update(gpu_hours="lots"), "gpu_hours must be a"),
    (lambda d: d["plans"].append(d["plans"][0]), "exactly one plan"),
    (lambda d: d.update(plans="<!-- sweepctl:report:x -->"), "exactly one plan"),
    # JSON's non-standard Infinity/NaN (Python's json reads them): a value no plan holds
    (lambda d: d["plans"][0]["trials"][1]["changes"].update(lora_rank=float("inf")),
     "not a sweepctl plan"),
    (lambda d: d["plans"][0]["baseline"].update(lora_rank=float("-inf")), "not a sweepctl plan"),
    (lambda d: d["plans"][0]["objective"].update(target=float("nan")), "not a sweepctl plan"),
])
def test_a_plan_json_that_is_not_a_plan_is_refused(
        github: GitHubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        change: object, message: str) -> None:
    folder, _ = make_experiment(tmp_path)
    path = plan_json(tmp_path, folder, capsys)
    data = json.loads(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))

    assert main(["report", "--pr", "9", "--plan-json", str(path)]) == 1
    assert message in capsys.readouterr().err
    assert github.writes == []


@pytest.mark.parametrize("content", [b"<!-- sweepctl:report:demo -->\n# markdown\n",
                                     b"[" * 200_000 + b"]" * 200_000, b"\xff\xfe{}",
                                     b" " * (4 * 1024 * 1024 + 1)])
def test_markdown_deep_nesting_and_huge_files_are_no_plans(
        github: GitHubStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        content: bytes) -> None:
    path = tmp_path / "demo.json"
    path.write_bytes(content)
    assert main(["report", "--pr", "9", "--plan-json", str(path)]) == 1
    assert "not a sweepctl plan" in capsys.readouterr().err
    assert github.writes == []


MARKUP = st.text(st.sampled_from(list("[]()!<>@#|*_`~$\\&:/.wgh-+1a )\n\u202e")),
                 max_size=60)


@given(st.one_of(MARKUP, st.text(max_size=60)))
def test_escaped_text_has_no_active_markup(text: str) -> None:
    shown = md_cell(text)
    unescaped = shown.replace("\\\\", "")
    assert "\n" not in shown and "\u202e" not in shown and not shown.lstrip().startswith(">")
    assert re.match(r"[ \t]*(#|[-+]([ \t]|$)|\d+[.)]([ \t]|$))", shown) is None  # no block
    assert re.search(r"<[A-Za-z/!?]|<$|&[A-Za-z#]", re.sub(r"&(lt|gt|amp);", "", shown)) is None
    for char in "[]|*`~$":
        assert char not in unescaped.replace("\\" + char, "")
    assert "://" not in shown and "www." not in shown.lower()
    assert not any(shown[i] in "@#" and shown[i + 1:i + 2].isalnum()
                   for i in range(len(shown)))


def test_plain_names_and_values_are_shown_as_they_are() -> None:
    for text in ("lora-rank-sweep", "r16-a32", "eval_loss", "2e-4", "0.05", "lr2e-4-s43",
                 "target met: best eval_loss 0.385 (r32-a64) < 0.4", "a > b"):
        assert md_cell(text) == text


def test_report_refuses_a_notes_or_plot_symlink_and_leaves_the_target(
        github: GitHubStandIn, tmp_path: Path, mlflow_server: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder check (validate's [symlink] rule, run by every command) refuses first;
    the writers refuse again on their own (tests/test_notes.py)."""
    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    for trial, loss in zip(trials, (0.45, 0.40, 0.38), strict=True):
        log_trial(client, experiment, trial, metrics=result(loss, 100.0))
    outside = tmp_path / "outside.txt"
    outside.write_text("token=hunter2\n")
    notes = folder / "notes.md"
    original = notes.read_bytes()
    for link in (notes, folder / "plots" / "lora_rank.png"):
        if link == notes:
            notes.unlink()
        else:
            notes.unlink()
            notes.write_bytes(original)
            link.parent.mkdir()
        link.symlink_to(outside)
        code, _, err = run_report(mlflow_server, capsys, monkeypatch, str(folder), "--notes",
                                  "--pr", "7")
        assert code == 1 and "sweepctl: error:" in err
        assert outside.read_text() == "token=hunter2\n" and github.writes == []
    assert notes.read_bytes() == original


def test_the_plan_json_renders_exactly_as_plan_markdown_with_base_and_reuse(
        git_repo: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What pr-comment.yml posts from the JSON is what `plan --format markdown` shows: the
    vs-base column, the removed trials and the MLflow reuse column survive the round trip."""
    from sweepctl.renderers.plan import plan_from_data, render_markdown

    folder, _ = make_experiment(git_repo)
    subprocess.run(["git", "add", "."], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "Add lora-rank-sweep"], cwd=git_repo, check=True)
    experiment, trials = trials_of(folder)
    log_trial(MlflowClient(mlflow_server), experiment, trials[1], metrics=result(0.4, 9.0))
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("[8, 16, 32]", "[8, 16, 64]"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    outputs = []
    for output_format in ("json", "markdown"):
        capsys.readouterr()
        main(["plan", str(folder), "--base", "HEAD", "--format", output_format])
        outputs.append(capsys.readouterr().out)
    data = json.loads(outputs[0])["plans"][0]
    assert data["base"]["removed"] and data["reuse"]["reused"] == 1
    assert render_markdown(plan_from_data(data)) == outputs[1]


def test_an_unreachable_tracking_uri_is_reported_without_its_userinfo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import free_port

    folder, _ = make_experiment(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    port = free_port()
    code, out, err = run_report(f"http://alice:s3cr3t-pw@127.0.0.1:{port}", capsys,
                                monkeypatch, str(folder))
    assert code == 1 and f"127.0.0.1:{port}" in err
    assert "s3cr3t-pw" not in out + err and "alice" not in out + err
