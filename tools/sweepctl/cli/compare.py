"""`sweepctl compare EXP`: the comparison table of an experiment's trials, from MLflow."""

from __future__ import annotations

import click

from sweepctl.cli.options import workspace_for
from sweepctl.renderers.comparison import FORMATS, render, render_many
from sweepctl.results.compare import DEFAULT_TOLERANCE
from sweepctl.usecases.compare import compare_many


def tolerance_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--tolerance", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_TOLERANCE,
        show_default=True,
        help="sweet spot: the fastest trial whose objective is within this fraction of the "
             "best (0.02 = 2% relative)")(function)


@click.command("compare")
@click.argument("experiments", metavar="EXPERIMENT...", nargs=-1, required=True)
@click.option("--metric", default=None, help="compare on this metric instead of the objective's")
@click.option("--goal", type=click.Choice(["minimize", "maximize"]), default=None,
              help="direction for --metric (default: the objective's)")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="markdown",
              show_default=True)
@tolerance_option
def command(experiments: tuple[str, ...], metric: str | None, goal: str | None, output_format: str,
            tolerance: float) -> int:
    """One row per trial: the parameters that vary, the objective, train loss, runtime,
    throughput, % deltas vs the baseline, the best trial, the sweet spot and the verdict.

    EXPERIMENT is a folder or a bare name. Several give one table with the experiment
    as its first column. MLflow: MLFLOW_TRACKING_URI, else experiments/defaults.yaml.
    """
    workspace = workspace_for(None)
    folders = [workspace.locate(name) for name in experiments]
    comparisons = compare_many(workspace, folders, metric=metric, goal=goal,
                               tolerance=tolerance)
    if len(comparisons) == 1:
        click.echo(render(comparisons[0], output_format), nl=False)
    else:
        click.echo(render_many(comparisons, output_format), nl=False)
    return 0
