"""`sweepctl promote EXP [--trial NAME] --to NEW`: scaffold the next experiment from a
trial's result (its config becomes the new baseline)."""

from __future__ import annotations

import click

from sweepctl.cli.options import workspace_for


@click.command("promote")
@click.argument("experiment", metavar="EXPERIMENT")
@click.option("--trial", "trial_name", metavar="NAME", default=None,
              help="the trial to promote: its slug (r16-a32), name or id "
              "(default: the best finished trial)")
@click.option("--to", "new_name", metavar="NEW", required=True,
              help="the new experiment's name (a folder beside EXPERIMENT)")
def command(experiment: str, trial_name: str | None, new_name: str) -> int:
    """A new experiment whose baseline is a trial's config, notes linking back to it.

    EXPERIMENT is a folder or a bare name. The new sweep is a skeleton: edit it and the
    hypothesis, then tick parameter_space_defined.
    """
    from sweepctl.usecases.promote import promote_trial

    workspace = workspace_for(None)
    resolved = workspace.resolve(workspace.load(workspace.locate(experiment)))
    promoted = promote_trial(workspace, resolved, new_name, trial_name)
    if promoted.note:
        click.echo(f"note: {promoted.note}", err=True)
    run = f", run {promoted.origin.run_id}" if promoted.origin.run_id else ""
    click.echo(f"promoted {promoted.trial.slug} of {resolved.name}{run}")
    click.echo(f"created experiments/{promoted.folder.name}/ (edit sweep.yaml and the "
               "hypothesis, then tick parameter_space_defined)")
    return 0
