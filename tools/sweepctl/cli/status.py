"""`sweepctl status EXP`: one table joining git, the backend and MLflow."""

from __future__ import annotations

import click

from sweepctl.cli.options import backend_option, backend_settings, chosen_backend, workspace_for
from sweepctl.usecases.status import status


@click.command("status")
@click.argument("experiment", metavar="EXPERIMENT")
@backend_option
def command(experiment: str, backend: str | None) -> int:
    """Per trial: its Job or local process, its newest MLflow run and objective value.

    EXPERIMENT is an experiment folder, or its bare name under experiments/.
    """
    from rich.console import Console
    from rich.table import Table

    from sweepctl.runtime import repo_root

    backend = chosen_backend(backend)
    workspace = workspace_for(backend)
    folder = workspace.locate(experiment)
    report = status(folder, backend=backend, tracking_uri=workspace.env_tracking_uri,
                    settings=backend_settings(repo_root(folder) / ".sweepctl"),
                    workspace=workspace)
    table = Table(title=f"{report.experiment} ({backend})")
    # the name (which ends with the trial id) is what kubectl and the MLflow UI show
    table.add_column("trial", no_wrap=True)
    table.add_column("params", overflow="fold")
    table.add_column(backend, no_wrap=True)
    table.add_column("mlflow", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column(report.metric, justify="right", no_wrap=True)
    for row in report.rows:
        value = "-" if row.objective is None else f"{row.objective:.4g}"
        table.add_row(row.name, row.params, row.backend, row.run_status, str(row.attempts),
                      value)
    console = Console(width=max(Console().width, 120))  # CI logs are not 80 columns
    console.print(table)
    console.print(f"{report.count('FINISHED')} of {len(report.rows)} trials finished",
                  highlight=False)
    return 0


