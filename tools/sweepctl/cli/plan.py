"""`sweepctl plan EXP... [--base REF] [--format text|markdown|json]`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sweepctl.errors import UsageError


def _tracking_uri(folder: Path, option: str | None, offline: bool) -> str | None:
    """--tracking-uri, else the rule every command uses (runtime.tracking_uri)."""
    if offline:
        return None
    if option:
        return option
    from sweepctl.runtime import env_tracking_uri, resolve_runtime

    return env_tracking_uri(folder, resolve_runtime(folder, {}), os.environ)


@click.command("plan")
@click.argument("experiments", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--base", metavar="REF", help="git revision to compare with (e.g. origin/main): "
              "which trials are new, unchanged or removed")
@click.option("--format", "output_format", type=click.Choice(["text", "markdown", "json"]),
              default="text", show_default=True,
              help="markdown is the PR comment body (with its hidden marker)")
@click.option("--tracking-uri", metavar="URI",
              help="MLflow to ask for reusable FINISHED trials (default: MLFLOW_TRACKING_URI, "
              "then defaults.yaml)")
@click.option("--offline", is_flag=True, help="do not ask MLflow which trials can be reused")
def command(experiments: tuple[Path, ...], base: str | None, output_format: str,
            tracking_uri: str | None, offline: bool) -> int:
    """Show the trials an experiment will run, GPU-hours vs budget, and what changed.

    Exit 1 when a plan is over budget (trials or GPU-hours) or an experiment is invalid.
    """
    from sweepctl.plan import build_plan
    from sweepctl.plan_render import render_json, render_markdown, render_text

    if offline and tracking_uri:
        raise UsageError("--offline and --tracking-uri exclude each other")
    # A plan is advisory: with MLflow's defaults an unreachable server is retried for ~4
    # minutes (measured) before the plan could say "reuse unknown". The user's own
    # settings still win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    plans = [build_plan(folder, base=base,
                        tracking_uri=_tracking_uri(folder, tracking_uri, offline))
             for folder in experiments]
    if output_format == "json":
        click.echo(render_json(plans))
    elif output_format == "markdown":
        click.echo("\n".join(render_markdown(p) for p in plans), nl=False)
    else:
        click.echo("\n\n".join(render_text(p) for p in plans))
    return 0 if all(p.ok for p in plans) else 1
