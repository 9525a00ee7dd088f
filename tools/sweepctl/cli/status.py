"""`sweepctl status EXP`: one table joining git, the backend and MLflow."""

from __future__ import annotations

import click

from sweepctl.cli.options import backend_option, backend_settings, chosen_backend, workspace_for
from sweepctl.usecases.status import LiveProgress, status
from sweepctl.values import format_value


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_text(progress: LiveProgress | None) -> str:
    """A running trial's "step 40, epoch 0.5, loss 1.23, ETA 2m10s"; "-" otherwise."""
    if progress is None:
        return "-"
    parts = [f"step {'-' if progress.step is None else progress.step}"]
    if progress.epoch is not None:
        parts.append(f"epoch {format_value(round(progress.epoch, 2))}")
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4g}")
    parts.append(f"ETA {_duration(progress.eta_seconds)}")
    return ", ".join(parts)


@click.command("status")
@click.argument("experiment", metavar="EXPERIMENT")
@backend_option
def command(experiment: str, backend: str | None) -> int:
    """Per trial: its Job or local process, its newest MLflow run and objective value,
    and for a running trial its step, epoch, loss and ETA.

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
    table.add_column("progress", no_wrap=True)
    for row in report.rows:
        value = "-" if row.objective is None else f"{row.objective:.4g}"
        table.add_row(row.name, row.params, row.backend, row.run_status, str(row.attempts),
                      value, progress_text(row.progress))
    console = Console(width=max(Console().width, 120))  # CI logs are not 80 columns
    console.print(table)
    console.print(f"{report.count('FINISHED')} of {len(report.rows)} trials finished",
                  highlight=False)
    return 0


