"""Entry point: a click group that imports each command only when it runs.

Lazy loading keeps `sweepctl validate` (the pre-commit hook) free of mlflow,
kubernetes and pandas. Exit codes: 0 ok, 1 findings or failed work, 2 usage,
3 internal error, 130 interrupted.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from sweepctl import __version__
from sweepctl.errors import SweepctlError, UsageError

# command name -> "module:attribute"; each module holds one click command
COMMANDS: dict[str, str] = {
    "validate": "sweepctl.cli.validate:command",
    "new": "sweepctl.cli.new:command",
    "plan": "sweepctl.cli.plan:command",
    "render": "sweepctl.cli.render:command",
    "launch": "sweepctl.cli.launch:command",
    "status": "sweepctl.cli.status:command",
    "compare": "sweepctl.cli.compare:command",
    "report": "sweepctl.cli.report:command",
    "history": "sweepctl.cli.history:command",
    "promote": "sweepctl.cli.promote:command",
    "cancel": "sweepctl.cli.cancel:command",
}

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command: click.Command = getattr(module, attribute)
        return command

    @staticmethod
    def _available(name: str) -> bool:
        module_name = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sweepctl")
def cli() -> None:
    """GitOps for LLM fine-tuning experiments.

    An experiment is a folder of YAML under experiments/. Validate it, plan it,
    launch it on Kubernetes (or locally), compare the results from MLflow.
    """


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # mlflow logs store migrations at INFO on every first use of a SQLite file; our output
    # is tables and findings. A user's own MLFLOW_LOGGING_LEVEL still wins.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # nor "View run at <url>" lines on stdout (a JSON output stays JSON) and download
    # progress bars on stderr (the run index kept in MLflow is read every command)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        result: Any = cli.main(args=args, prog_name="sweepctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.Abort as exc:
        # click turns KeyboardInterrupt (and the launcher's SIGHUP) into Abort; the cause
        # names the trials a launch stopped
        cause = str(exc.__cause__ or "")
        click.echo(f"interrupted: {cause}" if cause else "interrupted", err=True)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        click.echo(f"sweepctl: error: {exc}", err=True)
        return EXIT_USAGE
    except SweepctlError as exc:
        click.echo(f"sweepctl: error: {exc}", err=True)
        return EXIT_FINDINGS
    except KeyboardInterrupt as exc:
        click.echo(f"interrupted: {exc}" if str(exc) else "interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FINDINGS
    except Exception as exc:  # the last line of defence: never a bare traceback
        if os.environ.get("SWEEPCTL_DEBUG"):
            traceback.print_exc()
        click.echo(f"sweepctl: internal error: {type(exc).__name__}: {exc}\n"
                   "(set SWEEPCTL_DEBUG=1 for the traceback, and please report it)", err=True)
        return EXIT_INTERNAL
    return int(result or 0)


def entry() -> None:
    raise SystemExit(main())
