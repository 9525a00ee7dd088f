"""`sweepctl plan` against a real git history and a real MLflow server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from sweepctl.cli.main import main
from sweepctl.clients.mlflow_store import TAG_EXPERIMENT, TAG_ROLE, TAG_TRIAL_ID
from sweepctl.renderers.plan import marker, render_markdown
from sweepctl.usecases.plan import build_plan

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "experiments" / "lora-rank-sweep"


def commit(repo: Path, message: str) -> str:
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", message], check=True)
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def set_ranks(folder: Path, ranks: str) -> None:
    sweep = folder / "sweep.yaml"
    text = sweep.read_text()
    start = text.index("lora_rank: [")
    end = text.index("]", start) + 1
    sweep.write_text(text[:start] + f"lora_rank: [{ranks}]" + text[end:])


@pytest.fixture
def experiment_repo(git_repo: Path) -> Path:
    (git_repo / "experiments").mkdir()
    shutil.copy(REPO_ROOT / "experiments" / "defaults.yaml", git_repo / "experiments")
    (git_repo / "README.md").write_text("experiments\n")
    commit(git_repo, "empty")
    folder = git_repo / "experiments" / "lora-rank-sweep"
    shutil.copytree(EXAMPLE, folder)
    set_ranks(folder, "8, 16, 32")
    commit(git_repo, "propose lora-rank-sweep")
    return folder


def test_plan_shows_trials_and_budget(experiment_repo: Path) -> None:
    plan = build_plan(experiment_repo)
    assert [t.trial.slug for t in plan.trials] == ["baseline", "r16-a32", "r32-a64"]
    assert plan.changed_keys == ["lora_rank", "lora_alpha"]
    assert plan.gpu_hours == 9 and plan.ok and plan.dropped == 1  # r8 is the baseline


def test_plan_against_a_scripted_history(experiment_repo: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    repo = experiment_repo.parent.parent
    first = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                           capture_output=True, text=True).stdout.strip()
    set_ranks(experiment_repo, "8, 32, 64")        # r16 removed, r64 added
    commit(repo, "swap r16 for r64")

    plan = build_plan(experiment_repo, base=first)
    assert {t.trial.slug: t.change for t in plan.trials} == {
        "baseline": "unchanged", "r32-a64": "unchanged", "r64-a128": "new"}
    assert [t.slug for t in plan.removed] == ["r16-a32"]
    assert main(["plan", str(experiment_repo), "--base", first, "--format", "markdown",
                 "--offline"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(marker("lora-rank-sweep") + "\n")
    assert f"- vs {first}: 1 new, 2 unchanged, 1 removed" in out
    assert "| lora_rank" in out and "- `lora-rank-sweep-r16-a32-" in out

    # an image change is new work for every trial, and the plan says so
    defaults = repo / "experiments" / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("train:0.9.5", "train:0.9.6"))
    plan = build_plan(experiment_repo, base="HEAD")
    assert {t.change for t in plan.trials} == {"new"} and len(plan.removed) == 3

    # before the experiment existed, everything is new
    plan = build_plan(experiment_repo, base="HEAD~2")
    assert plan.base_note == "not in HEAD~2: every trial is new"
    assert {t.change for t in plan.trials} == {"new"}


def test_unknown_ref_is_one_line(experiment_repo: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(experiment_repo), "--base", "no-such-ref", "--offline"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "sweepctl: error: git: unknown revision 'no-such-ref'"


def test_over_budget_is_an_error_but_still_a_plan(experiment_repo: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    experiment = experiment_repo / "experiment.yaml"
    experiment.write_text(experiment.read_text().replace("gpu_hours: 40", "gpu_hours: 6"))
    assert main(["plan", str(experiment_repo), "--format", "json", "--offline"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    (plan,) = data["plans"]
    assert plan["over_budget"] is True and plan["gpu_hours"] == 9 and plan["count"] == 3
    assert plan["trials"][1]["changes"] == {"lora_rank": 16, "lora_alpha": 32}
    assert main(["plan", str(experiment_repo), "--format", "markdown", "--offline"]) == 1
    assert "> OVER BUDGET: 9 GPU-hours exceed budget.gpu_hours 6" in capsys.readouterr().out


def test_hostile_values_stay_text_in_markdown(experiment_repo: Path) -> None:
    sweep = experiment_repo / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace(
        "derived:", 'lora_target: ["<img src=x onerror=alert(1)>|x"]\nderived:'))
    text = sweep.read_text()
    text = text.replace("parameters:\n  lora_rank: [8, 16, 32]\nlora_target:",
                        "parameters:\n  lora_rank: [8, 16, 32]\n  lora_target:")
    sweep.write_text(text)
    body = render_markdown(build_plan(experiment_repo))
    assert "<img" not in body and "&lt;img src=x onerror=alert(1)>\\|x" in body


def test_plan_reuses_finished_runs(experiment_repo: Path, mlflow_server: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    plan = build_plan(experiment_repo)
    ids = [t.trial.trial_id for t in plan.trials]
    client = MlflowClient(tracking_uri=mlflow_server)
    name = "plan-reuse-test"
    experiment_id = client.create_experiment(name)
    runs = {}
    for trial_id, status in ((ids[0], "FINISHED"), (ids[1], "FAILED")):
        run = client.create_run(experiment_id, tags={
            TAG_ROLE: "trial", TAG_TRIAL_ID: trial_id, TAG_EXPERIMENT: "lora-rank-sweep"})
        client.set_terminated(run.info.run_id, status=status)
        runs[trial_id] = run.info.run_id
    exp_file = experiment_repo / "experiment.yaml"
    exp_file.write_text(exp_file.read_text().replace("experiment: llama-finetuning",
                                                     f"experiment: {name}"))

    plan = build_plan(experiment_repo, tracking_uri=mlflow_server)
    assert [t.reused_run for t in plan.trials] == [runs[ids[0]], None, None]
    assert plan.reused == 1 and plan.gpu_hours_to_run == 6

    assert main(["plan", str(experiment_repo), "--tracking-uri", mlflow_server]) == 0
    out = capsys.readouterr().out
    assert "1 trial(s) reused from FINISHED MLflow runs; 6 GPU-hours to run" in out
    assert f"reuse run {runs[ids[0]]}" in out
    assert out.count(" train\n") == 2  # the other two trials are trained


def test_malformed_defaults_is_a_finding_not_a_crash(experiment_repo: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # defaults.yaml gives every trial its image (part of the id): plan must refuse a broken
    # one with exit 1 and a pointer to validate, which reports it for the folder alone
    defaults = experiment_repo.parent / "defaults.yaml"
    defaults.write_text("kubernetes: [1]\n")
    assert main(["plan", str(experiment_repo), "--offline"]) == 1
    assert capsys.readouterr().err.startswith("sweepctl: error: 1 error(s) in the experiment")
    assert main(["validate", str(experiment_repo)]) == 1
    assert f"{defaults}:1:13: error: kubernetes: expected object" in capsys.readouterr().out


def test_malformed_defaults_at_the_base_makes_every_trial_new(experiment_repo: Path) -> None:
    repo = experiment_repo.parent.parent
    defaults = experiment_repo.parent / "defaults.yaml"
    good = defaults.read_text()
    defaults.write_text("kubernetes:\n  image: [1]\n")
    commit(repo, "break defaults")
    defaults.write_text(good)
    plan = build_plan(experiment_repo, base="HEAD")
    assert plan.base_note == "not valid in HEAD (1 error(s)): every trial is new"
    assert {t.change for t in plan.trials} == {"new"}


def test_plan_from_inside_the_folder_uses_its_defaults(experiment_repo: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # defaults.yaml (the image, part of every id) sits beside the folder: `plan .` run
    # inside it must find the same file, or every id differs from what launch will run
    defaults = experiment_repo.parent / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("train:0.9.5", "train:9.9.9"))
    outside = build_plan(experiment_repo)
    monkeypatch.chdir(experiment_repo)
    inside = build_plan(Path("."))
    assert inside.image == outside.image == "ghcr.io/example/llama-factory-train:9.9.9"
    assert [t.trial.trial_id for t in inside.trials] == [t.trial.trial_id for t in outside.trials]
    assert inside.experiment == "lora-rank-sweep"


def test_a_huge_plan_keeps_its_comment_under_githubs_limit(experiment_repo: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from sweepctl.renderers.markdown import GITHUB_COMMENT_LIMIT

    trials = "\n".join(f"  - {{learning_rate: {1.0e-5 + i * 1.0e-7:.7e}, lora_rank: {8 + i % 56}}}"
                       for i in range(1, 1500))
    (experiment_repo / "sweep.yaml").write_text(f"strategy: list\ntrials:\n{trials}\n")
    experiment = experiment_repo / "experiment.yaml"
    experiment.write_text(experiment.read_text()
                          .replace("max_trials: 10", "max_trials: 2000")
                          .replace("gpu_hours: 40", "gpu_hours: 10000"))
    assert main(["plan", str(experiment_repo), "--format", "markdown", "--offline"]) == 0
    body = capsys.readouterr().out
    assert len(body) <= GITHUB_COMMENT_LIMIT
    assert body.startswith(marker("lora-rank-sweep"))
    assert "more trial(s): `sweepctl plan` prints them all" in body
    assert main(["plan", str(experiment_repo), "--offline"]) == 0
    assert capsys.readouterr().out.count("lora-rank-sweep-") >= 1500


def test_the_comment_starts_with_what_a_reviewer_judges(experiment_repo: Path) -> None:
    from sweepctl.usecases.plan import build_plans
    from sweepctl.workspace import Workspace

    spec = experiment_repo / "experiment.yaml"
    text = spec.read_text().replace("runtime: {}\n", "")
    text = text.replace("title: LoRA rank sweep on support-chat v2.1.0",
                        "title: 'Rank <b>sweep</b> | [x](http://evil) @team'")
    spec.write_text(text + (
        "runtime:\n  local:\n    tracking_uri: http://mlflow.example.com:5000\n"
        "    max_parallel: 2\nwarnings:\n  ignore: [typical-range]\n"))
    # local.tracking_uri is no scheduling knob: only a policy that names it lets it through
    defaults = experiment_repo.parent / "defaults.yaml"
    defaults.write_text(defaults.read_text()
                        + "policy:\n  allow_overrides: [local.tracking_uri]\n")
    body = render_markdown(build_plan(experiment_repo))  # no backend named: local
    head = body.split("| \\#")[0]  # the table header (md_cell escapes a leading #)
    joiner = "\u2060"  # breaks autolinks and mentions (renderers/escape.py)
    assert (f"**Rank &lt;b>sweep&lt;/b> \\| \\[x\\](http:{joiner}//evil) @{joiner}team**"
            in head)
    assert ("> **Hypothesis:** Higher rank lowers eval_loss, with diminishing returns past "
            "r=16.") in head
    assert "- objective: minimize eval_loss, target < 0.4" in head
    assert (f"- runtime override: local.tracking_uri = http:{joiner}//mlflow.example.com:5000\n"
            "- runtime override: local.max_parallel = 2\n") in head
    assert "- warnings acknowledged (not shown by validate): typical-range" in head
    assert "<b>" not in body
    assert "Image `" not in body  # a local plan uses no image

    [cluster] = build_plans(Workspace(shared_tracking=True), [experiment_repo], offline=True)
    assert "Image `ghcr.io/example/llama-factory-train:0.9.5`" in render_markdown(cluster)


def test_a_uri_in_an_override_never_shows_its_credentials() -> None:
    from sweepctl.renderers.plan import masked

    # validate refuses a password in a URL (secret-value); the plan masks any user anyway
    assert masked("https://bob:hunter2@mlflow.example.com/x") == "https://***@mlflow.example.com/x"
    assert masked("sqlite:///.sweepctl/mlflow.db") == "sqlite:///.sweepctl/mlflow.db"
    assert masked({"a": "http://t@h"}) == '{"a": "http://***@h"}'


@pytest.mark.parametrize("name", ["lr-rank-tpe", "lora-rank-sweep", "tiny-lora-demo"])
def test_the_plan_json_carries_everything_the_comment_shows(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pr-comment.yml renders the comment from the JSON: the header (title, hypothesis,
    objective, overrides, acknowledged warnings), the GPUs per trial and a tpe search's
    budget must survive the round trip, or the posted comment silently loses them."""
    from sweepctl.renderers.plan import plan_from_data

    experiments = tmp_path / "experiments"
    shutil.copytree(REPO_ROOT / "experiments", experiments)
    folder = experiments / name
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["runtime"] = {"local": {"max_parallel": 1}}
    doc["warnings"] = {"ignore": ["typical-range"]}
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    assert main(["plan", str(folder), "--offline", "--format", "markdown"]) in (0, 1)
    markdown = capsys.readouterr().out
    assert main(["plan", str(folder), "--offline", "--format", "json"]) in (0, 1)
    [data] = json.loads(capsys.readouterr().out)["plans"]
    assert render_markdown(plan_from_data(data)) == markdown
    assert "local.max_parallel" in markdown and "typical-range" in markdown
