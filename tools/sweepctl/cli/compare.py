"""`sweepctl compare EXP`: the comparison table of an experiment's trials, from MLflow."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sweepctl.results.compare import DEFAULT_TOLERANCE, compare_experiment, resolve_tracking_uri
from sweepctl.results.tables import FORMATS, render
from sweepctl.runtime import resolve_runtime
from sweepctl.spec.folder import load_experiment


def tolerance_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--tolerance", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_TOLERANCE,
        show_default=True,
        help="sweet spot: the fastest trial whose objective is within this fraction of the "
             "best (0.02 = 2% relative)")(function)


@click.command("compare")
@click.argument("experiment_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--metric", default=None, help="compare on this metric instead of the objective's")
@click.option("--goal", type=click.Choice(["minimize", "maximize"]), default=None,
              help="direction for --metric (default: the objective's)")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="markdown",
              show_default=True)
@tolerance_option
def command(experiment_dir: Path, metric: str | None, goal: str | None, output_format: str,
            tolerance: float) -> int:
    """One row per trial: the parameters that vary, the objective, train loss, runtime,
    throughput, % deltas vs the baseline, the best trial, the sweet spot and the verdict.

    MLflow: MLFLOW_TRACKING_URI, else experiments/defaults.yaml.
    """
    experiment = load_experiment(experiment_dir)
    runtime = resolve_runtime(experiment.path, experiment.runtime)
    uri = resolve_tracking_uri(experiment.path, runtime, os.environ)
    comparison = compare_experiment(experiment, uri, runtime.kubernetes.image, metric=metric,
                                    goal=goal, tolerance=tolerance)
    click.echo(render(comparison, output_format), nl=False)
    return 0
