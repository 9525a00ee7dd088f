"""`sweepctl history EXP`: who proposed what, when it ran, with which spec, what came out."""

from __future__ import annotations

from pathlib import Path

import click

from sweepctl.renderers.history import render_json, render_text
from sweepctl.usecases.history import experiment_history


@click.command("history")
@click.argument("experiment", type=click.Path(path_type=Path))
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="text: one block per commit; json: the same as data")
@click.option("--rev", default="HEAD", show_default=True, metavar="REV",
              help="read the history reachable from this revision")
def command(experiment: Path, output_format: str, rev: str) -> int:
    """The git history of one experiment folder, oldest commit first.

    EXPERIMENT is a folder (experiments/lora-rank-sweep) or a bare name, looked up
    under experiments/. A deleted experiment still has a history: name its old path.
    """
    folder = experiment
    if not folder.exists() and len(folder.parts) == 1:
        folder = Path("experiments") / folder
    history = experiment_history(folder, rev)
    click.echo(render_json(history) if output_format == "json" else render_text(history))
    return 0
