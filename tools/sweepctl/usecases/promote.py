"""`sweepctl promote EXP [--trial NAME] --to NEW`: the next experiment from a result.

Which trial: ``--trial`` names one (its slug, name or id), else the comparison's best.
Where it came from: the trial's run in MLflow, when MLflow has one; with ``--trial`` an
unreachable MLflow still promotes (the notes then name no run), without it there is no
best to take, so it is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweepctl.errors import MlflowError, UsageError
from sweepctl.results.compare import Comparison, Row
from sweepctl.spec.promote import Source, find_trial, promote
from sweepctl.sweep.trial import Trial
from sweepctl.usecases.adaptive import with_proposals
from sweepctl.usecases.compare import compare
from sweepctl.workspace import ResolvedExperiment, Workspace


@dataclass(frozen=True)
class Promoted:
    folder: Path
    trial: Trial
    origin: Source
    note: str | None = None       # why the notes name no run (MLflow unreachable)


def _row_of(comparison: Comparison, trial: Trial) -> Row | None:
    return next((row for row in comparison.rows
                 if row.in_sweep and trial.trial_id in row.trial_ids), None)


def _origin(row: Row | None, uri: str | None) -> Source:
    if row is None or not row.run_ids:
        return Source(tracking_uri=uri)
    run_id = row.finished_run_ids[0] if row.finished_run_ids else row.run_ids[0]
    return Source(run_id, row.experiment_id, uri)


def promote_trial(workspace: Workspace, resolved: ResolvedExperiment, new_name: str,
                  trial_name: str | None = None) -> Promoted:
    """Scaffold ``experiments/<new_name>/`` from a trial of ``resolved``."""
    comparison: Comparison | None = None
    note = None
    try:
        comparison = compare(workspace, resolved)
        # tpe: the trials proposed so far (compare's rows), not only expand's round 1
        resolved = with_proposals(resolved,
                                  workspace.run_index(resolved.require_tracking_uri()))
    except (MlflowError, UsageError) as exc:
        if trial_name is None:
            raise UsageError(f"no finished trial to promote yet ({exc}); "
                             "name one with --trial") from exc
        note = f"MLflow not read ({exc}): the notes name no run"
    if trial_name is None:
        best = comparison.best if comparison is not None else None
        if best is None:
            raise UsageError("no finished trial to promote yet; name one with --trial")
        trial_name = best.label
    trial = find_trial(resolved.trials, trial_name)
    row = _row_of(comparison, trial) if comparison is not None else None
    origin = _origin(row, resolved.tracking_uri) if comparison is not None else Source()
    folder = promote(resolved.path.parent, resolved.experiment, trial, new_name, origin,
                     schemas_dir=resolved.root / "schemas")
    return Promoted(folder, trial, origin, note)
