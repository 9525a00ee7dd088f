"""When a trial's runtime can be trusted as its cost, and a sweet spot that is not noise.

Issue 13 item 3: two local trials sharing 2 CPU cores made the same trial take 0.2 s
alone and 17-32 s paired, and compare called the lone one "sweet spot, -99.2% runtime".
A wall-clock runtime is a cost only when the trial had its machine to itself, and a
saving is only a saving when it is larger than what reruns of the same trial differ by.

Decisions:

* Contention: two runs contend when their MLflow ``[start_time, end_time)`` intervals
  overlap on the same host. The host is the run's ``sweepctl.host`` tag; a run without
  it takes ``default_host`` (the local backend: every trial ran on this machine), or is
  never called contended when that is None (Kubernetes: one pod per GPU, other nodes).
  A run with no end yet (still running) is open-ended.
* The sweet spot is called on runtime only when the best trial and the candidate were
  both measured alone, and the candidate saves more than ``noise`` (relative to the
  best's runtime). Otherwise the best trial is its own sweet spot and ``note`` says why,
  for the table to print under the sweet-spot line.

Pure functions over the comparison's rows and the runs; compare calls them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # compare is meant to call this module: importing it at run time would be circular
    from sweepctl.clients.mlflow_store import RunRecord
    from sweepctl.results.compare import Row

TAG_HOST = "sweepctl.host"
# Reruns of one tiny-model trial on an idle laptop differ by a few percent; 10% keeps
# such jitter from becoming a "sweet spot" while a real saving (rank 16 -> 8) passes.
NOISE = 0.10
CONTENTION_NOTE = "runtimes measured under contention"


@dataclass(frozen=True)
class SweetSpot:
    row: Row | None            # the trial to call the sweet spot (the best when no saving)
    note: str | None = None    # why runtime could not decide, for the table; None if clean
    saving_pct: float | None = None  # the candidate's runtime saving vs the best, percent


def _interval(run: RunRecord) -> tuple[float, float] | None:
    if run.start_time is None:
        return None
    end = float("inf") if run.end_time is None else float(run.end_time)
    return float(run.start_time), end


def contended_runs(runs: Sequence[RunRecord],
                   default_host: str | None = None) -> frozenset[str]:
    """Ids of the runs whose time interval overlapped another run's on the same host."""
    by_host: dict[str, list[tuple[float, float, str]]] = {}
    for run in runs:
        host = run.tags.get(TAG_HOST) or default_host
        interval = _interval(run)
        if host is None or interval is None:
            continue
        by_host.setdefault(host, []).append((*interval, run.run_id))
    found: set[str] = set()
    for spans in by_host.values():
        spans.sort()
        reach, owner = float("-inf"), ""
        for start, end, run_id in spans:
            # sorted by start: a run overlaps an earlier one iff it starts before the
            # furthest end seen so far (touching ends are sequential, not overlapping)
            if start < reach:
                found.update((run_id, owner))
            if end > reach:
                reach, owner = end, run_id
    return frozenset(found)


def _measured_alone(row: Row, contended: Collection[str]) -> bool:
    return not any(run_id in contended for run_id in row.run_ids)


def contention_note(rows: Sequence[Row], contended: Collection[str]) -> str | None:
    """``runtimes measured under contention (2 of 4 trials ...)``, or None when none was."""
    swept = [row for row in rows if row.in_sweep and row.run_ids]
    shared = [row for row in swept if not _measured_alone(row, contended)]
    if not shared:
        return None
    return (f"{CONTENTION_NOTE} ({len(shared)} of {len(swept)} trials ran beside another "
            "on the same host): runtime deltas are not costs; rerun with max_parallel: 1")


def robust_sweet_spot(rows: Sequence[Row], best: Row | None, tolerance: float,
                      contended: Collection[str], noise: float = NOISE) -> SweetSpot:
    """The sweet spot when runtime can call it, else the best trial with the reason."""
    from sweepctl.results.compare import pick_sweet_spot

    note = contention_note(rows, contended)
    if best is None or best.objective is None:
        return SweetSpot(None, note)
    if best.runtime is None or not _measured_alone(best, contended):
        return SweetSpot(best, note)
    alone = [row for row in rows if _measured_alone(row, contended)]
    candidate = pick_sweet_spot(alone, best, tolerance)
    if candidate is None or candidate is best or candidate.runtime is None:
        return SweetSpot(best, note)
    saving = (best.runtime - candidate.runtime) / best.runtime if best.runtime else 0.0
    if saving <= noise:
        within = (f"the fastest close trial ({candidate.label}) saves {saving:.0%} of the "
                  f"best's runtime, within the {noise:.0%} noise: no sweet spot apart from "
                  "the best")
        return SweetSpot(best, f"{note}; {within}" if note else within, saving * 100.0)
    return SweetSpot(candidate, note, saving * 100.0)
