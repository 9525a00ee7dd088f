"""`sweepctl validate [PATH...]`: every finding from every file, then one exit status."""

from __future__ import annotations

from pathlib import Path

import click

from sweepctl.errors import UsageError
from sweepctl.findings import render_json, render_text
from sweepctl.spec.validate import validate_paths


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="text: one line per finding; json: the same as data")
@click.option("--strict", is_flag=True, help="treat warnings as errors")
def command(paths: tuple[Path, ...], output_format: str, strict: bool) -> int:
    """Check experiment folders against the schemas and the rules (exit 0 valid, 1 invalid).

    PATHS may be experiments/ (the default), experiment folders, or files in them
    (what pre-commit passes).
    """
    if not paths and not Path("experiments").is_dir():
        # run from the wrong directory (a CI step, a hook in a sub-folder), validating nothing
        # and passing would wave every experiment through
        raise UsageError(f"no experiments/ folder in {Path.cwd()}; run from the repository "
                         "root or name the experiment folders to check")
    result = validate_paths(list(paths) or [Path("experiments")])
    if output_format == "json":
        click.echo(render_json(result.findings, result.checked_folders))
    else:
        text = render_text(result.findings)
        if text:
            click.echo(text)
        if result.ignored:
            # hidden, not gone: a reviewer should know the experiment silenced something
            click.echo(f"{len(result.ignored)} warning(s) acknowledged by warnings.ignore")
    failed = bool(result.findings.errors) or (strict and bool(result.findings.warnings))
    return 1 if failed else 0
