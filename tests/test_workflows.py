"""The GitHub workflows: both linters pass, the hardening rules hold, and every
`sweepctl ...` line in a `run:` script parses against the real CLI, so a renamed flag
breaks this test instead of the first merge after it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from sweepctl.cli.main import cli

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
SHELL_OPERATORS = set("();<>|&")

# Flags that pr-comment.yml needs from a command another engineer owns; until the flag
# exists the line is an xfail that names it (strict, so it turns red once it lands).
PENDING_FLAGS: dict[tuple[str, str], str] = {}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    # PyYAML reads the `on:` key as the boolean True (YAML 1.1)
    if True in data:
        data["on"] = data.pop(True)
    return data


def jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path.name, name, job) for path in FILES for name, job in load(path)["jobs"].items()]


def steps() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{wf}:{job}", step) for wf, job, spec in jobs() for step in spec["steps"]]


def test_there_are_the_four_workflows() -> None:
    assert [p.name for p in FILES] == ["launch.yml", "pr-comment.yml", "pr.yml", "report.yml"]


def test_zizmor_finds_nothing_of_medium_severity_or_higher() -> None:
    done = subprocess.run([str(BIN / "zizmor"), "--offline", "--format", "json",
                           str(WORKFLOWS)], capture_output=True, text=True, timeout=120)
    findings = json.loads(done.stdout or "[]")
    serious = [f"{f['ident']} ({f['determinations']['severity']}): {f['desc']}"
               for f in findings if f["determinations"]["severity"] in ("Medium", "High")]
    assert serious == [], done.stderr


def test_check_jsonschema_github_workflow_schema() -> None:
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *map(str, FILES)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_top_level_permissions_are_empty_and_each_job_declares_its_own() -> None:
    for path in FILES:
        assert load(path)["permissions"] == {}, path.name
    for wf, name, job in jobs():
        assert isinstance(job.get("permissions"), dict), f"{wf}:{name}"
        assert isinstance(job.get("timeout-minutes"), int), f"{wf}:{name} has no timeout"
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        expected = {"pr-comment.yml": {"pull-requests"},
                    "report.yml": {"contents", "pull-requests"}}.get(wf, set())
        assert writes == expected, f"{wf}:{name}"


def test_actions_are_pinned_to_full_shas_with_a_version_comment() -> None:
    used = [(where, step["uses"]) for where, step in steps() if "uses" in step]
    assert used
    for where, uses in used:
        assert SHA_PIN.match(uses), f"{where}: {uses} is not pinned to a commit sha"
    for path in FILES:
        for line in path.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_checkouts_do_not_persist_credentials_and_comment_never_checks_out_the_pr() -> None:
    for where, step in steps():
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, where
            if where.startswith("pr-comment.yml"):
                assert "ref" not in step["with"], "pr-comment.yml must only run trusted code"


def test_no_expression_inside_run_scripts() -> None:
    for where, step in steps():
        assert "${{" not in step.get("run", ""), f"{where}: pass it through env: instead"


def test_triggers_and_concurrency() -> None:
    pr, comment, launch, report = (load(WORKFLOWS / n) for n in
                                   ("pr.yml", "pr-comment.yml", "launch.yml", "report.yml"))
    assert set(pr["on"]) == {"pull_request"}
    assert comment["on"]["workflow_run"]["workflows"] == [pr["name"]]
    assert launch["on"]["push"]["branches"] == ["main"]
    assert launch["concurrency"]["cancel-in-progress"] is False
    assert {"schedule", "workflow_dispatch"} <= set(report["on"])
    assert report["concurrency"]["cancel-in-progress"] is False
    assert "Sweepctl-Experiment: $name" in (WORKFLOWS / "report.yml").read_text()


# --- every sweepctl command line parses against the real CLI ----------------------------


def sweepctl_lines() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for where, step in steps():
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
            for i, token in enumerate(tokens):
                if token.rsplit("/", 1)[-1] != "sweepctl":
                    continue
                args: list[str] = []
                for arg in tokens[i + 1:]:
                    if set(arg) <= SHELL_OPERATORS:
                        break
                    args.append(arg)
                found.append((where, args))
    return found


LINES = sweepctl_lines()


def test_the_workflows_call_the_commands_of_the_loop() -> None:
    assert {args[0] for _, args in LINES} >= {"plan", "launch", "report"}


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A working directory where every placeholder stands for something that exists."""
    (tmp_path / "experiments" / "demo").mkdir(parents=True)
    plan = tmp_path / "plans" / "demo.json"
    plan.parent.mkdir()
    plan.write_text('{"plans": []}\n')
    monkeypatch.chdir(tmp_path)
    return {
        "PR_NUMBER": "12",                 # pr-comment.yml: validated digits
        "BEFORE_SHA": "0" * 39 + "1",      # launch.yml: github.event.before
        "dir": "experiments/demo",         # an experiment folder
        "file": str(plan),                 # pr-comment.yml: one plan from the artifact
    }


def resolve(arg: str, dummies: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in dummies:
            pytest.fail(f"add a dummy value for ${name} to the sandbox fixture")
        return dummies[name]

    return re.sub(r"\$\{([^}]+)\}|\$(\w+)", one, arg)


@pytest.mark.parametrize(("where", "args"), LINES,
                         ids=[f"{w}:{a[0]}:{i}" for i, (w, a) in enumerate(LINES)])
def test_command_line_parses(where: str, args: list[str], sandbox: dict[str, str]) -> None:
    argv = [resolve(a, sandbox) for a in args]
    root = click.Context(cli, info_name="sweepctl")
    command = cli.get_command(root, argv[0])
    if command is None:
        pytest.xfail(f"sweepctl {argv[0]} is not written yet ({where})")
    known = {opt for param in command.params for opt in param.opts}
    for (name, flag), reason in PENDING_FLAGS.items():
        if name == argv[0] and flag in argv and flag not in known:
            pytest.xfail(f"{where}: {reason}")
    try:
        with command.make_context(argv[0], argv[1:], parent=root):
            pass
    except click.ClickException as exc:
        pytest.fail(f"{where}: `sweepctl {' '.join(args)}` does not parse: {exc.format_message()}")


def test_the_validate_hook_run_in_ci_exists() -> None:
    config = REPO / ".pre-commit-config.yaml"
    if not config.exists():
        pytest.xfail(".pre-commit-config.yaml is not written yet")
    ids = {hook["id"] for repo in load(config)["repos"] for hook in repo["hooks"]}
    assert "sweepctl-validate" in ids
    manifest = REPO / ".pre-commit-hooks.yaml"
    if manifest.exists():
        assert "sweepctl-validate" in {hook["id"] for hook in yaml.safe_load(manifest.read_text())}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def _report_repo(tmp_path: Path, stub: str) -> Path:
    """A repository with experiments alpha and beta and a stand-in `.venv/bin/sweepctl`."""
    repo = tmp_path / "repo"
    for name in ("alpha", "beta"):
        (repo / "experiments" / name).mkdir(parents=True)
        (repo / "experiments" / name / "experiment.yaml").write_text(f"name: {name}\n")
        (repo / "experiments" / name / "notes.md").write_text("# notes\n")
    path = repo / ".venv" / "bin" / "sweepctl"
    path.parent.mkdir(parents=True)
    path.write_text(f"#!/bin/bash\n{stub}\n")
    path.chmod(0o755)
    (repo / ".gitignore").write_text(".venv/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "init")
    return repo


def _run_report_yml(repo: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """report.yml's report and commit steps, run by bash as Actions runs them."""
    env_file = tmp_path / "github_env"
    env_file.write_text("")
    output = []
    for name in ("Report every experiment", "Commit the notes"):
        script = next(step["run"] for where, step in steps() if where.startswith("report.yml")
                      and step.get("name") == name)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                              cwd=repo, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                   "GITHUB_ENV": str(env_file)})
        assert done.returncode == 0, done.stderr
        output.append(done.stdout)
    return done, "".join(output) + env_file.read_text()


def test_report_runs_once_and_commits_good_notes_even_when_a_comment_fails(
        tmp_path: Path) -> None:
    """One `sweepctl report --notes` for every experiment writes both notes.md and fails
    (a comment could not be posted): both notes still get their commit with the trailers,
    the plots too, nothing else is staged, and the job is marked failed."""
    repo = _report_repo(tmp_path, '[ "$*" = "report --notes" ] || exit 3\n'
                        'for d in experiments/*/; do echo results > "$d/notes.md"; done\n'
                        'mkdir -p experiments/beta/plots; echo png > experiments/beta/plots/r.png\n'
                        'echo stray > experiments/beta/stray.txt\nexit 1')
    _, output = _run_report_yml(repo, tmp_path)
    log = _git(repo, "log", "--format=%B%x00")
    assert "Sweepctl-Experiment: alpha" in log and "Sweepctl-Experiment: beta" in log
    assert "Sweepctl-Result: notes.md" in log
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "experiments/beta/notes.md", "experiments/beta/plots/r.png"]
    assert "failed=1" in output and "::warning::report failed" in output
    assert _git(repo, "status", "--porcelain") == "?? experiments/beta/stray.txt\n"


def test_a_notes_symlink_is_never_staged(tmp_path: Path) -> None:
    """notes.md and a plot replaced by symlinks to files outside the repo: nothing of that
    experiment is staged or committed, the targets are untouched, the other experiment's
    notes are committed, and the job fails."""
    outside = tmp_path / "outside.txt"
    outside.write_text("token=hunter2\n")
    repo = _report_repo(tmp_path, 'echo results > experiments/beta/notes.md')
    alpha = repo / "experiments" / "alpha"
    (alpha / "notes.md").unlink()
    (alpha / "notes.md").symlink_to(outside)
    (alpha / "plots").mkdir()
    (alpha / "plots" / "x.png").symlink_to(outside)

    _, output = _run_report_yml(repo, tmp_path)

    assert "::error::experiments/alpha/" in output and "is a symlink or not a regular file" \
        in output
    assert "failed=1" in output
    assert outside.read_text() == "token=hunter2\n"
    assert _git(repo, "diff", "--cached", "--name-only") == ""
    committed = _git(repo, "log", "--format=", "--name-only", "HEAD~1..HEAD").split()
    assert committed == ["experiments/beta/notes.md"]
    assert _git(repo, "log", "--format=%s").splitlines()[0] == "sweepctl: results for beta"


def test_a_plots_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.png").write_text("png")
    repo = _report_repo(tmp_path, "true")
    (repo / "experiments" / "alpha" / "plots").symlink_to(elsewhere)
    _, output = _run_report_yml(repo, tmp_path)
    assert "::error::experiments/alpha/plots is not a folder" in output
    assert _git(repo, "status", "--porcelain") == "?? experiments/alpha/plots\n"


def test_pr_comment_posts_every_plan_even_when_one_is_refused(tmp_path: Path) -> None:
    """pr-comment.yml's loop under bash -eo pipefail: a refused plan (empty, because its
    `sweepctl plan` failed) is reported, the others are still posted, and no file other
    than plans/<experiment>.json (a markdown body, a symlink) reaches sweepctl."""
    script = next(step["run"] for where, step in steps() if where.startswith("pr-comment.yml")
                  and step.get("name") == "Post or edit the sticky comments")
    plans = tmp_path / "untrusted-plan" / "plans"
    plans.mkdir(parents=True)
    (plans / "alpha.json").write_text("")
    (plans / "beta.json").write_text('{"plans": []}\n')
    (plans / "gamma.md").write_text("<!-- sweepctl:report:gamma -->\nforged\n")
    (plans / "delta.json").symlink_to(plans / "beta.json")
    posted = tmp_path / "posted"
    stub = tmp_path / "work" / ".venv" / "bin" / "sweepctl"
    stub.parent.mkdir(parents=True)
    stub.write_text(f'#!/bin/bash\n[ "$4" = --plan-json ] && [ -s "$5" ] || exit 1\n'
                    f'echo "$5" >> "{posted}"\n')
    stub.chmod(0o755)
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=stub.parent.parent.parent, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PR_NUMBER": "12",
                                           "RUNNER_TEMP": str(tmp_path)})
    assert done.returncode == 1
    assert posted.read_text().split() == [str(plans / "beta.json")]
    assert "not a regular file of at most 4 MiB; skipped" in done.stdout
