"""`sweepctl report [EXP...] [--pr N] [--notes]`: results into the PR's sticky comment and,
with --notes, into notes.md's generated block (plus the sensitivity plots).

With no EXP (or ``--all``), every experiment under experiments/ is reported in this one
process: one MLflow index, one GitHub client. ``report.yml`` runs it hourly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sweepctl.cli.compare import tolerance_option
from sweepctl.cli.options import experiment_folders, workspace_for
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


def _github_target(repository: str | None) -> GitHubTarget:
    from sweepctl.clients.github_api import DEFAULT_API_URL, GitHubTarget

    token = os.environ.get("GITHUB_TOKEN") or None
    if not (token and repository):
        raise UsageError(NEEDS_TOKEN)
    return GitHubTarget(repository=repository, token=token,
                        api_url=os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL)


def _post_body_file(body_file: Path, pr_number: int | None) -> int:
    """Post a ready-made body (the plan from a PR's artifact: untrusted data)."""
    from sweepctl.clients.github_api import StickyComment
    from sweepctl.renderers.markdown import read_comment_body

    if pr_number is None:
        raise UsageError("--body-file needs --pr N")
    target = _github_target(os.environ.get("GITHUB_REPOSITORY"))
    marker, body = read_comment_body(body_file)
    result = StickyComment(target, pr_number, marker).upsert(body)
    click.echo(f"{target.repository}#{pr_number}: comment {result.action}"
               f"{f' ({result.url})' if result.url else ''}", err=True)
    return 0


@click.command("report")
@click.argument("experiments", nargs=-1)
@click.option("--all", "every", is_flag=True,
              help="every experiment under experiments/ (the same as naming none)")
@click.option("--pr", "pr_number", type=click.IntRange(min=1), default=None,
              help="pull request number (default: the PR that added the experiment)")
@click.option("--notes", is_flag=True, help="also write the results block into notes.md")
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="post this ready-made body (e.g. `sweepctl plan --format markdown` output) "
              "as the sticky comment; its first line must be the comment marker; needs --pr")
@tolerance_option
def command(experiments: tuple[str, ...], every: bool, pr_number: int | None, notes: bool,
            body_file: Path | None, tolerance: float) -> int:
    """Post the results to each PR's one sticky comment (GITHUB_TOKEN, GITHUB_REPOSITORY,
    GITHUB_API_URL) and, with --notes, write them into notes.md.

    EXPERIMENTS are folders or bare names; none (or --all) reports every experiment.
    Without a GitHub token and repository the comment body is printed instead.
    """
    if body_file is not None:
        if experiments or notes or every:
            raise UsageError("--body-file posts a given body: no EXPERIMENT, --all or --notes")
        return _post_body_file(body_file, pr_number)
    if every and experiments:
        raise UsageError("--all reports every experiment: name none")
    workspace = workspace_for(None)
    folders = experiment_folders(workspace, experiments)
    if pr_number is not None and len(folders) != 1:
        raise UsageError("--pr N names the PR of one experiment: name exactly one")
    token = os.environ.get("GITHUB_TOKEN") or None
    repository = os.environ.get("GITHUB_REPOSITORY") or _repository(workspace, folders)
    github = None
    if token or pr_number:
        from sweepctl.clients.github_api import GitHub

        github = GitHub(_github_target(repository))
    request = ReportRequest(pr=pr_number, notes=notes, tolerance=tolerance,
                            notes_url=_notes_url(repository))
    summary = report(workspace, folders, request, github)
    for entry in summary.reports:
        _print(entry, notes, github is not None)
    if github is None:
        click.echo("comment not posted: set GITHUB_TOKEN (and GITHUB_REPOSITORY) to post it",
                   err=True)
    return 0 if summary.ok else 1


def _repository(workspace: Workspace, folders: list[Path]) -> str | None:
    if not folders:
        return None
    data, _ = workspace.defaults(folders[0].parent)
    return (data.get("github") or {}).get("repository")


def _print(entry: ExperimentReport, notes: bool, posted: bool) -> None:
    if entry.error:
        click.echo(f"sweepctl: error: {entry.experiment}: {entry.error}", err=True)
        return
    if entry.notes is not None:
        click.echo(f"{entry.notes_path}: {entry.notes} ({entry.state}; "
                   f"{entry.plots} plot(s))", err=True)
    if not posted and not notes:
        click.echo(entry.body, nl=False)
    if entry.comment:
        click.echo(entry.comment, err=True)
    if entry.skipped:
        click.echo(f"comment not posted: {entry.skipped}", err=True)
