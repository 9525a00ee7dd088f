"""The CLI's contract with users: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from sweepctl.cli import main as cli_main
from sweepctl.errors import SpecError, SweepctlError


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sweepctl", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for name in ("validate", "new", "plan", "render", "launch", "status", "compare", "report",
                 "history", "promote"):
        if cli_main.LazyGroup._available(name):
            assert name in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (SweepctlError("the cluster said no"), 1, "sweepctl: error: the cluster said no"),
        (SpecError("bad", "x/experiment.yaml", 3, 4, "rule-x"),
         1, "x/experiment.yaml:3:4: error: bad [rule-x]"),
        (RuntimeError("boom"), 3, "internal error: RuntimeError: boom"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_errors_map_to_exit_codes(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], error: BaseException,
                                  code: int, text: str) -> None:
    @click.command("explode")
    def explode() -> None:
        raise error

    monkeypatch.setitem(cli_main.COMMANDS, "explode", f"{__name__}:EXPLODE")
    monkeypatch.setattr(sys.modules[__name__], "EXPLODE", explode, raising=False)
    assert cli_main.main(["explode"]) == code
    err = capsys.readouterr().err
    assert text in err
    assert "Traceback" not in err


EXPLODE: click.Command | None = None


@pytest.mark.parametrize("command", ["compare", "report"])
def test_tolerance_must_be_a_fraction(tmp_path: Path, command: str) -> None:
    result = run(command, str(tmp_path), "--tolerance", "2")
    assert result.returncode == 2
    assert "--tolerance" in result.stderr and "Traceback" not in result.stderr
