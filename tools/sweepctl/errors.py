"""sweepctl's own exceptions: the only ones the CLI turns into messages.

Third-party exceptions are caught at the module that talks to the external system
and re-raised as one of these (``raise ... from e``), so a user never sees a
traceback for bad input or an unreachable server.
"""

from __future__ import annotations

from pathlib import Path


class SweepctlError(Exception):
    """A failure the user can act on; the CLI prints it and exits 1."""


class UsageError(SweepctlError):
    """The command line asks for something impossible (exit 2)."""


class SpecError(SweepctlError):
    """A problem in an experiment file, with its position."""

    def __init__(self, message: str, path: Path | str, line: int = 1, col: int = 1,
                 rule: str = "spec") -> None:
        super().__init__(message)
        self.path = Path(path)
        self.line = line
        self.col = col
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: error: {self.args[0]} [{self.rule}]"


class ExternalError(SweepctlError):
    """An external system (MLflow, Kubernetes, GitHub, git) failed or is unreachable."""

    system = "external"

    def __str__(self) -> str:
        return f"{self.system}: {self.args[0]}"


class MlflowError(ExternalError):
    system = "mlflow"


class KubernetesError(ExternalError):
    system = "kubernetes"


class GitHubError(ExternalError):
    system = "github"


class GitError(ExternalError):
    system = "git"
