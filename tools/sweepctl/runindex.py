"""One MLflow run index per command: every sweepctl trial run, read in one paged scan.

A command that acts on 1,000 experiments must not ask MLflow 1,000 times: the index scans
sweepctl's trial runs (tag ``sweepctl.role = trial``) once across every MLflow experiment
of the tracking store, plus one scan of the sweeps' parent runs, and every use case
(launch, status, compare, report) reads from it.

One merge rule, here and nowhere else: per trial id, the newest FINISHED run wins, else
the newest run; the attempts are counted over all its runs. Reuse crosses MLflow
experiments: a FINISHED run of the same trial id in any scanned experiment is the same
work (the id hashes the resolved config, the image and the dataset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sweepctl.clients.index_cache import Snapshot
from sweepctl.clients.mlflow_store import (
    TAG_ATTEMPT,
    TAG_EXPERIMENT,
    TAG_TRIAL_ID,
    MlflowStore,
    RunRecord,
    experiment_filter,
    role_filter,
)

RUNNING_STATES = ("RUNNING", "SCHEDULED")


def _newest_first(runs: Iterable[RunRecord]) -> list[RunRecord]:
    # start_time ties (same millisecond) are broken by run id so the order never depends
    # on the page order MLflow returned
    return sorted(runs, key=lambda r: (r.start_time or 0, r.run_id), reverse=True)


def _attempts(run: RunRecord) -> int:
    try:
        return max(1, int(run.tags.get(TAG_ATTEMPT, "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class TrialRuns:
    """Every run of one trial id, newest first."""

    trial_id: str
    runs: tuple[RunRecord, ...]

    @property
    def finished(self) -> RunRecord | None:
        return next((r for r in self.runs if r.status == "FINISHED"), None)

    @property
    def latest(self) -> RunRecord:
        """The run that speaks for the trial: the newest FINISHED one, else the newest."""
        return self.finished or self.runs[0]

    @property
    def attempts(self) -> int:
        """How many times the trial was started, over all its runs (a resumed run counts
        its own restarts in the ``sweepctl.attempt`` tag)."""
        return sum(_attempts(r) for r in self.runs)


@dataclass
class RunIndex:
    """The trial runs of one tracking store, grouped by trial id and by experiment."""

    tracking_uri: str
    trials: dict[str, TrialRuns] = field(default_factory=dict)
    # (MLflow experiment id, sweepctl experiment) -> its trial runs: two repositories may
    # share a server and an experiment name, never an MLflow experiment
    by_experiment: dict[tuple[str, str], list[RunRecord]] = field(default_factory=dict)
    parents: dict[tuple[str, str], str] = field(default_factory=dict)  # same key -> parent run
    experiment_ids: dict[str, str] = field(default_factory=dict)  # MLflow name -> id
    with_parents: bool = False
    # how it was read: "scoped", "full" (every run) or "cached" (a snapshot + what changed)
    source: str = "full"
    runs_read: int = 0  # runs MLflow sent for it (the cost that grows with the store)
    # a cached index: the trial runs taken from the kept snapshot as they were, and how to
    # read runs again by id (run id -> MLflow experiment id), for ``confirm``
    unread: set[str] = field(default_factory=set)
    reread: Callable[[Mapping[str, str]], Mapping[str, RunRecord]] | None = None

    @classmethod
    def from_runs(cls, tracking_uri: str, runs: Iterable[RunRecord],
                  parents: Iterable[RunRecord] = (),
                  experiment_ids: Mapping[str, str] | None = None) -> RunIndex:
        grouped: dict[str, list[RunRecord]] = {}
        by_experiment: dict[tuple[str, str], list[RunRecord]] = {}
        for run in runs:
            if run.trial_id:
                grouped.setdefault(run.trial_id, []).append(run)
            name = run.tags.get(TAG_EXPERIMENT)
            if name:
                by_experiment.setdefault((run.experiment_id or "", name), []).append(run)
        index = cls(tracking_uri, experiment_ids=dict(experiment_ids or {}))
        index.trials = {tid: TrialRuns(tid, tuple(_newest_first(rs)))
                        for tid, rs in grouped.items()}
        index.by_experiment = {name: _newest_first(rs) for name, rs in by_experiment.items()}
        for run in _newest_first(parents):
            key = (run.experiment_id or "", run.tags.get(TAG_EXPERIMENT, ""))
            if key[1] and key not in index.parents:
                index.parents[key] = run.run_id
        return index

    def confirm(self, trial_ids: Iterable[str]) -> None:
        """Read again by run id the runs of these trial ids that came from the kept
        snapshot unread, so that what launch decides on is what MLflow says (tpe's later
        rounds: their ids are known only once the index is built). A run MLflow no longer
        has is dropped, a re-tagged one moves to its trial id. Nothing to do for an index
        read this command."""
        asked = [tid for tid in dict.fromkeys(trial_ids) if tid in self.trials]
        wanted = {run.run_id: run.experiment_id or "" for tid in asked
                  for run in self.trials[tid].runs if run.run_id in self.unread}
        if self.reread is None or not wanted:
            return
        fresh = self.reread(wanted)
        self.unread.difference_update(wanted)
        groups = {tid: [r for r in self.trials[tid].runs if r.run_id not in wanted]
                  for tid in asked}
        for run in fresh.values():
            if run.trial_id:
                if run.trial_id not in groups:
                    existing = self.trials.get(run.trial_id)
                    groups[run.trial_id] = list(existing.runs) if existing else []
                groups[run.trial_id].append(run)
        for tid, runs in groups.items():
            if runs:
                self.trials[tid] = TrialRuns(tid, tuple(_newest_first(runs)))
            else:
                del self.trials[tid]

    def get(self, trial_id: str) -> TrialRuns | None:
        return self.trials.get(trial_id)

    def latest(self, trial_id: str) -> RunRecord | None:
        found = self.trials.get(trial_id)
        return found.latest if found else None

    def finished(self, trial_id: str) -> RunRecord | None:
        found = self.trials.get(trial_id)
        return found.finished if found else None

    def finished_of(self, trial_ids: Iterable[str]) -> dict[str, RunRecord]:
        """trial id -> its FINISHED run, for those of ``trial_ids`` that have one."""
        out = {}
        for trial_id in trial_ids:
            run = self.finished(trial_id)
            if run is not None:
                out[trial_id] = run
        return out

    def failed_ids(self, trial_ids: Iterable[str]) -> frozenset[str]:
        """Those of ``trial_ids`` whose latest run FAILED (none of them FINISHED)."""
        return frozenset(t for t in trial_ids
                         if (run := self.latest(t)) is not None and run.status == "FAILED")

    def key(self, mlflow_experiment: str, experiment: str) -> tuple[str, str]:
        return (self.experiment_ids.get(mlflow_experiment, ""), experiment)

    def parent(self, mlflow_experiment: str, experiment: str) -> str | None:
        return self.parents.get(self.key(mlflow_experiment, experiment))

    def runs_of(self, mlflow_experiment: str, experiment: str) -> list[RunRecord]:
        """Every trial run of this sweepctl experiment in its MLflow experiment, newest
        first."""
        return list(self.by_experiment.get(self.key(mlflow_experiment, experiment), ()))

    def runs_for(self, mlflow_experiment: str, experiment: str,
                 trial_ids: Collection[str]) -> list[RunRecord]:
        """What compare and report join: the experiment's own runs, plus the FINISHED run
        of each of its trials that only another experiment ran (reuse)."""
        runs = self.runs_of(mlflow_experiment, experiment)
        have = {r.trial_id for r in runs}
        reused = [run for tid in trial_ids if tid not in have
                  and (run := self.finished(tid)) is not None]
        return [*runs, *reused]


@dataclass(frozen=True)
class Scope:
    """One experiment a scoped scan covers: its MLflow experiment, name and trial ids."""

    mlflow_experiment: str
    experiment: str
    trial_ids: tuple[str, ...]


# A command on a few trials (status, compare or report of one experiment) reads them by
# tag, a few small requests, instead of paging through every run of the store: with a
# year of history the full scan is ~100 pages of 1,000 runs, each costing MLflow's SQL
# store seconds. Both ways build the same index for the trials in scope.
SCOPED_MAX_TRIALS = 50


def scan_scoped(store: MlflowStore, scopes: Sequence[Scope], *,
                with_parents: bool = False) -> RunIndex:
    """The index for these experiments only: per experiment its own trial runs (one paged
    search in its MLflow experiment, plus its parent run), and per trial id every run of
    it in any MLflow experiment (reuse), one request each."""
    ids = store.experiment_ids()
    every = list(ids.values())
    runs: dict[str, RunRecord] = {}
    parents: list[RunRecord] = []
    for scope in scopes:
        own = ids.get(scope.mlflow_experiment)
        if own is not None:
            for run in store.search([own], experiment_filter(scope.experiment)):
                runs[run.run_id] = run
            if with_parents:
                parents += store.search([own], experiment_filter(scope.experiment, "sweep"))
        for trial_id in scope.trial_ids:
            for run in store.search(every, f"{role_filter('trial')} and "
                                           f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'"):
                runs[run.run_id] = run
    index = RunIndex.from_runs(store.tracking_uri, runs.values(), parents, ids)
    index.with_parents, index.source = with_parents, "scoped"
    index.runs_read = len(runs) + len(parents)
    return index


def scan(store: MlflowStore, *, with_parents: bool = False) -> RunIndex:
    """The index of every sweepctl trial run in the store: one request for the experiment
    ids (per 1,000 experiments), then one paged search (1,000 runs a page), plus one for
    the sweeps' parent runs. Every MLflow experiment is read, not only those the command's
    experiments log to: reuse by trial id must find a FINISHED run wherever it is (a new
    experiment gets its own MLflow experiment, and ``launch --changed-since`` names only
    it)."""
    ids = store.experiment_ids()
    runs = list(store.search(ids.values(), role_filter("trial"))) if ids else []
    parents = list(store.search(ids.values(), role_filter("sweep"))) \
        if ids and with_parents else []
    index = RunIndex.from_runs(store.tracking_uri, runs, parents, ids)
    index.with_parents, index.source = with_parents, "full"
    index.runs_read = len(runs) + len(parents)
    return index


# Every MLflow experiment's runs are all read again at least this often, each in its
# turn: what reading only what changed cannot see (a run deleted in MLflow, a tag set on
# a finished run of a trial no longer in git, a run restored or imported with old times,
# one whose pod's clock was hours off) is seen within it, and no refresh pays for a
# whole scan (after a full scan the turns are spread over the period in proportion to
# the experiments' runs: a refresh 15 minutes later reads ~1% of them).
REREAD_EVERY_MS = 24 * 3_600_000
# Runs started or ended up to this long before the last scan began are read again: the
# times are the pods' clocks, not ours.
CLOCK_SLACK_MS = 3_600_000
# A snapshot taken up to this long after ``now`` is still refreshed: the one kept in the
# tracking store is written by whichever machine ran the last command (a laptop's clock
# a few minutes ahead of the runner's must not cost the next run a full scan).
WRITER_SKEW_MS = 10 * 60_000


def scan_cached(store: MlflowStore, previous: Snapshot | None, *, now: int,
                scopes: Sequence[Scope] = ()) -> tuple[RunIndex, Snapshot]:
    """The index of every trial run and sweep parent, as ``scan`` would read them, from the
    last scan's snapshot plus what changed since: the runs started or ended since it was
    taken; every run of an MLflow experiment it did not know (new, or restored) and of
    those whose turn it is to be read whole (``due``); and, read again by run id, every
    run it holds that can still change (RUNNING, SCHEDULED) or that this command decides
    on (the ``scopes``, the experiments in git: every run of their trial ids, every run
    and the parent of the experiment itself, tpe's proposals included). A full scan when
    there is no usable snapshot, or every experiment is due. Returns the index and the
    snapshot to keep for the next command."""
    ids = store.experiment_ids()
    live = set(ids.values())
    before = store.runs_read
    whole = due(previous, live, now)
    cached_runs: Sequence[RunRecord]
    cached_parents: Sequence[RunRecord]
    if previous is None or whole is None:
        whole, cached_runs, cached_parents, since = live, (), (), now
    else:
        cached_runs, cached_parents = previous.runs, previous.parents
        since = previous.taken_at - CLOCK_SLACK_MS
    trial_ids = {trial_id for scope in scopes for trial_id in scope.trial_ids}
    own = {(ids.get(scope.mlflow_experiment), scope.experiment) for scope in scopes}

    def of_own(run: RunRecord) -> bool:
        return (run.experiment_id, run.tags.get(TAG_EXPERIMENT)) in own

    def decides(run: RunRecord) -> bool:
        return run.trial_id in trial_ids or of_own(run)

    full = whole == live
    runs, unread = _refreshed(store, _Refresh(live, whole, since, role_filter("trial"),
                                              full), cached_runs, decides)
    parents, _ = _refreshed(store, _Refresh(live, whole, since, role_filter("sweep"), full),
                            cached_parents, of_own)
    due_at = turns(runs.values(), live, now) if full or previous is None else {
        eid: now + REREAD_EVERY_MS if eid in whole else previous.due_at[eid]
        for eid in live}
    snapshot = Snapshot(store.tracking_uri, taken_at=now, runs=tuple(runs.values()),
                        parents=tuple(parents.values()), due_at=due_at)
    index = RunIndex.from_runs(store.tracking_uri, runs.values(), parents.values(), ids)
    index.with_parents, index.source = True, "full" if full else "cached"
    index.unread, index.reread = unread, store.runs_by_id
    index.runs_read = store.runs_read - before
    return index, snapshot


def due(previous: Snapshot | None, live: Collection[str], now: int) -> set[str] | None:
    """The MLflow experiments to read whole this time: those the snapshot does not know
    and those whose turn has come (``due_at``; one more than REREAD_EVERY_MS after the
    snapshot was taken is not believed). None: a full scan (no snapshot, one taken more
    than WRITER_SKEW_MS after ``now``, or every experiment it knows is due)."""
    if previous is None or now < previous.taken_at - WRITER_SKEW_MS:
        return None
    # the turns a writer up to WRITER_SKEW_MS ahead of the snapshot's clock set
    latest = previous.taken_at + REREAD_EVERY_MS + WRITER_SKEW_MS
    whole = {eid for eid in live
             if not now < previous.due_at.get(eid, now) <= latest}
    return None if set(previous.due_at) & set(live) <= whole else whole


def turns(runs: Iterable[RunRecord], experiment_ids: Collection[str], now: int
          ) -> dict[str, int]:
    """When each experiment is due to be read whole again after a full scan at ``now``:
    spread over the next REREAD_EVERY_MS in proportion to its runs (the last one a whole
    period later), so that each later refresh reads its share of them."""
    sizes = Counter(run.experiment_id for run in runs)
    # an empty experiment counts as one run: its read is a share of a request too
    total = sum(max(1, sizes[eid]) for eid in experiment_ids)
    out, read = {}, 0
    for eid in sorted(experiment_ids):
        read += max(1, sizes[eid])
        out[eid] = now + REREAD_EVERY_MS * read // total
    return out


@dataclass(frozen=True)
class _Refresh:
    live: set[str]        # the MLflow experiment ids not deleted
    whole: set[str]       # those read whole: every run of theirs is read
    since: int            # runs started or ended at or after this (ms) are read
    role: str             # the role filter (trial runs or sweep parents)
    full: bool            # every experiment is read whole: nothing else to ask


def _refreshed(store: MlflowStore, refresh: _Refresh, cached: Sequence[RunRecord],
               decides: Callable[[RunRecord], bool]
               ) -> tuple[dict[str, RunRecord], set[str]]:
    """run id -> run: the cached runs brought up to date (see scan_cached); and the ids of
    those taken from the snapshot as they were."""
    runs = {r.run_id: r for r in cached if r.experiment_id in refresh.live
            and r.experiment_id not in refresh.whole}
    changed: dict[str, RunRecord] = {}
    if refresh.whole:
        for run in store.search(refresh.whole, refresh.role):
            changed[run.run_id] = run
    if refresh.full:
        return changed, set()
    rest = refresh.live - refresh.whole
    for attribute in ("start_time", "end_time"):
        for run in store.search(rest, f"{refresh.role} and "
                                      f"attributes.{attribute} >= {refresh.since}"):
            changed[run.run_id] = run
    recheck = {run_id: run.experiment_id or "" for run_id, run in runs.items()
               if run_id not in changed and (run.status in RUNNING_STATES or decides(run))}
    now = store.runs_by_id(recheck)
    for run_id in recheck:  # one gone from the answer was deleted
        if run_id in now:
            runs[run_id] = now[run_id]
        else:
            del runs[run_id]
    unread = runs.keys() - recheck.keys() - changed.keys()
    runs.update(changed)
    return runs, unread
