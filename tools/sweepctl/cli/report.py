"""`sweepctl report EXP [--pr N] [--notes]`: results into the PR's sticky comment and,
with --notes, into notes.md's generated block (plus the sensitivity plots).

Everything is read and built first; only then is anything written or posted, so an
unreachable MLflow or malformed notes.md markers leave both the file and the PR as
they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sweepctl.cli.compare import tolerance_option
from sweepctl.errors import GitHubError, UsageError
from sweepctl.results.compare import Comparison, compare_experiment, resolve_tracking_uri
from sweepctl.runtime import resolve_runtime
from sweepctl.spec.folder import load_experiment
from sweepctl.spec.model import Experiment

if TYPE_CHECKING:
    from sweepctl.report.github import GitHubTarget


def _notes_url(experiment: Experiment, repository: str | None) -> str | None:
    if not repository:
        return None
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    root = experiment.path.resolve().parent.parent
    relative = experiment.notes_path.resolve().relative_to(root).as_posix()
    # HEAD resolves to the default branch, where the scheduled report commits notes.md
    return f"{server}/{repository}/blob/HEAD/{relative}"


class NoPullRequest(GitHubError):
    """The experiment reached main without a PR (or before sweepctl knew of it)."""


def _find_pr(experiment: Experiment, comparison: Comparison, target: GitHubTarget) -> int:
    """The runs' sweepctl.pr tag, else the PR of the commit that added the experiment."""
    from sweepctl.gitrepo import commit_adding
    from sweepctl.report.github import pull_request_for_commit

    if comparison.pull_requests:
        return int(comparison.pull_requests[0])
    sha = commit_adding(experiment.path / "experiment.yaml")
    if sha is None:
        raise NoPullRequest(f"{experiment.path}/experiment.yaml is not committed yet, so its "
                          "pull request cannot be found; pass --pr N")
    number = pull_request_for_commit(target, sha)
    if number is None:
        raise NoPullRequest(f"no pull request contains commit {sha[:12]} that added "
                          f"{experiment.name}; pass --pr N")
    return number


def _github_target(repository: str | None) -> GitHubTarget:
    from sweepctl.report.github import DEFAULT_API_URL, GitHubTarget

    token = os.environ.get("GITHUB_TOKEN") or None
    if not (token and repository):
        raise UsageError("posting the comment needs GITHUB_TOKEN and GITHUB_REPOSITORY "
                         "(or github.repository in defaults.yaml)")
    return GitHubTarget(repository=repository, token=token,
                        api_url=os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL)


def _post_body_file(body_file: Path, pr_number: int | None) -> int:
    """Post a ready-made body (the plan from a PR's artifact: untrusted data)."""
    from sweepctl.report.github import StickyComment
    from sweepctl.report.markdown import read_comment_body

    if pr_number is None:
        raise UsageError("--body-file needs --pr N")
    target = _github_target(os.environ.get("GITHUB_REPOSITORY"))
    marker, body = read_comment_body(body_file)
    result = StickyComment(target, pr_number, marker).upsert(body)
    click.echo(f"{target.repository}#{pr_number}: comment {result.action}"
               f"{f' ({result.url})' if result.url else ''}", err=True)
    return 0


@click.command("report")
@click.argument("experiment_dir", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pr", "pr_number", type=click.IntRange(min=1), default=None,
              help="pull request number (default: the PR that added the experiment)")
@click.option("--notes", is_flag=True, help="also write the results block into notes.md")
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="post this ready-made body (e.g. `sweepctl plan --format markdown` output) "
              "as the sticky comment; its first line must be the comment marker; needs --pr")
@tolerance_option
def command(experiment_dir: Path | None, pr_number: int | None, notes: bool,
            body_file: Path | None, tolerance: float) -> int:
    """Post the results to the PR's one sticky comment (GITHUB_TOKEN, GITHUB_REPOSITORY,
    GITHUB_API_URL) and, with --notes, write them into notes.md.

    Without a GitHub token and repository the comment body is printed instead.
    """
    from sweepctl.report import markdown
    from sweepctl.report import notes as notes_file
    from sweepctl.results import sensitivity

    if body_file is not None:
        if experiment_dir is not None or notes:
            raise UsageError("--body-file posts a given body: no EXPERIMENT_DIR or --notes")
        return _post_body_file(body_file, pr_number)
    if experiment_dir is None:
        raise UsageError("missing EXPERIMENT_DIR")
    experiment = load_experiment(experiment_dir)
    runtime = resolve_runtime(experiment.path, experiment.runtime)
    uri = resolve_tracking_uri(experiment.path, runtime, os.environ)
    token = os.environ.get("GITHUB_TOKEN") or None
    repository = os.environ.get("GITHUB_REPOSITORY") or runtime.github_repository
    post = bool(token or pr_number)
    if post and not (token and repository):
        raise UsageError("posting the comment needs GITHUB_TOKEN and GITHUB_REPOSITORY "
                         "(or github.repository in defaults.yaml)")
    if notes:
        notes_file.check_markers(experiment.notes_path)  # fail before any other work
    comparison = compare_experiment(experiment, uri, runtime.kubernetes.image,
                                    tolerance=tolerance)
    body = markdown.comment_body(comparison, _notes_url(experiment, repository))
    if notes:
        table = sensitivity.sensitivity(comparison)
        plots = sensitivity.write_plots(comparison, table, experiment.path / "plots")
        block = markdown.notes_block(comparison, table, plots, experiment.path)
        changed = notes_file.write_block(experiment.notes_path, block)
        click.echo(f"{experiment.notes_path}: {'updated' if changed else 'unchanged'}"
                   f" ({markdown.state(comparison)}; {len(plots)} plot(s))", err=True)
    if not post:
        if not notes:
            click.echo(body, nl=False)
        click.echo("comment not posted: set GITHUB_TOKEN (and GITHUB_REPOSITORY) to post it",
                   err=True)
        return 0
    from sweepctl.report.github import StickyComment

    target = _github_target(repository)
    try:
        number = pr_number or _find_pr(experiment, comparison, target)
    except NoPullRequest as exc:
        if not notes:
            raise
        # the scheduled report covers every experiment, some merged without a PR: their
        # notes.md is the report, so that is not a failure (a GitHub error still is)
        click.echo(f"comment not posted: {exc}", err=True)
        return 0
    result = StickyComment(target, number, markdown.comment_marker(experiment.name)).upsert(body)
    click.echo(f"{repository}#{number}: comment {result.action}"
               f"{f' ({result.url})' if result.url else ''}", err=True)
    return 0
