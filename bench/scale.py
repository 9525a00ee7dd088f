"""Benchmark: a repo with a year of experiments against one real `mlflow server`.

    .venv/bin/python bench/scale.py [--experiments 1000] [--runs 100000]

Generates a repo of N experiments (3 trials each: lora_rank 8 / 16 / 32, each experiment
its own MLflow experiment, like `sweepctl new` makes them) and an MLflow SQLite store
holding M sweepctl trial runs: every trial of the repo but the last 10 experiments'
FINISHED once, the rest older history (retries and sweeps no longer in the repo). The
runs are bulk-loaded straight into MLflow's own tables with sqlite3 (MLflow creates the
schema first), not through 100,000 HTTP calls, and the load ends with SQLite's ANALYZE:
a production store (Postgres, MySQL) keeps planner statistics on its own, SQLite only
when told, and without them it answers every history read from the metrics primary key
(``key`` first: every run's rows of that metric) instead of MLflow's (run_uuid, key, step)
index. One 100-run history request is timed both ways and printed; the report figures
assume the statistics (sweepctl's own local store, ``sqlite:///.sweepctl/mlflow.db``,
never runs ANALYZE: a large one pays the slow reads). Then one `mlflow
server` serves the store and, through the library (the CLI adds only its imports), it
times:

- one bare paged `MlflowClient.search_runs` over every trial run (the peer);
- the full reconcile: `launch` of every experiment, dry run, against kmock's Kubernetes
  emulator over HTTP (the 10 new experiments' 30 trials are server-side dry-run created),
  with the run index kept in MLflow as the workflows keep it (SWEEPCTL_INDEX_CACHE=mlflow):
  first with none kept yet (a full scan: a store's first reconcile), then, 15 minutes
  later on sweepctl's clock and on a "fresh runner" (a new workspace, nothing on disk),
  after half of the new trials FINISHED through the server, from the index the first one
  kept in MLflow (what every scheduled reconcile costs, the experiments' turns to be
  read whole included);
- `status` of one experiment;
- `report` of every experiment, notes only (no GitHub): notes.md blocks and plots, from
  the index kept in MLflow: first with nothing drawn yet (every curve's history read, every PNG
  drawn), then again as the hourly report finds it (nothing changed: nothing drawn).

It prints each time, the MLflow and Kubernetes requests, and the ratio to the bare scan.
Goals (issue 9): reconcile < 60 s, report of all < 120 s, MLflow requests ~ runs/1000 + a
constant, Kubernetes requests a constant per command plus the creates, ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the emulator harness the tests use

from kube_emulator import running_emulator  # noqa: E402
from sweepctl.backends import BackendSettings  # noqa: E402
from sweepctl.clients.kube_api import configuration_for_host  # noqa: E402
from sweepctl.clients.mlflow_store import KEPT_EXPERIMENT  # noqa: E402
from sweepctl.keptindex import KEPT_FILE, InTrackingStore  # noqa: E402
from sweepctl.usecases.launch import LaunchOptions, launch  # noqa: E402
from sweepctl.usecases.report import ReportRequest, report  # noqa: E402
from sweepctl.usecases.status import status  # noqa: E402
from sweepctl.workspace import Workspace  # noqa: E402

NEW_EXPERIMENTS = 10   # never launched yet: the reconcile creates their trials
IMAGE = "registry.local/train:1"


def make_repo(root: Path, count: int) -> list[Path]:
    experiments = root / "experiments"
    template = REPO_ROOT / "experiments" / "tiny-lora-demo"
    (experiments).mkdir(parents=True)
    (experiments / "defaults.yaml").write_text(yaml.safe_dump(
        {"kubernetes": {"namespace": "bench", "image": IMAGE}}))
    sweep = {"strategy": "grid", "parameters": {"lora_rank": [8, 16, 32]},
             "derived": {"lora_alpha": "2 * lora_rank"}, "max_parallel": 3}
    baseline_text = (template / "baseline.yaml").read_text()
    experiment_doc = yaml.safe_load((template / "experiment.yaml").read_text())
    folders = []
    for i in range(count):
        name = f"exp-{i:04d}"
        folder = experiments / name
        folder.mkdir()
        for file_name in ("checklist.yaml", "notes.md"):
            shutil.copy(template / file_name, folder / file_name)
        doc = dict(experiment_doc, name=name, mlflow={"experiment": f"team/{name}"},
                   runtime={}, warnings={"ignore": ["typical-range"]})
        (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
        # a seed of its own: every experiment's trials have ids of their own
        (folder / "baseline.yaml").write_text(baseline_text.replace("seed: 42", f"seed: {i}"))
        (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
        folders.append(folder)
    return folders


def _run_rows(run_id: str, experiment_id: int, tags: dict[str, str], status: str,
              start: int, metrics: dict[str, float]) -> Iterator[tuple[str, Any]]:
    yield "runs", (run_id, tags["sweepctl.trial"], "UNKNOWN", "", "", "bench", status, start,
                   start + 60_000, "", "active", f"/tmp/artifacts/{run_id}", experiment_id,
                   None)
    for key, value in tags.items():
        yield "tags", (key, value, run_id)
    for key, value in (("lora_rank", "8"), ("learning_rate", "0.001"), ("seed", "1"),
                       ("num_train_epochs", "1"), ("cutoff_len", "256")):
        yield "params", (key, value, run_id)
    for key, value in metrics.items():
        yield "metrics", (key, value, start, run_id, 10, 0)
        yield "latest_metrics", (key, value, start, 10, 0, run_id)


def load_store(db_path: Path, workspace: Workspace, folders: list[Path], runs: int) -> int:
    """Bulk-load the trial runs; returns how many were written."""
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{db_path}").search_experiments()  # MLflow creates its schema
    db = sqlite3.connect(db_path)
    rng = random.Random(0)
    resolved = [workspace.resolve(workspace.load(folder)) for folder in folders]
    now = int(time.time() * 1000) - 365 * 86_400_000
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in
                                              ("runs", "tags", "params", "metrics",
                                               "latest_metrics")}
    db.executemany("INSERT INTO experiments (experiment_id, name, artifact_location, "
                   "lifecycle_stage, creation_time, last_update_time, workspace) "
                   "VALUES (?, ?, ?, 'active', ?, ?, 'default')",
                   [(i + 1, r.experiment.mlflow_experiment, f"/tmp/a/{i + 1}", now, now)
                    for i, r in enumerate(resolved)])
    written = 0

    def add(experiment_id: int, experiment: str, trial_name: str, trial_id: str,
            status: str) -> None:
        nonlocal written
        tags = {"sweepctl.experiment": experiment, "sweepctl.trial": trial_name,
                "sweepctl.trial_id": trial_id, "sweepctl.role": "trial", "phase": "iteration",
                "sweepctl.git_sha": "0" * 40, "dataset.version": "v1",
                "mlflow.runName": trial_name}
        metrics = {"eval_loss": rng.uniform(0.3, 1.0), "loss": rng.uniform(0.3, 1.2),
                   "train_runtime": rng.uniform(50, 500), "train_samples_per_second": 3.0}
        for table, row in _run_rows(uuid.uuid4().hex, experiment_id, tags, status,
                                    now + written * 1000, metrics):
            rows[table].append(row)
        written += 1

    for i, item in enumerate(resolved[:-NEW_EXPERIMENTS]):
        for trial in item.trials:
            add(i + 1, item.name, trial.name, trial.trial_id, "FINISHED")
    while written < runs:  # history: earlier sweeps and failed attempts
        i = rng.randrange(len(resolved))
        old = uuid.uuid4().hex[:10]
        add(i + 1, f"old-sweep-{i}", f"old-sweep-{i}-{old}", old,
            rng.choice(("FINISHED", "FINISHED", "FAILED", "KILLED")))
    for table, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        db.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    db.commit()
    db.close()
    return written


def analyze(db_path: Path) -> tuple[float, float]:
    """SQLite's ANALYZE on the loaded store; returns one history read of 100 runs (one
    metric, through MLflow's own SQL store) before and after, in seconds."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = sqlite3.connect(db_path)
    run_ids = [row[0] for row in db.execute("SELECT run_uuid FROM runs LIMIT 100")]

    def history_read() -> float:
        store = SqlAlchemyStore(f"sqlite:///{db_path}", str(db_path.parent / "artifacts"))
        started = time.perf_counter()
        store.get_metric_history_bulk_interval(run_ids, "loss", 2500, None, None)
        seconds = time.perf_counter() - started
        store.engine.dispose()
        return seconds

    before = history_read()
    db.execute("ANALYZE")
    db.commit()
    db.close()
    return before, history_read()


def start_server(db_path: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{db_path}", "--artifacts-destination",
         str(root / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("mlflow server did not start")


def bare_scan(uri: str) -> tuple[float, int, int]:
    """The peer: one paged search_runs over every trial run, nothing else."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    started = time.perf_counter()
    ids = [e.experiment_id for e in client.search_experiments(max_results=50_000)]
    seen, pages, token = 0, 1, None
    while True:
        page = client.search_runs(ids, "tags.`sweepctl.role` = 'trial'", max_results=1000,
                                  page_token=token)
        seen += len(page)
        token = page.token
        if not token:
            return time.perf_counter() - started, seen, pages
        pages += 1


def timed(label: str, peer: float, seconds: float, mlflow: int, kube: int | None = None,
          goal: str = "") -> None:
    kube_text = f", Kubernetes requests {kube}" if kube is not None else ""
    print(f"{label:<32} {seconds:7.1f} s  MLflow requests {mlflow:4d}{kube_text}  "
          f"ratio to the bare scan {seconds / peer:.2f}  {goal}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    import mlflow  # noqa: F401  (imported up front: ~1.3 s that is no command's own work)

    # as the CLI sets them: no "View run" lines, no download progress bars
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    with tempfile.TemporaryDirectory(prefix="sweepctl-scale-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        folders = make_repo(root, args.experiments)
        written = load_store(root / "mlflow.db", Workspace(), folders, args.runs)
        loaded = time.perf_counter() - started
        before, after = analyze(root / "mlflow.db")
        print(f"{len(folders)} experiments, {written} trial runs bulk-loaded in "
              f"{loaded:.1f} s; one history read of 100 runs "
              f"{before:.2f} s without SQLite's planner statistics, {after:.2f} s with")
        proc, uri = start_server(root / "mlflow.db", root)
        try:
            run_benchmarks(folders, uri, written)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


def finish_some(uri: str, folders: list[Path], workspace: Workspace) -> int:
    """What 15 minutes on the cluster leave behind: half of the new experiments' trials
    FINISHED (through the server, as pods log them)."""
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # a line per run else
    client = MlflowClient(uri)
    count = 0
    for folder in folders[-NEW_EXPERIMENTS:][:NEW_EXPERIMENTS // 2]:
        item = workspace.resolve(workspace.load(folder))
        experiment_id = client.get_experiment_by_name(
            item.experiment.mlflow_experiment).experiment_id
        for trial in item.trials:
            run = client.create_run(experiment_id, run_name=trial.name, tags={
                "sweepctl.experiment": item.name, "sweepctl.trial": trial.name,
                "sweepctl.trial_id": trial.trial_id, "sweepctl.role": "trial"})
            client.log_metric(run.info.run_id, "eval_loss", 0.5)
            client.set_terminated(run.info.run_id, status="FINISHED")
            count += 1
    return count


def outcomes(result: Any) -> str:
    counts = {o: sum(e.count(o) for e in result.experiments)
              for o in {r.outcome for e in result.experiments for r in e.results}}
    return (f"  outcomes: {dict(sorted((str(k), v) for k, v in counts.items()))}, "
            f"refused {len(result.refused)}")


def later() -> float:
    """sweepctl's clock for every command after the first: 15 minutes on (the bench's
    commands follow each other within minutes; the scheduled ones come every 15)."""
    return time.time() + 15 * 60


def an_hour_later() -> float:
    return later() + 3600


def workspace_for(uri: str, clock: Callable[[], float] = time.time) -> Workspace:
    """A command's workspace as the workflows make it: a fresh runner, the run index kept
    in MLflow."""
    return Workspace(shared_tracking=True, env_tracking_uri=uri,
                     index_keeper=InTrackingStore(), clock=clock)


def reconcile(folders: list[Path], uri: str, configuration: Any, label: str, peer: float,
              clock: Callable[[], float], goal: str = "goal < 60 s") -> None:
    workspace = workspace_for(uri, clock)
    started = time.perf_counter()
    result = launch(folders, LaunchOptions(backend="kubernetes", dry_run=True,
                                           tracking_uri=uri, kube_configuration=configuration),
                    workspace=workspace)
    seconds = time.perf_counter() - started
    timed(label, peer, seconds, result.mlflow_requests, result.backend_requests, goal)
    print(f"{outcomes(result)}; runs read {workspace.store(uri).runs_read}; "
          f"the index kept in MLflow: {kept_size(uri)}")


def kept_size(uri: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(KEPT_EXPERIMENT)
    if experiment is None:
        return "none"
    for run in client.search_runs([experiment.experiment_id]):
        for info in client.list_artifacts(run.info.run_id):
            if info.path == KEPT_FILE:
                return f"{(info.file_size or 0) / 2**20:.1f} MB compressed"
    return "none"


def run_benchmarks(folders: list[Path], uri: str, runs: int) -> None:
    peer, seen, pages = bare_scan(uri)
    print(f"{'bare search_runs (the peer)':<32} {peer:7.1f} s  {seen} runs, {pages} pages")
    with running_emulator(trim_history=True) as emu:
        configuration = configuration_for_host(emu.url)
        reconcile(folders, uri, configuration, "launch, first (full scan)", peer, time.time,
                  "a store's first reconcile")
        finished = finish_some(uri, folders, Workspace())
        print(f"  then {finished} trial runs FINISHED through the server")
        reconcile(folders, uri, configuration, "launch 15 min later, fresh runner", peer,
                  later)
        workspace = Workspace(shared_tracking=True, env_tracking_uri=uri)
        started = time.perf_counter()
        table = status(folders[0], backend="kubernetes", tracking_uri=uri,
                       settings=BackendSettings(kube_configuration=configuration),
                       workspace=workspace)
        assert table.count("FINISHED") == 3
        timed("status (one experiment)", peer, time.perf_counter() - started,
              workspace.mlflow_requests, 1)
    for label, clock in (("report --notes, every experiment", later),
                         ("  an hour later (the same runs)", an_hour_later)):
        workspace = workspace_for(uri, clock)
        started = time.perf_counter()
        summary = report(workspace, folders, ReportRequest(  # --jobs as the CLI defaults it
            notes=True, jobs=min(4, len(os.sched_getaffinity(0)))), None)
        assert summary.ok, [r.error for r in summary.reports if r.error][:3]
        unchanged = sum(1 for r in summary.reports if r.notes == "unchanged")
        timed(label, peer, time.perf_counter() - started, workspace.mlflow_requests,
              goal=f"goal < 120 s; {unchanged} notes unchanged")
    print(f"MLflow requests per full scan ~ runs/1000 + a constant: {runs}/1000 = "
          f"{runs / 1000:.0f} pages of trial runs; a kept index reads what changed, the "
          "runs of the trials in git and the experiments whose turn it is")


if __name__ == "__main__":
    raise SystemExit(main())
