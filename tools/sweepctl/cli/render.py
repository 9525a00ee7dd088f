"""`sweepctl render EXP [--output DIR]`: the trials as a YAML stream for `kubectl apply -f -`."""

from __future__ import annotations

from pathlib import Path

import click

from sweepctl.cli.options import workspace_for


@click.command("render")
@click.argument("experiment", metavar="EXPERIMENT")
@click.option("--output", "output", type=click.Path(file_okay=False, path_type=Path),
              help="write one <trial>.yaml per trial here instead of the stream on stdout")
@click.option("--git-sha", help="commit recorded on the Jobs and runs (default: HEAD)")
@click.option("--pr", help="pull request number recorded on the Jobs and runs")
@click.option("--parent-run-id", help="the sweep's MLflow parent run (launch sets it)")
@click.option("--suspend", is_flag=True, help="create the Jobs suspended (queue-less max_parallel)")
def command(experiment: str, output: Path | None, git_sha: str | None, pr: str | None,
            parent_run_id: str | None, suspend: bool) -> int:
    """Render each trial of EXPERIMENT_DIR as a ConfigMap and a batch/v1 Job.

    Nothing is sent to a cluster or to MLflow. The MLflow URI is MLFLOW_TRACKING_URI,
    else mlflow.tracking_uri of experiments/defaults.yaml.
    """
    from sweepctl.clients.gitrepo import head_sha
    from sweepctl.render.kubernetes import render_stream, render_trial

    # the Jobs' pods log to the shared server: the kubernetes backend's rule
    workspace = workspace_for("kubernetes")
    resolved = workspace.resolve(workspace.load(workspace.locate(experiment)))
    tracking_uri = resolved.require_tracking_uri()
    if git_sha is None:
        git_sha = head_sha(resolved.path)  # None outside a git checkout
    streams: dict[str, str] = {}
    for trial in resolved.trials:
        objects = render_trial(resolved.experiment, trial, resolved.runtime.kubernetes,
                               git_sha=git_sha, pr=pr, spec_hash=resolved.spec_hash,
                               parent_run_id=parent_run_id,
                               tracking_uri=tracking_uri, suspend=suspend)
        streams[trial.name] = render_stream(objects)
    if output is None:
        click.echo("".join(streams.values()), nl=False)
        return 0
    output.mkdir(parents=True, exist_ok=True)
    for name, text in streams.items():
        (output / f"{name}.yaml").write_text(text, encoding="utf-8")
    click.echo(f"{len(streams)} trial(s) of {resolved.name} rendered into {output}", err=True)
    return 0
