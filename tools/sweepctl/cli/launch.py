"""`sweepctl launch`: reconcile, with a progress bar, a summary table and an honest exit status."""

from __future__ import annotations

import os
from typing import Any

import click

from sweepctl.backends import Outcome, TrialResult
from sweepctl.cli.options import (
    backend_option,
    backend_settings,
    chosen_backend,
    experiment_folders,
    full_scan_option,
    workspace_for,
)
from sweepctl.usecases.launch import LaunchOptions, LaunchReport, changed_since, launch

COLUMNS = (Outcome.LAUNCHED, Outcome.REUSED, Outcome.RUNNING, Outcome.CHANGED, Outcome.FAILED,
           Outcome.HELD, Outcome.GAVE_UP)


class _Bar:
    """rich progress: one task per experiment, advanced as each trial is decided."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task: Any = None

    def start(self, experiment: str, total: int) -> None:
        self.task = self.progress.add_task(experiment, total=total)

    def started(self, trial: str) -> None:
        return None  # the bar counts decided trials

    def advance(self, result: TrialResult) -> None:
        if self.task is not None:
            self.progress.advance(self.task)


class _Lines:
    """Plain lines for a log (stdout is not a terminal): rich's progress bar is transient
    and leaves nothing in a CI log, so each experiment says when it starts and each trial
    when it is decided, starts and ends (a local trial's process is waited for)."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.experiment = ""
        self.total = 0
        self.done = 0

    def _print(self, text: str) -> None:
        # names come from YAML and MLflow: never markup, never cut
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def start(self, experiment: str, total: int) -> None:
        self.experiment, self.total, self.done = experiment, total, 0
        self._print(f"{experiment}: {total} trial(s)")

    def started(self, trial: str) -> None:
        self._print(f"{self.experiment} {trial}: started")

    def advance(self, result: TrialResult) -> None:
        self.done += 1
        detail = f" ({result.detail})" if result.detail else ""
        self._print(f"{self.experiment} [{self.done}/{self.total}] {result.name}: "
                    f"{result.outcome.value}{detail}")


def _print_table(table: Any, report: LaunchReport, console: Any) -> None:
    """The table when it fits the console whole, else one uncut line per experiment (a
    table too wide for its console would crop the counts or the names)."""
    # each column: its minimum, one space of padding either side and a border
    needed = sum((column.min_width or 1) + 3 for column in table.columns) + 1
    if needed <= console.width:
        console.print(table)
        return
    console.print(str(table.title), highlight=False, markup=False)
    for entry in report.experiments:
        counts = "refused" if entry.refused else ", ".join(
            f"{o.value} {entry.count(o)}" for o in COLUMNS)
        console.print(f"  {entry.name}: {counts}", highlight=False, markup=False,
                      soft_wrap=True)


def print_report(report: LaunchReport, console: Any) -> None:
    from rich.table import Table

    title = f"launch ({report.backend}{', dry run' if report.dry_run else ''})"
    table = Table(title=title)
    # names are identifiers a reader greps for: never cut, never wrapped
    longest = max((len(entry.name) for entry in report.experiments), default=10)
    table.add_column("experiment", no_wrap=True, overflow="fold", min_width=longest)
    for outcome in COLUMNS:
        # a count needs its header's longest word ("already running" may wrap)
        table.add_column(outcome.value, justify="right",
                         min_width=max(len(word) for word in outcome.value.split()))
    for entry in report.experiments:
        if entry.refused:
            table.add_row(entry.name, *["-"] * len(COLUMNS))
        else:
            table.add_row(entry.name, *[str(entry.count(o)) for o in COLUMNS])
    _print_table(table, report, console)
    for entry in report.refused:
        console.print(f"[bold red]refused[/] {entry.name}:", highlight=False)
        for reason in entry.refused:
            console.print(f"  {reason}", highlight=False, markup=False, soft_wrap=True)
    for result in report.pruned:
        console.print(f"prune: {result.name}: {result.outcome.value}: {result.detail}",
                      highlight=False, markup=False, soft_wrap=True)
    missing = report.not_launched
    if missing:
        console.print(f"[bold red]{len(missing)} trial(s) not launched:[/]", highlight=False)
        for result in missing:
            # one line per trial, never wrapped: CI logs are grepped for the names
            console.print(f"  {result.name}: {result.outcome.value}: {result.detail}",
                          highlight=False, markup=False, soft_wrap=True)
    for note in report.index_notes:
        console.print(f"run index: {note}", highlight=False, markup=False, soft_wrap=True)


@click.command("launch")
@click.argument("experiments", nargs=-1)
@backend_option
@click.option("--changed-since", "changed_since_rev", metavar="REV",
              help="only experiments whose files differ from git revision REV")
@click.option("--dry-run", is_flag=True,
              help="create nothing (Kubernetes: server-side dry run; no MLflow run made "
              "or changed; the run index is still refreshed and kept)")
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Kubernetes requests in flight")
@full_scan_option
def command(experiments: tuple[str, ...], backend: str | None, changed_since_rev: str | None,
            dry_run: bool, concurrency: int, full_scan: bool) -> int:
    """Launch the trials that have neither a FINISHED MLflow run nor a Job/process.

    EXPERIMENTS are experiment folders or bare names (default: every one under
    experiments/). Safe to re-run: finished trials are reused and existing Jobs are left
    alone. Exit 1 names every trial that did not launch.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sweepctl.clients.gitrepo import head_sha
    from sweepctl.runtime import repo_root

    backend = chosen_backend(backend)
    workspace = workspace_for(backend, full_scan=full_scan)
    folders = experiment_folders(workspace, experiments)
    if changed_since_rev:
        folders = changed_since(folders, changed_since_rev)
    console = Console(stderr=False)
    if not folders:
        console.print("nothing to launch")
        return 0
    # git-ignored: local runs, logs and the SQLite MLflow store, beside experiments/
    state_dir = repo_root(folders[0]) / ".sweepctl"
    settings = backend_settings(state_dir, dry_run=dry_run, concurrency=concurrency)
    options = LaunchOptions(
        backend=backend, dry_run=dry_run, tracking_uri=workspace.env_tracking_uri,
        git_sha=head_sha(folders[0]), pr=os.environ.get("SWEEPCTL_PR"),
        kube_concurrency=concurrency, state_dir=state_dir, env=settings.env,
        prune=not experiments and not changed_since_rev)  # a full reconcile only
    if not console.is_terminal:
        report = launch(folders, options, _Lines(console), workspace)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:
            report = launch(folders, options, _Bar(progress), workspace)
    print_report(report, console)
    return 0 if report.ok else 1
