"""Benchmark: `sweepctl compare` vs a bare `MlflowClient.search_runs` over the same 2,000
runs on the same real `mlflow server` (SQLite backend). Goal: ratio <= 1.3.

    .venv/bin/python bench/compare.py [--runs 2000] [--repeat 3]

The runs are logged straight into the SQLite store (faster than through HTTP), exactly as
the trial runner tags them; then a real server is started on that store and both sides
are timed in this process (imports warmed up first, median of --repeat).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))


def build(root: Path, runs: int) -> tuple[Path, str, int]:
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_trial, make_experiment, result, trials_of

    # a grid of ranks x learning rates (+ the baseline): every expected trial gets a run
    ranks = 40
    rates = -(-runs // ranks)
    lrs = ", ".join(f"{1.1e-5 * (1 + i):.3e}" for i in range(rates))
    rank_list = ", ".join(str(9 + r) for r in range(ranks))
    sweep = (f"strategy: grid\nparameters:\n  lora_rank: [{rank_list}]\n"
             f"  learning_rate: [{lrs}]\nreplicates: 1\nmax_parallel: 8\n")
    folder, _ = make_experiment(root, sweep, max_trials=ranks * rates + 1)
    text = (folder / "experiment.yaml").read_text()
    (folder / "experiment.yaml").write_text(text.replace("gpu_hours: 40", "gpu_hours: 100000"))
    experiment, trials = trials_of(folder)
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    started = time.perf_counter()
    for i, trial in enumerate(trials):
        log_trial(client, experiment, trial,
                  metrics=result(0.3 + (i % 101) / 1000, 100.0 + i % 37), start=1_000 + i)
    print(f"logged {len(trials)} runs into sqlite in {time.perf_counter() - started:.1f} s")
    return folder, experiment.mlflow_experiment, len(trials)


def serve(root: Path, port: int) -> subprocess.Popen[bytes]:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
         f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art"),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
            return proc
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("mlflow server did not start")


def timed(function: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()  # type: ignore[operator]
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from conftest import free_port
    from mlflow.tracking import MlflowClient
    from sweepctl.cli.main import main as sweepctl
    from sweepctl.clients.mlflow_store import TAG_EXPERIMENT, TAG_ROLE

    # tmpfs when there is one: the SQLite commits of the bulk load dominate otherwise
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        root = Path(tmp)
        folder, mlflow_experiment, expected = build(root, args.runs)
        port = free_port()
        proc = serve(root, port)
        uri = f"http://127.0.0.1:{port}"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        try:
            client = MlflowClient(uri)
            eid = client.get_experiment_by_name(mlflow_experiment).experiment_id
            query = f"tags.`{TAG_EXPERIMENT}` = 'lora-rank-sweep' and tags.`{TAG_ROLE}` = 'trial'"

            def bare() -> None:
                token, total = None, 0
                while True:
                    page = client.search_runs([eid], filter_string=query, max_results=1000,
                                              page_token=token)
                    total += len(page)
                    token = page.token
                    if not token:
                        break
                assert total == expected, total

            def compare() -> None:
                sink = io.StringIO()
                with contextlib.redirect_stdout(sink):
                    code = sweepctl(["compare", str(folder)])
                assert code == 0 and sink.getvalue().count("\n| ") >= expected, code

            bare()
            compare()  # warm imports and the server's caches for both
            bare_times = timed(bare, args.repeat)
            compare_times = timed(compare, args.repeat)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    b, c = statistics.median(bare_times), statistics.median(compare_times)
    print(f"runs: {expected}, repeat: {args.repeat} (median)")
    print(f"bare MlflowClient.search_runs: {b:.3f} s  {[round(t, 3) for t in bare_times]}")
    print(f"sweepctl compare:              {c:.3f} s  {[round(t, 3) for t in compare_times]}")
    print(f"ratio compare / search_runs:   {c / b:.2f} (goal <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
