"""`sweepctl cancel EXP [--trial NAME ...]`: stop queued and running trials."""

from __future__ import annotations

import click

from sweepctl.cli.options import backend_option, backend_settings, chosen_backend, workspace_for
from sweepctl.usecases.cancel import cancel


@click.command("cancel")
@click.argument("experiment", metavar="EXPERIMENT")
@click.option("--trial", "trials", multiple=True, metavar="NAME",
              help="only this trial (its name or id; repeatable)")
@backend_option
def command(experiment: str, trials: tuple[str, ...], backend: str | None) -> int:
    """Stop the experiment's queued and running trials; their runs end KILLED.

    EXPERIMENT is an experiment folder, or its bare name under experiments/. Kubernetes:
    the trials' Jobs are deleted (their pods, ConfigMap and Service go with them); local:
    each trial's process group gets SIGTERM. The next `sweepctl launch` starts them again
    while git still has them: remove them from the sweep to stop them for good.
    """
    from sweepctl.runtime import repo_root

    backend = chosen_backend(backend)
    workspace = workspace_for(backend)
    folder = workspace.locate(experiment)
    report = cancel(folder, backend=backend, trials=trials,
                    tracking_uri=workspace.env_tracking_uri,
                    settings=backend_settings(repo_root(folder) / ".sweepctl"),
                    workspace=workspace)
    failed = 0
    for result in report.stopped:
        failed += result.outcome.value != "cancelled"
        click.echo(f"{result.name}: {result.outcome.value}: {result.detail}")
    for name, run_id in report.ended_runs:
        click.echo(f"{name}: run {run_id} was still RUNNING: ended KILLED (cancelled)")
    if not report.stopped and not report.ended_runs:
        click.echo(f"{report.experiment}: nothing queued or running to cancel")
    else:
        click.echo(f"{len(report.stopped) - failed} trial(s) of {report.experiment} "
                   "cancelled; `sweepctl launch` starts them again while git has them")
    return 1 if failed else 0
