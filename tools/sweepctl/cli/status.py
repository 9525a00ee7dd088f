"""`sweepctl status EXP`: one table joining git, the backend and MLflow."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sweepctl.launch import BACKENDS
from sweepctl.status import status


@click.command("status")
@click.argument("experiment", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="default: as for launch (SWEEPCTL_BACKEND, KUBECONFIG/in-cluster, else local)")
def command(experiment: Path, backend: str | None) -> int:
    """Per trial: its Job or local process, its newest MLflow run and objective value."""
    from rich.console import Console
    from rich.table import Table

    from sweepctl.runtime import default_backend, repo_root

    backend = backend or default_backend(os.environ)
    kube_configuration = None
    if backend == "kubernetes":
        from sweepctl.backends.kubernetes import load_configuration

        kubeconfig = os.environ.get("KUBECONFIG")
        kube_configuration = load_configuration(kubeconfig.split(os.pathsep)[0]
                                                if kubeconfig else None)
    report = status(experiment, backend=backend,
                    tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
                    kube_configuration=kube_configuration,
                    state_dir=repo_root(experiment) / ".sweepctl")
    table = Table(title=f"{report.experiment} ({backend})")
    # the name (which ends with the trial id) is what kubectl and the MLflow UI show
    table.add_column("trial", no_wrap=True)
    table.add_column("params", overflow="fold")
    table.add_column(backend, no_wrap=True)
    table.add_column("mlflow", no_wrap=True)
    table.add_column(report.metric, justify="right", no_wrap=True)
    for row in report.rows:
        value = "-" if row.objective is None else f"{row.objective:.4g}"
        table.add_row(row.name, row.params, row.backend, row.run_status, value)
    console = Console(width=max(Console().width, 120))  # CI logs are not 80 columns
    console.print(table)
    console.print(f"{report.count('FINISHED')} of {len(report.rows)} trials finished",
                  highlight=False)
    return 0
