"""The run index: one merge rule, one scan per command, reuse across MLflow experiments."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from mlflow_runs import copies, log_trial, result, trials_of
from sweepctl.backends import Outcome
from sweepctl.clients.index_cache import Snapshot
from sweepctl.clients.mlflow_store import MlflowStore, RunRecord
from sweepctl.keptindex import InFolder
from sweepctl.runindex import (
    REREAD_EVERY_MS,
    RunIndex,
    Scope,
    due,
    scan,
    scan_cached,
    turns,
)
from sweepctl.usecases.launch import LaunchOptions, launch
from sweepctl.usecases.plan import build_plans
from sweepctl.workspace import Workspace


def record(run_id: str, status: str, start: int, trial_id: str = "t1", experiment: str = "e",
           attempt: str | None = None, mlflow_id: str = "1") -> RunRecord:
    tags = {"sweepctl.experiment": experiment, "sweepctl.trial_id": trial_id}
    if attempt is not None:
        tags["sweepctl.attempt"] = attempt
    return RunRecord(run_id, status, trial_id, f"{experiment}-x", tags=tags, start_time=start,
                     experiment_id=mlflow_id)


def test_the_newest_finished_run_wins_and_attempts_are_counted() -> None:
    index = RunIndex.from_runs("sqlite:///x", [
        record("old-ok", "FINISHED", 1), record("new-failed", "FAILED", 3),
        record("mid-killed", "KILLED", 2, attempt="2"), record("other", "RUNNING", 5, "t2")],
        experiment_ids={"m": "1"})
    runs = index.get("t1")
    assert runs is not None
    assert [r.run_id for r in runs.runs] == ["new-failed", "mid-killed", "old-ok"]
    assert runs.latest.run_id == "old-ok"            # FINISHED wins over newer failures
    assert runs.attempts == 4                        # 1 + 2 (a resumed run) + 1
    assert index.latest("t2").run_id == "other"      # no FINISHED: the newest
    assert index.failed_ids(["t1", "t2", "t3"]) == frozenset()
    assert [r.run_id for r in index.runs_of("m", "e")] == ["other", "new-failed",
                                                          "mid-killed", "old-ok"]
    assert index.runs_of("another-mlflow-experiment", "e") == []


def test_a_failure_after_no_success_is_failed() -> None:
    index = RunIndex.from_runs("u", [record("a", "FAILED", 2), record("b", "KILLED", 1)])
    assert index.failed_ids(["t1"]) == {"t1"}


@pytest.mark.parametrize("count", [20, 40])
def test_a_launch_of_many_experiments_makes_one_scan(
        tmp_path: Path, mlflow_server: str, count: int) -> None:
    folders = copies(tmp_path, count)
    client = MlflowClient(mlflow_server)
    experiment, trials = trials_of(folders[0])
    log_trial(client, experiment, trials[0], metrics=result(0.4, 9.0))
    workspace = Workspace(env_tracking_uri=mlflow_server)
    report = launch(folders, LaunchOptions(backend="local", dry_run=True,
                                           tracking_uri=mlflow_server,
                                           state_dir=tmp_path / ".sweepctl"),
                    workspace=workspace)
    assert report.ok and len(report.experiments) == count
    # one paged search of trial runs and one of parent runs, whatever the count (the
    # session's server holds far fewer than 1,000 runs: one page each)
    assert workspace.mlflow_calls("search_runs") == 2
    assert workspace.mlflow_calls("search_experiments") == 1
    assert report.mlflow_requests == 3


def test_the_scopes_of_a_store_follow_every_experiment_resolved(tmp_path: Path) -> None:
    """What the index of a store covers is built once per experiment resolved, not per
    question (compare asks once per experiment), and never misses one resolved later."""
    first, second = copies(tmp_path, 2)
    workspace = Workspace(env_tracking_uri="http://127.0.0.1:1")
    one = workspace.resolve(workspace.load(first))
    scopes = workspace.scopes("http://127.0.0.1:1")
    assert [s.experiment for s in scopes] == [one.name]
    assert workspace.scopes("http://127.0.0.1:1") is scopes   # asked again: not rebuilt
    two = workspace.resolve(workspace.load(second))
    again = workspace.scopes("http://127.0.0.1:1")
    assert [(s.experiment, s.trial_ids) for s in again] == [
        (one.name, tuple(one.trial_ids)), (two.name, tuple(two.trial_ids))]
    assert workspace.scopes("http://elsewhere:1") == []


def test_a_command_on_a_few_trials_reads_them_by_tag_whatever_the_history(
        tmp_path: Path, mlflow_server: str) -> None:
    """status of one experiment must not page through a year of runs: its requests grow
    with its trials, not with the store, and it sees what the full scan would."""
    folder, = copies(tmp_path, 1)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    log_trial(client, experiment, trials[1], status="FAILED")
    log_trial(client, experiment, trials[1], metrics=result(0.4, 9.0))
    elsewhere = replace(experiment, mlflow_experiment=experiment.mlflow_experiment + "-b",
                        name="another-sweep")
    reused = log_trial(client, elsewhere, trials[2], metrics=result(0.3, 9.0))
    workspace = Workspace(env_tracking_uri=mlflow_server)
    resolved = workspace.resolve(workspace.load(folder))
    index = workspace.run_index(mlflow_server)
    # one search of its own runs, one per trial id: 1 + 3
    assert workspace.mlflow_calls("search_runs") == 4
    full = scan(workspace.store(mlflow_server))
    for trial_id in resolved.trial_ids:
        mine, everything = index.get(trial_id), full.get(trial_id)
        assert (mine and [r.run_id for r in mine.runs]) == (
            everything and [r.run_id for r in everything.runs])
    assert index.finished(trials[2].trial_id).run_id == reused
    assert index.get(trials[1].trial_id).attempts == 2


def test_reuse_crosses_mlflow_experiments(tmp_path: Path, mlflow_server: str) -> None:
    """The README's promise: the same work has the same id whichever experiment asks, so a
    new experiment (its own MLflow experiment) reuses a FINISHED run of another."""
    first, second = copies(tmp_path, 2)
    experiment, trials = trials_of(first)
    run_id = log_trial(MlflowClient(mlflow_server), experiment, trials[0],
                       metrics=result(0.4, 9.0))
    options = LaunchOptions(backend="local", dry_run=True, tracking_uri=mlflow_server,
                            state_dir=tmp_path / ".sweepctl")
    report = launch([second], options)  # launch --changed-since names only the new one
    outcomes = {r.trial_id: (r.outcome, r.detail) for r in report.experiments[0].results}
    assert outcomes[trials[0].trial_id] == (Outcome.REUSED, f"run {run_id}")
    [plan] = build_plans(Workspace(env_tracking_uri=mlflow_server), [second])
    assert plan.reused == 1 and plan.trials[0].reused_run == run_id


# -- the index kept between commands (runindex.scan_cached) -------------------------------

HOUR = 3_600_000


def _run(client: MlflowClient, experiment_id: str, experiment: str, trial_id: str,
         status: str, start: int) -> str:
    run = client.create_run(experiment_id, start_time=start, tags={
        "sweepctl.experiment": experiment, "sweepctl.trial": f"{experiment}-{trial_id}",
        "sweepctl.trial_id": trial_id, "sweepctl.role": "trial"})
    if status not in ("RUNNING", "SCHEDULED"):
        client.set_terminated(run.info.run_id, status=status, end_time=start + 60_000)
    return str(run.info.run_id)


def _shape(index: RunIndex) -> dict[str, list[tuple[str, str]]]:
    return {tid: [(r.run_id, r.status) for r in runs.runs]
            for tid, runs in sorted(index.trials.items())}


@pytest.fixture
def aged_store(tmp_path: Path) -> tuple[MlflowClient, MlflowStore, str, int]:
    """A store of its own (so the counts are this test's) whose runs all started three
    hours before ``t0``, the time of the first scan."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("team/sweep")
    return client, MlflowStore(uri), experiment_id, int(time.time() * 1000)


def test_a_kept_index_reads_only_what_changed_and_agrees_with_a_full_scan(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    client, store, eid, t0 = aged_store
    old = t0 - 3 * HOUR
    history = [_run(client, eid, "sweep", f"old{i}", "FINISHED", old) for i in range(30)]
    stale = _run(client, eid, "sweep", "old-stale", "RUNNING", old)
    done = _run(client, eid, "sweep", "t0", "FINISHED", old)
    failed = _run(client, eid, "sweep", "t1", "FAILED", old)
    running = _run(client, eid, "sweep", "t2", "RUNNING", old)
    in_git = [Scope("team/sweep", "sweep-in-git", ("t0", "t1", "t2"))]
    first, snapshot = scan_cached(store, None, now=t0, scopes=in_git)
    assert first.source == "full" and first.runs_read == 34
    assert _shape(first) == _shape(scan(store))

    later = t0 + 5 * 60_000
    client.set_terminated(running, status="FINISHED", end_time=later)  # ended since
    client.update_run(failed, status="RUNNING")       # a runner adopted the failed run
    client.delete_run(done)                           # someone deleted the finished one
    client.set_terminated(stale, status="KILLED", end_time=later)
    new = _run(client, eid, "sweep", "old-new", "FINISHED", later)
    second, _ = scan_cached(store, snapshot, now=t0 + 15 * 60_000, scopes=in_git)

    assert second.source == "cached"
    assert _shape(second) == _shape(scan(store))      # the same index a full scan reads
    assert second.latest("t1").status == "RUNNING"
    assert second.finished("t0") is None and second.latest("t2").status == "FINISHED"
    assert second.latest("old-new").run_id == new
    assert second.latest("old-stale").status == "KILLED"
    # the 30 untouched history runs were not read again: what changed (the run that
    # ended, the new one twice: started and ended, the stale one) and the in-git runs
    assert second.runs_read <= 8 < len(history)


def test_every_run_of_an_experiment_in_git_is_read_again_tpe_proposals_included(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    """A tpe proposal is no trial of the sweep file, yet launch decides on it: its failed
    run adopted by a runner must not read FAILED from the kept index."""
    client, store, eid, t0 = aged_store
    proposal = _run(client, eid, "tpe-sweep", "proposed1", "FAILED", t0 - 3 * HOUR)
    elsewhere = _run(client, eid, "old-sweep", "gone1", "FAILED", t0 - 3 * HOUR)
    scopes = [Scope("team/sweep", "tpe-sweep", ("baseline-id",))]
    _, snapshot = scan_cached(store, None, now=t0, scopes=scopes)
    client.update_run(proposal, status="RUNNING")
    client.update_run(elsewhere, status="RUNNING")
    index, _ = scan_cached(store, snapshot, now=t0 + 60_000, scopes=scopes)
    assert index.latest("proposed1").status == "RUNNING"
    # an experiment no longer in git is history: it catches up at the next full scan
    assert index.latest("gone1").status == "FAILED"


def test_a_run_whose_pod_clock_is_behind_is_still_found(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    client, store, eid, t0 = aged_store
    _run(client, eid, "sweep", "old0", "FINISHED", t0 - 3 * HOUR)
    _, snapshot = scan_cached(store, None, now=t0)
    # started after the scan, by a clock 40 minutes behind ours
    late = _run(client, eid, "sweep", "t9", "FINISHED", t0 - 40 * 60_000)
    index, _ = scan_cached(store, snapshot, now=t0 + 60_000)
    assert index.source == "cached" and index.finished("t9").run_id == late


@pytest.mark.parametrize("why", ["a day old", "clock went back", "no experiment known"])
def test_a_snapshot_that_cannot_be_refreshed_makes_a_full_scan(
        aged_store: tuple[MlflowClient, MlflowStore, str, int], why: str) -> None:
    client, store, eid, t0 = aged_store
    _run(client, eid, "sweep", "old0", "FINISHED", t0 - 3 * HOUR)
    _, snapshot = scan_cached(store, None, now=t0)
    now = {"a day old": t0 + 24 * HOUR, "clock went back": t0 - HOUR}.get(why, t0 + 60_000)
    if why == "no experiment known":
        snapshot = replace(snapshot, due_at={})
    index, kept = scan_cached(store, snapshot, now=now)
    assert index.source == "full" and kept.taken_at == now
    assert max(kept.due_at.values()) == now + REREAD_EVERY_MS


def test_the_runs_of_an_experiment_the_snapshot_did_not_know_are_read(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    """An MLflow experiment deleted at the last scan and restored since holds old runs
    no time filter finds: a refresh reads every run of an experiment it did not know."""
    client, store, _, t0 = aged_store
    other = client.create_experiment("team/restored")
    finished = _run(client, other, "sweep", "r1", "FINISHED", t0 - 5 * HOUR)
    client.delete_experiment(other)
    _, snapshot = scan_cached(store, None, now=t0)
    client.restore_experiment(other)
    index, kept = scan_cached(store, snapshot, now=t0 + 60_000)
    assert index.source == "cached" and index.finished("r1").run_id == finished
    assert kept.due_at[other] == t0 + 60_000 + REREAD_EVERY_MS


def test_a_deleted_parent_of_an_experiment_in_git_is_gone_at_once(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    """Launch nests new trials under the sweep's parent run: one deleted in MLflow must
    not be found in the kept index (a new parent is made instead)."""
    client, store, eid, t0 = aged_store
    parent = client.create_run(eid, start_time=t0 - 3 * HOUR, tags={
        "sweepctl.experiment": "sweep", "sweepctl.role": "sweep"}).info.run_id
    client.set_terminated(parent, end_time=t0 - 3 * HOUR)
    scopes = [Scope("team/sweep", "sweep", ("t0",))]
    first, snapshot = scan_cached(store, None, now=t0, scopes=scopes)
    assert first.parent("team/sweep", "sweep") == parent
    client.delete_run(parent)
    index, _ = scan_cached(store, snapshot, now=t0 + 60_000, scopes=scopes)
    assert index.source == "cached" and index.parent("team/sweep", "sweep") is None


def test_launch_keeps_the_index_and_the_next_one_sees_what_finished_since(
        tmp_path: Path) -> None:
    """The 15-minute reconcile: the second launch refreshes the kept index (a fraction of
    the runs read) and still decides on what happened in between. A store of its own: the
    refresh reads every run of the last hour, and the session's server has other tests'."""
    mlflow_server = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folders = copies(tmp_path, 20)  # 60 trials: past the scoped scan
    options = LaunchOptions(backend="local", dry_run=True, tracking_uri=mlflow_server,
                            state_dir=tmp_path / ".sweepctl")

    def reconcile() -> tuple[dict[str, Outcome], int]:
        workspace = Workspace(env_tracking_uri=mlflow_server,
                              index_keeper=InFolder(Path(".sweepctl") / "index"))
        report = launch(folders, options, workspace=workspace)
        outcomes = {r.trial_id: r.outcome for e in report.experiments for r in e.results}
        return outcomes, workspace.store(mlflow_server).runs_read

    client = MlflowClient(mlflow_server)
    experiment, _ = trials_of(folders[0])
    eid = client.get_experiment_by_name(experiment.mlflow_experiment)
    eid = eid.experiment_id if eid else client.create_experiment(experiment.mlflow_experiment)
    for i in range(40):  # a retired sweep's runs: history the refresh must not read again
        _run(client, eid, "retired-sweep", f"{tmp_path.name}-old{i}", "FINISHED",
             int(time.time() * 1000) - 3 * HOUR)
    first, read_first = reconcile()
    assert list((tmp_path / ".sweepctl" / "index").glob("runs-*.json"))
    experiment, trials = trials_of(folders[3])
    log_trial(client, experiment, trials[0], metrics=result(0.4, 9.0))
    second, read_second = reconcile()
    assert first[trials[0].trial_id] != Outcome.REUSED
    assert second[trials[0].trial_id] == Outcome.REUSED
    assert read_first >= 40 > read_second


def _reconcile(folders: list[Path], uri: str, root: Path) -> dict[str, Outcome]:
    workspace = Workspace(env_tracking_uri=uri, index_keeper=InFolder(Path(".sweepctl") / "index"))
    report = launch(folders, LaunchOptions(backend="local", dry_run=True, tracking_uri=uri,
                                           state_dir=root / ".sweepctl"),
                    workspace=workspace)
    return {r.trial_id: r.outcome for e in report.experiments for r in e.results}


def test_a_snapshot_committed_to_git_is_never_read(tmp_path: Path) -> None:
    """A merged commit can carry .sweepctl/index/ (git add -f): a forged snapshot saying
    "no runs, just scanned" would hide every FINISHED run older than an hour, and launch
    would train them all again. A file git tracks is not the command's own: ignored."""
    import subprocess

    from sweepctl.clients import index_cache
    from sweepctl.clients.index_cache import Snapshot

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folders = copies(tmp_path, 20)
    client = MlflowClient(uri)
    experiment, trials = trials_of(folders[3])
    eid = client.create_experiment(experiment.mlflow_experiment)
    done = _run(client, eid, experiment.name, trials[0].trial_id, "FINISHED",
                int(time.time() * 1000) - 3 * HOUR)
    now = int(time.time() * 1000)
    forged = Snapshot(MlflowStore(uri).tracking_uri, taken_at=now, runs=(), parents=(),
                      due_at=dict.fromkeys(MlflowStore(uri).experiment_ids().values(),
                                         now + REREAD_EVERY_MS))
    assert index_cache.write(tmp_path / ".sweepctl" / "index", forged)
    for args in (["init", "-q"], ["add", "-f", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    assert _reconcile(folders, uri, tmp_path)[trials[0].trial_id] == Outcome.REUSED, done


def test_a_symlinked_index_folder_is_not_written_through(tmp_path: Path) -> None:
    """.sweepctl committed as a symlink would send every run's params and metrics where
    it points: the index is then simply not kept."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folders = copies(tmp_path, 20)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".sweepctl").symlink_to(elsewhere)
    _reconcile(folders, uri, tmp_path / "state")
    assert list(elsewhere.iterdir()) == []


# -- every experiment read whole in turn (runindex.due, runindex.turns) -------------------

def _snapshot(sizes: dict[str, int], due_at: dict[str, int], taken_at: int) -> Snapshot:
    runs = tuple(record(f"{eid}-{i}", "FINISHED", 1, f"t{eid}-{i}", mlflow_id=eid)
                 for eid, size in sizes.items() for i in range(size))
    return Snapshot("u", taken_at, runs, due_at=due_at)


def test_a_full_scan_spreads_the_turns_over_a_day_by_runs() -> None:
    sizes = {"1": 9, "2": 30, "3": 0, "4": 60}   # an empty one counts as one run
    runs = _snapshot(sizes, {}, 0).runs
    assert turns(runs, sizes, now=HOUR) == {
        "1": HOUR + REREAD_EVERY_MS * 9 // 100, "2": HOUR + REREAD_EVERY_MS * 39 // 100,
        "3": HOUR + REREAD_EVERY_MS * 40 // 100, "4": HOUR + REREAD_EVERY_MS}
    assert turns((), {"1", "2"}, now=0) == {"1": REREAD_EVERY_MS // 2, "2": REREAD_EVERY_MS}


def test_a_refresh_reads_whole_what_is_due_and_what_it_does_not_know() -> None:
    snapshot = _snapshot({"1": 1, "2": 1, "3": 1}, {"1": 5 * HOUR, "2": 9 * HOUR,
                                                     "3": 20 * HOUR}, taken_at=4 * HOUR)
    live = {"1", "2", "3", "new"}
    assert due(snapshot, live, now=4 * HOUR + 60_000) == {"new"}
    assert due(snapshot, live, now=9 * HOUR) == {"new", "1", "2"}
    assert due(snapshot, live - {"3"}, now=9 * HOUR) is None   # all it knows: a full scan
    assert due(snapshot, live, now=3 * HOUR) is None          # taken well after now
    # a writer's clock a few minutes ahead: still refreshed
    assert due(snapshot, live, now=4 * HOUR - 5 * 60_000) == {"new"}
    # an experiment deleted since is neither read nor counted: "1" and "2" due, "3" not
    assert due(snapshot, {"1", "2", "3"}, now=9 * HOUR) == {"1", "2"}
    assert due(snapshot, {"1", "2"}, now=9 * HOUR) is None     # all that is left is due
    later = _snapshot({"1": 1, "2": 1}, {"1": 5 * HOUR, "gone": 5 * HOUR, "2": 30 * HOUR},
                      taken_at=8 * HOUR)
    assert due(later, {"1", "2"}, now=6 * HOUR + 8 * HOUR) == {"1"}
    assert due(None, live, now=4 * HOUR) is None
    # a turn further than a period after the snapshot was taken is not believed
    forged = _snapshot({"1": 1, "2": 1}, {"1": 10**15, "2": 9 * HOUR}, taken_at=4 * HOUR)
    assert due(forged, {"1", "2"}, now=5 * HOUR) == {"1"}


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=30),
       every=st.integers(1, 180))
def test_every_experiment_is_read_whole_within_a_day_and_no_refresh_reads_them_all(
        sizes: list[int], every: int) -> None:
    """Three days of refreshes every ``every`` minutes after one full scan, as scan_cached
    keeps the turns: no experiment goes unread whole for more than REREAD_EVERY_MS, and
    no refresh reads much more than its share of the runs plus the largest experiment
    (a full scan again only where that is everything: a store of one or two experiments,
    or refreshes further apart than the turns)."""
    by_id = {str(i + 1): size for i, size in enumerate(sizes)}
    runs = _snapshot(by_id, {}, 0).runs
    total = sum(by_id.values())
    step = every * 60_000
    now = 0
    due_at, read_at = turns(runs, by_id, now), dict.fromkeys(by_id, now)
    while now < 3 * REREAD_EVERY_MS:
        taken_at, now = now, now + step
        whole = due(Snapshot("u", taken_at, runs, due_at=due_at), set(by_id), now)
        share = total * step / REREAD_EVERY_MS
        read = sum(by_id[e] for e in (by_id if whole is None else whole))
        assert read <= 2 * share + max(by_id.values()) + 1, (whole, now)
        if whole is None:                   # a full scan spreads the turns again
            due_at, whole = turns(runs, by_id, now), set(by_id)
        else:
            due_at.update(dict.fromkeys(whole, now + REREAD_EVERY_MS))
        read_at.update(dict.fromkeys(whole, now))
        assert all(now - at <= REREAD_EVERY_MS for at in read_at.values())


def test_a_run_no_time_filter_finds_is_read_when_its_experiment_is_due(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    """A run imported or restored with old times into an experiment the snapshot knows:
    no refresh by time finds it, the turn of its experiment does (two experiments of 5
    runs each, and the empty Default: their turns come 6/11 and 11/11 of a day after
    the full scan)."""
    client, store, first, t0 = aged_store
    second = client.create_experiment("team/other")
    for eid in (first, second):
        for i in range(5):
            _run(client, eid, "sweep", f"h{eid}-{i}", "FINISHED", t0 - 3 * HOUR)
    _, snapshot = scan_cached(store, None, now=t0)
    low, high = sorted((first, second))
    turn = {eid: snapshot.due_at[eid] for eid in (low, high)}
    assert turn == {low: t0 + REREAD_EVERY_MS * 6 // 11, high: t0 + REREAD_EVERY_MS}
    old = {eid: _run(client, eid, "sweep", f"imported{eid}", "FINISHED", t0 - 5 * HOUR)
           for eid in (first, second)}
    index, kept = scan_cached(store, snapshot, now=turn[low] - HOUR)
    assert index.source == "cached" and index.finished(f"imported{low}") is None
    index, kept = scan_cached(store, kept, now=turn[low] + HOUR)
    assert index.source == "cached"
    assert index.finished(f"imported{low}").run_id == old[low]
    assert index.finished(f"imported{high}") is None
    assert kept.due_at[low] == turn[low] + HOUR + REREAD_EVERY_MS
    assert kept.due_at[high] == turn[high]
    index, kept = scan_cached(store, kept, now=turn[high] + HOUR)
    assert index.source == "cached"
    assert index.finished(f"imported{high}").run_id == old[high]


def test_a_deleted_history_run_is_gone_at_its_experiment_s_turn(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    """A run of a trial no longer in git, deleted in MLflow: no refresh by time or by id
    sees it go; the turn of its experiment does."""
    client, store, eid, t0 = aged_store
    gone = _run(client, eid, "retired", "h-gone", "FINISHED", t0 - 3 * HOUR)
    _run(client, eid, "retired", "h-kept", "FINISHED", t0 - 3 * HOUR)
    _, snapshot = scan_cached(store, None, now=t0)
    client.delete_run(gone)
    turn = snapshot.due_at[eid]
    index, kept = scan_cached(store, snapshot, now=turn - HOUR)
    assert index.finished("h-gone").run_id == gone          # not its turn yet
    index, _ = scan_cached(store, kept, now=turn + HOUR)
    assert index.source == "cached" and index.get("h-gone") is None
    assert index.finished("h-kept") is not None


def test_confirm_reads_again_what_launch_learns_only_later(
        aged_store: tuple[MlflowClient, MlflowStore, str, int]) -> None:
    """tpe's later rounds: their trial ids are known only once the index is built, so the
    kept snapshot's records of them are read again by id before launch decides. A record
    MLflow does not have is dropped; a real run relabelled goes back to its trial id."""
    client, store, eid, t0 = aged_store
    real = _run(client, eid, "tpe-sweep", "p1", "FINISHED", t0 - 3 * HOUR)
    failed = _run(client, eid, "tpe-sweep", "p1", "FAILED", t0 - 4 * HOUR)
    _, snapshot = scan_cached(store, None, now=t0)
    [record_] = [r for r in snapshot.runs if r.run_id == real]
    [other] = [r for r in snapshot.runs if r.run_id == failed]
    forged = replace(snapshot, runs=(
        other,    # p1 keeps its failed attempt; the relabelled run moves back beside it
        replace(record_, trial_id="p3", tags={**record_.tags, "sweepctl.trial_id": "p3"}),
        replace(record_, run_id="f" * 32, trial_id="p2",
                tags={**record_.tags, "sweepctl.trial_id": "p2"})))
    index, _ = scan_cached(store, forged, now=t0 + 60_000)
    assert index.source == "cached"
    assert index.finished("p2") is not None and index.finished("p3") is not None
    before = store.requests
    index.confirm(["p2", "p3", "unknown"])
    assert store.requests == before + 1                     # one by-id read
    assert index.get("p2") is None and index.get("p3") is None
    assert [r.run_id for r in index.get("p1").runs] == [real, failed]
    index.confirm(["p2", "p3"])                            # nothing left unread
    assert store.requests == before + 1
    # an index read this command has nothing to confirm
    full = scan(store)
    full.confirm(["p1"])
    assert store.requests == before + 1 + 2
