"""`sweepctl new NAME`: scaffold an experiment folder that validates as written."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sweepctl.spec.scaffold import scaffold


def _schemas_dir(start: Path) -> Path | None:
    """The repo's schemas/ (for the editor's schema line), looked up from ``start`` upwards."""
    here = Path(os.path.abspath(start))
    for folder in (here, *here.parents):
        if (folder / "schemas" / "experiment.schema.json").is_file():
            return folder / "schemas"
    return None


@click.command("new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
              default=Path("experiments"), show_default=True,
              help="where experiment folders live")
@click.option("--owner", default="you@example.com", show_default=True,
              help="who owns the experiment (experiment.yaml `owner`)")
def command(name: str, parent: Path, owner: str) -> int:
    """Create experiments/NAME/ with commented experiment, baseline, sweep, checklist, notes.

    NAME is a lowercase RFC 1123 label of at most 40 characters (lora-rank-sweep).
    """
    folder = scaffold(parent, name, owner=owner, schemas_dir=_schemas_dir(parent))
    click.echo(f"created {folder}/ (experiment.yaml baseline.yaml sweep.yaml checklist.yaml "
               "notes.md)")
    click.echo(f"next: edit the files, then `sweepctl validate {folder}`")
    return 0
