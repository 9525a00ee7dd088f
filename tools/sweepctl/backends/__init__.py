"""Where trials run: Kubernetes Jobs (``kubernetes``) or local processes (``local``).

Both backends speak the same small vocabulary so that ``launch`` and ``status`` never
care which one they talk to: what is already there (``Observed``), and what happened
to each trial that was asked to start (``TrialResult``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    LAUNCHED = "launched"          # created now (or would be, with --dry-run)
    REUSED = "reused"              # a FINISHED MLflow run has this trial id: nothing to do
    RUNNING = "already running"    # a Job / process for this trial already exists
    CHANGED = "changed"            # a Job with this name exists with another spec: not touched
    FAILED = "failed"              # could not be launched (or, locally, the trial failed)
    HELD = "held"                  # not started: budget.max_failed_trials already reached


@dataclass(frozen=True)
class TrialResult:
    trial_id: str
    name: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Observed:
    """A trial the backend already knows about (a Job, or a local process/log)."""

    trial_id: str
    name: str
    phase: str          # pending | suspended | running | succeeded | failed
    spec_hash: str | None = None
    detail: str = ""


Progress = Callable[[TrialResult], None]
