"""`sweepctl report [EXP...] [--pr N] [--notes]`: results into the PR's sticky comment and,
with --notes, into notes.md's generated block (plus the sensitivity plots).

With no EXP (or ``--all``), every experiment under experiments/ is reported in this one
process: one MLflow index, one GitHub client. ``report.yml`` runs it hourly.

``--pr N --plan-json FILE`` is pr-comment.yml's: it renders a PR's plan (untrusted JSON
from its artifact) with sweepctl's own renderer into the experiment's comment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sweepctl.cli.compare import tolerance_option
from sweepctl.cli.options import experiment_folders, full_scan_option, workspace_for
from sweepctl.errors import UsageError
from sweepctl.usecases.report import ExperimentReport, ReportRequest, report
from sweepctl.workspace import ResolvedExperiment, Workspace

if TYPE_CHECKING:
    from sweepctl.clients.github_api import GitHubTarget

NEEDS_TOKEN = ("posting the comment needs GITHUB_TOKEN and GITHUB_REPOSITORY "
               "(or github.repository in defaults.yaml)")


def _notes_url(repository: str | None) -> Callable[[ResolvedExperiment], str | None]:
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")

    def url(resolved: ResolvedExperiment) -> str | None:
        if not repository:
            return None
        relative = resolved.experiment.notes_path.resolve().relative_to(resolved.root)
        # HEAD resolves to the default branch, where the scheduled report commits notes.md
        return f"{server}/{repository}/blob/HEAD/{relative.as_posix()}"

    return url


def _github_target(repository: str | None, bot_login: str | None = None) -> GitHubTarget:
    from sweepctl.clients.github_api import DEFAULT_API_URL, DEFAULT_BOT_LOGIN, GitHubTarget

    token = os.environ.get("GITHUB_TOKEN") or None
    if not (token and repository):
        raise UsageError(NEEDS_TOKEN)
    return GitHubTarget(repository=repository, token=token,
                        api_url=os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL,
                        bot_login=os.environ.get("SWEEPCTL_BOT_LOGIN") or bot_login
                        or DEFAULT_BOT_LOGIN)


def _post_plan_json(plan_json: Path, pr_number: int | None) -> int:
    """Render the plan of a PR's artifact (untrusted data) and post it as the comment."""
    from sweepctl.clients.github_api import GitHub
    from sweepctl.usecases.report import post_plan

    if pr_number is None:
        raise UsageError("--plan-json needs --pr N")
    workspace = workspace_for(None)
    github = GitHub(_github_target(os.environ.get("GITHUB_REPOSITORY"),
                                   _github_setting(workspace, "bot_login")))
    _, posted = post_plan(plan_json, pr_number, github)
    click.echo(posted, err=True)
    return 0


@click.command("report")
@click.argument("experiments", nargs=-1)
@click.option("--all", "every", is_flag=True,
              help="every experiment under experiments/ (the same as naming none)")
@click.option("--pr", "pr_number", type=click.IntRange(min=1), default=None,
              help="pull request number (default: the PR that added the experiment)")
@click.option("--notes", is_flag=True, help="also write the results block into notes.md")
@click.option("--plan-json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="render this plan (`sweepctl plan --format json` output of one "
              "experiment, e.g. from a PR's artifact: checked as untrusted data) and post it "
              "as the sticky comment; needs --pr")
@click.option("--jobs", type=click.IntRange(min=1, max=16), default=None,
              help="processes that draw the plots when there are many (default: the "
              "CPUs this process may use, at most 4)")
@tolerance_option
@full_scan_option
def command(experiments: tuple[str, ...], every: bool, pr_number: int | None, notes: bool,
            plan_json: Path | None, jobs: int | None, tolerance: float,
            full_scan: bool) -> int:
    """Post the results to each PR's one sticky comment (GITHUB_TOKEN, GITHUB_REPOSITORY,
    GITHUB_API_URL) and, with --notes, write them into notes.md.

    EXPERIMENTS are folders or bare names; none (or --all) reports every experiment.
    Without a GitHub token and repository the comment body is printed instead.
    """
    if plan_json is not None:
        if experiments or notes or every:
            raise UsageError("--plan-json posts a plan: no EXPERIMENT, --all or --notes")
        return _post_plan_json(plan_json, pr_number)
    if every and experiments:
        raise UsageError("--all reports every experiment: name none")
    workspace = workspace_for(None, full_scan=full_scan)
    folders = experiment_folders(workspace, experiments)
    if pr_number is not None and len(folders) != 1:
        raise UsageError("--pr N names the PR of one experiment: name exactly one")
    token = os.environ.get("GITHUB_TOKEN") or None
    repository = os.environ.get("GITHUB_REPOSITORY") or _github_setting(workspace,
                                                                        "repository", folders)
    github = None
    if token or pr_number:
        from sweepctl.clients.github_api import GitHub

        github = GitHub(_github_target(repository,
                                       _github_setting(workspace, "bot_login", folders)))
    request = ReportRequest(pr=pr_number, notes=notes, tolerance=tolerance,
                            notes_url=_notes_url(repository),
                            jobs=jobs or min(4, len(os.sched_getaffinity(0))))
    summary = report(workspace, folders, request, github)
    for entry in summary.reports:
        _print(entry, github is not None)
    if github is None:
        click.echo("comment not posted: set GITHUB_TOKEN (and GITHUB_REPOSITORY) to post it",
                   err=True)
    return 0 if summary.ok else 1


def _github_setting(workspace: Workspace, key: str,
                    folders: list[Path] | None = None) -> str | None:
    """``github.<key>`` of defaults.yaml (that of the first experiment's folder)."""
    where = folders[0].parent if folders else workspace.cwd / "experiments"
    data, _ = workspace.defaults(where)
    value = (data.get("github") or {}).get(key)
    return value if isinstance(value, str) else None


def _print(entry: ExperimentReport, posted: bool) -> None:
    if entry.error:
        click.echo(f"sweepctl: error: {entry.experiment}: {entry.error}", err=True)
        return
    if entry.notes is not None:
        click.echo(f"{entry.notes_path}: {entry.notes} ({entry.state}; "
                   f"{entry.plots} plot(s))", err=True)
    if not posted:  # what would be posted, with or without --notes (issue 13)
        click.echo(entry.body, nl=False)
    if entry.comment:
        click.echo(entry.comment, err=True)
    if entry.skipped:
        click.echo(f"comment not posted: {entry.skipped}", err=True)
