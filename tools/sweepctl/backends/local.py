"""The embedded default: trials as subprocesses of the trainer's Python (``local.python``).

Each trial gets a folder under ``<state_dir>/runs/<experiment>/<trial name>/`` holding
its train YAML, the runner's metadata, one log file, and a claim file. The claim is an
exclusive ``flock`` held by the sweepctl process that starts the trial AND inherited by
the trial's process: the kernel drops it when both are gone, so a trial whose launcher
crashed still counts as running while its runner lives, and a crash never leaves a
claim behind that blocks the trial forever (a pid in a file would: pids are reused, and
taking over a stale file raced). That is what makes two ``launch`` commands racing on
one machine start a trial once. ``launch`` waits for the children; Ctrl-C, or the
terminal closing (SIGHUP, handled while ``run`` waits, never at import), sends them
SIGINT (the runner ends its MLflow run KILLED), waits, and raises ``Interrupted`` naming
the trials it stopped. The trial's pid is in its folder (``pid``; the trial leads its
own process group), so ``sweepctl cancel`` from another terminal SIGTERMs that group
and leaves a ``cancelled`` mark the folder's state then shows.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import yaml

if TYPE_CHECKING:
    from sweepctl.sweep.trial import Trial
    from sweepctl.workspace import ResolvedExperiment

from sweepctl.backends import (
    BackendSettings,
    Observed,
    Outcome,
    Progress,
    TrialResult,
    Unit,
    Work,
    trials_in_git,
)

POLL_SECONDS = 0.2
INTERRUPT_GRACE_SECONDS = 30.0
KILL_GRACE_SECONDS = 5.0
CANCELLED_MARK = "cancelled"
# a trial stopped by Ctrl-C / SIGHUP of its launcher: resumed by the next launch, and not
# a failure (it must not spend budget.max_failed_trials and hold the trials never started)
INTERRUPTED_MARK = "interrupted"
CANCEL_REQUEST = "cancel.json"  # in the experiment's runs folder: for a launcher's queue


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGHUP stopped a launch; the message names the trials it stopped."""

    def __init__(self, stopped: Sequence[str]) -> None:
        self.stopped = tuple(stopped)
        names = ", ".join(self.stopped) or "none"
        super().__init__(f"stopped {len(self.stopped)} trial(s): {names} (their runs "
                         "end KILLED); re-run `sweepctl launch` to resume them")


def _hangup(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@dataclass(frozen=True)
class LocalTrial:
    trial_id: str
    name: str
    train_config: Mapping[str, Any]
    meta: Mapping[str, Any]


def trial_dir(state_dir: Path, experiment: str, name: str) -> Path:
    return state_dir / "runs" / experiment / name


def _claimed(folder: Path) -> bool:
    """True while some process (a launcher or its trial) holds the folder's claim."""
    try:
        fd = os.open(folder / "claim", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own shared lock
    return False


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class _Running:
    trial: LocalTrial
    folder: Path
    process: subprocess.Popen[bytes]
    log: BinaryIO
    started: float
    claim: int  # the claim's fd: closing it (after exit_code is written) releases the trial


class LocalProcesses:
    """Trial processes of one trainer Python against one tracking store."""

    def __init__(self, python: str, runner: Path, state_dir: Path, tracking_uri: str,
                 max_parallel: int = 1, env: Mapping[str, str] | None = None,
                 workdir: Path | None = None) -> None:
        # trials run in the repo root, whatever the launcher's cwd: relative paths in
        # defaults.yaml (local.python) and in configs (model, dataset_dir) mean the same
        # thing from any directory; a bare name ("python3") is still looked up on PATH
        self.workdir = workdir
        if workdir is not None and os.sep in python and not os.path.isabs(python):
            python = str(workdir / python)
        self.python = python
        self.runner = runner
        self.state_dir = state_dir
        self.tracking_uri = tracking_uri
        self.max_parallel = max(1, max_parallel)
        self.env = dict(env or {})
        # experiment -> trial folder -> exit_code's mtime when observed: a trial another
        # launcher finished after our observe() must not be started again (see _start)
        self._seen: dict[str, dict[str, int | None]] = {}

    # -- observing ----------------------------------------------------------------------------

    def observe(self, experiment: str) -> dict[str, Observed]:
        """trial id -> what the trial folders say (running, succeeded, failed)."""
        found: dict[str, Observed] = {}
        seen = self._seen[experiment] = {}
        root = self.state_dir / "runs" / experiment
        if not root.is_dir():
            return found
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            seen[folder.name] = _mtime_ns(folder / "exit_code")
            meta_path = folder / "trial.json"
            try:
                trial_id = str(json.loads(meta_path.read_text())["trial_id"])
            except (OSError, ValueError, KeyError):
                continue
            phase = _phase(folder)
            if phase is None:
                continue  # its launcher and its runner died before an exit code: re-run
            found[trial_id] = Observed(trial_id, folder.name, phase,
                                       detail=str(folder / "trial.log"))
        return found

    def trial_folders(self, experiment: str) -> list[tuple[Path, str]]:
        """(folder, trial id) of every trial this state dir has for the experiment."""
        root = self.state_dir / "runs" / experiment
        found = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
            try:
                found.append((folder, str(json.loads((folder / "trial.json").read_text())
                                          ["trial_id"])))
            except (OSError, ValueError, KeyError):
                continue
        return found

    # -- running ------------------------------------------------------------------------------

    def _claim(self, folder: Path) -> int | None:
        """The trial's claim, locked (its fd); None when another process holds it.
        The file is never removed: unlinking a lock file lets two processes lock two
        different files under one name."""
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "claim", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())  # for a human reading the folder
        return fd

    def _start(self, trial: LocalTrial, experiment: str) -> _Running | TrialResult:
        folder = trial_dir(self.state_dir, experiment, trial.name)
        claim = self._claim(folder)
        if claim is None:
            return TrialResult(trial.trial_id, trial.name, Outcome.RUNNING,
                               "another sweepctl process runs it")
        seen = self._seen.get(experiment)
        if seen is not None and seen.get(folder.name) != _mtime_ns(folder / "exit_code"):
            os.close(claim)
            return TrialResult(trial.trial_id, trial.name, Outcome.RUNNING,
                               "another sweepctl process ran it since this launch looked")
        (folder / "exit_code").unlink(missing_ok=True)
        (folder / CANCELLED_MARK).unlink(missing_ok=True)
        (folder / INTERRUPTED_MARK).unlink(missing_ok=True)
        config_path = folder / "train.yaml"
        meta_path = folder / "meta.json"
        config_path.write_text(yaml.safe_dump(dict(trial.train_config), sort_keys=False))
        meta_path.write_text(json.dumps(dict(trial.meta), indent=2, sort_keys=True))
        (folder / "trial.json").write_text(json.dumps({"trial_id": trial.trial_id,
                                                       "name": trial.name}))
        log = (folder / "trial.log").open("wb")
        env = {**self.env, "MLFLOW_TRACKING_URI": self.tracking_uri,
               "PYTHONUNBUFFERED": "1"}
        try:
            # argv is a list and configs travel as files: no YAML value reaches a shell
            process = subprocess.Popen(
                [self.python, str(self.runner), "--config", str(config_path),
                 "--meta", str(meta_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C reaches the children through us, once
                pass_fds=(claim,))  # the trial holds its claim even if we die
        except OSError as exc:
            log.close()
            os.close(claim)
            return TrialResult(trial.trial_id, trial.name, Outcome.FAILED,
                               f"cannot start {self.python}: {exc.strerror or exc}")
        (folder / "pid").write_text(str(process.pid))  # its process group, for cancel
        return _Running(trial, folder, process, log, time.monotonic(), claim)

    def _finish(self, running: _Running) -> TrialResult:
        code = running.process.returncode
        running.log.close()
        (running.folder / "exit_code").write_text(str(code))
        os.close(running.claim)  # after exit_code: an observer never sees neither
        seconds = time.monotonic() - running.started
        log = running.folder / "trial.log"
        if code == 0:
            return TrialResult(running.trial.trial_id, running.trial.name, Outcome.LAUNCHED,
                               f"finished in {seconds:.0f} s, log {log}")
        if (running.folder / CANCELLED_MARK).exists():
            return TrialResult(running.trial.trial_id, running.trial.name, Outcome.CANCELLED,
                               f"stopped by sweepctl cancel after {seconds:.0f} s, see {log}")
        return TrialResult(running.trial.trial_id, running.trial.name, Outcome.FAILED,
                           f"trial exited with {code} after {seconds:.0f} s, see {log}")

    def run(self, experiment: str, trials: Sequence[LocalTrial],
            progress: Progress | None = None,
            on_start: Callable[[str], None] | None = None) -> list[TrialResult]:
        """Run the trials, at most ``max_parallel`` at a time, and wait for all of them."""
        results: dict[str, TrialResult] = {}
        queue = list(trials)
        running: list[_Running] = []

        def done(result: TrialResult) -> None:
            results[result.trial_id] = result
            if progress is not None:
                progress(result)

        began = time.time()

        previous = _on_hangup(_hangup)
        try:
            while queue or running:
                while queue and len(running) < self.max_parallel:
                    trial = queue.pop(0)
                    if self._cancel_requested(experiment, trial, began):
                        done(TrialResult(trial.trial_id, trial.name, Outcome.CANCELLED,
                                         "cancelled by sweepctl cancel before it started"))
                        continue
                    started = self._start(trial, experiment)
                    if isinstance(started, TrialResult):
                        done(started)
                    else:
                        running.append(started)
                        if on_start is not None:
                            on_start(trial.name)
                for item in [r for r in running if r.process.poll() is not None]:
                    running.remove(item)
                    done(self._finish(item))
                if running:
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt as exc:
            stopped = [r.trial.name for r in running if r.process.poll() is None]
            self._interrupt(running)
            raise Interrupted(stopped) from exc
        finally:
            _on_hangup(previous)
        return [results[t.trial_id] for t in trials]

    def _cancel_requested(self, experiment: str, trial: LocalTrial, since: float) -> bool:
        """A ``sweepctl cancel`` of this trial after this launch began (``cancel.json``)."""
        try:
            request = json.loads((self.state_dir / "runs" / experiment / CANCEL_REQUEST)
                                 .read_text())
            at, trials = float(request["at"]), request.get("trials")
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return at >= since and (trials is None or bool({trial.trial_id, trial.name}
                                                          & set(trials)))

    def _interrupt(self, running: Sequence[_Running]) -> None:
        """SIGINT each child (its runner ends the MLflow run KILLED), then wait, then kill."""
        for item in running:
            if item.process.poll() is None:
                item.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        for item in running:
            try:
                item.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                item.process.kill()
                item.process.wait()
            (item.folder / INTERRUPTED_MARK).write_text("")
            self._finish(item)


def _phase(folder: Path) -> str | None:
    """running | succeeded | failed | cancelled | interrupted; None: nothing holds the
    claim and no exit code was written (launcher and runner died), so the trial is simply
    re-run."""
    code = _read_int(folder / "exit_code")
    if _claimed(folder):
        return "running"
    if code == 0:
        return "succeeded"
    if (folder / CANCELLED_MARK).exists():
        return "cancelled"
    if (folder / INTERRUPTED_MARK).exists():
        return "interrupted"
    return None if code is None else "failed"


def _on_hangup(handler: Any) -> Any:
    """Install a SIGHUP handler (main thread only: Python's rule); the previous one."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGHUP, handler) if handler is not None else None


def stop_group(folder: Path, signum: int) -> bool:
    """Signal the trial's process group (its runner leads it); False when it is gone.
    Only while the claim is held: a pid of an ended trial may be reused."""
    pid = _read_int(folder / "pid")
    if pid is None or pid <= 1 or not _claimed(folder):
        return False
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_released(folders: Sequence[Path], seconds: float) -> list[Path]:
    """Wait until no process holds these claims; the folders still claimed after that."""
    deadline = time.monotonic() + seconds
    held = [f for f in folders if _claimed(f)]
    while held and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        held = [f for f in held if _claimed(f)]
    return held


def runner_path() -> Path:
    return Path(str(resources.files("sweepctl.runner").joinpath("trial_runner.py")))


class LocalBackend:
    """The embedded default: trials as child processes, no cluster.

    What differs from a cluster is said here: a failed trial leaves nothing behind (no
    immutable Job), so it is simply started again; ``submit`` runs the trials and waits
    for them, at most ``min(local.max_parallel, sweep max_parallel)`` at once.
    """

    name = "local"

    def __init__(self, settings: BackendSettings, workdir: Path | None = None) -> None:
        self.settings = settings
        self.workdir = workdir
        # experiment -> the processes that observed it: submit starts trials with the
        # same observation, so a trial another launcher ran since is not run again
        self._observed_by: dict[str, LocalProcesses] = {}

    def close(self) -> None:
        return None

    def _processes(self, resolved: ResolvedExperiment) -> LocalProcesses:
        runtime = resolved.runtime.local
        declared = resolved.experiment.sweep.get("max_parallel")
        return LocalProcesses(runtime.python, runner_path(), self.settings.state_dir,
                              resolved.tracking_uri or "",
                              min(runtime.max_parallel, int(declared or runtime.max_parallel)),
                              self.settings.env, workdir=self.workdir or resolved.root)

    def observe(self, experiments: Sequence[ResolvedExperiment]
                ) -> dict[str, dict[str, Observed]]:
        found = {}
        for resolved in experiments:
            processes = self._observed_by[resolved.name] = self._processes(resolved)
            found[resolved.name] = processes.observe(resolved.name)
        return found

    def prepare(self, work: Work, trial: Trial) -> Unit:
        from sweepctl.render.trainconfig import runner_meta, train_config

        resolved = work.resolved
        folder = trial_dir(self.settings.state_dir, resolved.name, trial.name).resolve()
        local = LocalTrial(trial.trial_id, trial.name, train_config(trial, str(folder / "output")),
                           runner_meta(resolved.experiment, trial, git_sha=work.git_sha,
                                       pr=work.pr, parent_run_id=work.parent_run_id,
                                       spec_hash=resolved.spec_hash))
        return Unit(trial, None, local)

    def judge(self, work: Work, seen: Observed, unit: Unit) -> TrialResult | None:
        if seen.phase != "running":
            return None  # nothing stays behind: (re)run it (a success without a run, too)
        return TrialResult(unit.trial_id, unit.name, Outcome.RUNNING, seen.phase)

    def submit(self, work: Work, units: Sequence[Unit], observed: Mapping[str, Observed],
               keep: Sequence[Unit], *, hold: bool, progress: Progress) -> list[TrialResult]:
        if self.settings.dry_run:
            results = [TrialResult(u.trial_id, u.name, Outcome.LAUNCHED, "dry run")
                       for u in units]
            for result in results:
                progress(result)
            return results
        processes = self._observed_by.get(work.resolved.name)
        if processes is None:
            processes = self._processes(work.resolved)
            processes.observe(work.resolved.name)
        return processes.run(work.resolved.name, [u.payload for u in units], progress,
                             on_start=work.on_start)


    # -- stopping -------------------------------------------------------------------------

    def _live(self, experiment: str) -> list[tuple[Path, str]]:
        processes = LocalProcesses("", Path(), self.settings.state_dir, "")
        return [(f, tid) for f, tid in processes.trial_folders(experiment) if _claimed(f)]

    def _stop(self, folders: Sequence[tuple[Path, str]], detail: str) -> list[TrialResult]:
        """SIGTERM each trial's group (the runner ends its run KILLED), wait for the
        claims to drop, SIGKILL what is left (cancel then ends its run through MLflow)."""
        stopped = []
        for folder, trial_id in folders:
            (folder / CANCELLED_MARK).write_text("")
            if stop_group(folder, signal.SIGTERM):
                stopped.append((folder, trial_id))
        killed = wait_released([f for f, _ in stopped], INTERRUPT_GRACE_SECONDS)
        for folder in killed:
            stop_group(folder, signal.SIGKILL)
        # a killed group's claim drops once its launcher sees it gone: what is observed
        # right after a cancel must not read "running"
        wait_released(killed, KILL_GRACE_SECONDS)
        return [TrialResult(tid, folder.name, Outcome.CANCELLED, detail)
                for folder, tid in stopped]

    def cancel(self, experiments: Sequence[ResolvedExperiment],
               trial_ids: Collection[str] | None = None) -> list[TrialResult]:
        wanted = None if trial_ids is None else set(trial_ids)
        live = [(folder, tid) for resolved in experiments
                for folder, tid in self._live(resolved.name)
                if wanted is None or {tid, folder.name} & wanted]
        if self.settings.dry_run:
            return [TrialResult(tid, f.name, Outcome.CANCELLED, "dry run") for f, tid in live]
        for resolved in experiments:  # a launcher's queued trials are never started
            root = self.settings.state_dir / "runs" / resolved.name
            if root.is_dir():
                (root / CANCEL_REQUEST).write_text(json.dumps(
                    {"at": time.time(), "trials": None if wanted is None else sorted(wanted)}))
        return self._stop(live, "process group sent SIGTERM")

    def prune(self, experiments: Sequence[ResolvedExperiment], in_git: Collection[str],
              mode: str) -> list[TrialResult]:
        """Nothing local waits in a queue (``launch`` runs its trials to the end), so only
        live trials git no longer has are left: reported, or stopped with ``all``."""
        runs = self.settings.state_dir / "runs"
        if mode == "none" or not runs.is_dir():
            return []
        wanted = {r.name: trials_in_git(r) for r in experiments}
        results: list[TrialResult] = []
        for experiment in sorted(p.name for p in runs.iterdir() if p.is_dir()):
            if experiment in in_git and experiment not in wanted:
                continue  # in git, not loaded (refused): not this reconcile's to judge
            trial_ids = wanted.get(experiment)
            gone = [(f, tid) for f, tid in self._live(experiment)
                    if experiment not in wanted or (trial_ids is not None
                                                    and tid not in trial_ids)]
            why = (f"trial removed from {experiment}'s sweep" if experiment in wanted
                   else f"experiment {experiment} is not in git")
            if mode == "all" and not self.settings.dry_run:
                results += self._stop(gone, f"{why}; stopped")
                continue
            results += [TrialResult(tid, f.name, Outcome.NOT_IN_GIT, f"running, {why}: " + (
                f"cancel it with sweepctl cancel {experiment} --trial {f.name}"
                if experiment in wanted else
                f"stop it with kill -TERM -$(cat {f / 'pid'}), or set prune: all"))
                for f, tid in gone]
        return results


def create(settings: BackendSettings) -> LocalBackend:
    return LocalBackend(settings)
