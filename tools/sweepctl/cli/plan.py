"""`sweepctl plan EXP... [--base REF] [--format text|markdown|json]`."""

from __future__ import annotations

import os

import click

from sweepctl.cli.options import workspace_for
from sweepctl.errors import UsageError


@click.command("plan")
@click.argument("experiments", nargs=-1, required=True)
@click.option("--base", metavar="REF", help="git revision to compare with (e.g. origin/main): "
              "which trials are new, unchanged or removed")
@click.option("--format", "output_format", type=click.Choice(["text", "markdown", "json"]),
              default="text", show_default=True,
              help="markdown is the PR comment body (with its hidden marker)")
@click.option("--tracking-uri", metavar="URI",
              help="MLflow to ask for reusable FINISHED trials (default: MLFLOW_TRACKING_URI, "
              "then defaults.yaml)")
@click.option("--offline", is_flag=True, help="do not ask MLflow which trials can be reused")
def command(experiments: tuple[str, ...], base: str | None, output_format: str,
            tracking_uri: str | None, offline: bool) -> int:
    """Show the trials an experiment will run, GPU-hours vs budget, and what changed.

    Exit 1 when a plan is over budget (trials or GPU-hours) or an experiment is invalid.
    """
    from sweepctl.renderers.plan import render_json, render_markdown, render_text
    from sweepctl.usecases.plan import build_plans

    if offline and tracking_uri:
        raise UsageError("--offline and --tracking-uri exclude each other")
    # A plan is advisory: with MLflow's defaults an unreachable server is retried for ~4
    # minutes (measured) before the plan could say "reuse unknown". The user's own
    # settings still win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    workspace = workspace_for(None, tracking_uri=tracking_uri)
    plans = build_plans(workspace, [workspace.locate(name) for name in experiments],
                        base=base, offline=offline)
    if output_format == "json":
        click.echo(render_json(plans))
    elif output_format == "markdown":
        click.echo("\n".join(render_markdown(p) for p in plans), nl=False)
    else:
        click.echo("\n\n".join(render_text(p) for p in plans))
    return 0 if all(p.ok for p in plans) else 1
