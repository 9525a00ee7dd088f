#!/usr/bin/env python3
"""Run one sweepctl trial: ONE MLflow run around an in-process LLaMA-Factory training.

    python trial_runner.py --config train.yaml --meta meta.json

sweepctl ships this file in the trial's ConfigMap (and the local backend runs it with the
trainer's python), so it imports only the standard library, PyYAML, mlflow and
LLaMA-Factory, never sweepctl. MLFLOW_TRACKING_URI comes from the environment.

Why the runner owns the run (measured with LLaMA-Factory 0.9.5, transformers 5.6): when
transformers' MLflow callback starts the run itself (alone, or resuming MLFLOW_RUN_ID),
it ends that run in on_train_end, and the final evaluation then opens a second, orphan
run. When a run is already active in the process, the callback logs into it and leaves
it open. So this script creates the run (name, tags, parent), makes it the active run,
keeps MLFLOW_RUN_ID out of the environment (with a run active, the callback would try to
start it a second time and fail), trains, and ends the run itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TAG_STATUS_ERROR = "sweepctl.error"
TAG_START = "sweepctl.start_time"
TAG_END = "sweepctl.end_time"
TAG_DURATION = "sweepctl.duration_seconds"
TAG_EXIT = "sweepctl.exit_status"
MAX_PARAM_LENGTH = 500     # MLflow servers before 2.x cap param values at 500 characters
MAX_TAG_LENGTH = 5000
# LLaMA-Factory keys that also name a field of the model's config (the callback logs both)
MODEL_CONFIG_COLLISIONS = {"rope_scaling", "use_cache", "torch_dtype", "attn_implementation"}
EXIT_FAILED = 1
EXIT_USAGE = 2


class Interrupted(BaseException):
    """SIGTERM (Kubernetes deleting the pod, the deadline) or SIGINT: end the run KILLED."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_inputs(config_path: Path, meta_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import yaml

    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise ValueError("train config and meta must both be mappings")
    return config, meta


def environment_params() -> dict[str, str]:
    """What the result depends on besides the config: library versions and hardware."""
    from importlib import metadata

    import torch

    params = {
        "env.python": platform.python_version(),
        "env.torch": torch.__version__,
        "env.cuda": str(torch.version.cuda or "none"),
        "env.gpu_count": str(torch.cuda.device_count() if torch.cuda.is_available() else 0),
        "env.gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    for package in ("llamafactory", "transformers", "peft", "mlflow"):
        try:
            params[f"env.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            params[f"env.{package}"] = "none"
    return params


def callback_logged_keys(config: dict[str, Any]) -> set[str]:
    """Keys transformers' MLflow callback logs itself: the training arguments' fields and
    the model config's keys. Logging them again with another spelling would fail."""
    try:
        from llamafactory.hparams.training_args import TrainingArguments
    except ImportError:  # an older LLaMA-Factory: transformers' own arguments
        from transformers import Seq2SeqTrainingArguments as TrainingArguments
    keys = {field.name for field in fields(TrainingArguments)} | MODEL_CONFIG_COLLISIONS
    model_config = Path(str(config.get("model_name_or_path", ""))) / "config.json"
    # a hub id has no local config.json: the training arguments and known collisions only
    with contextlib.suppress(OSError, ValueError):
        keys |= set(json.loads(model_config.read_text(encoding="utf-8")))
    return keys


def llamafactory_params(config: dict[str, Any], wanted: list[str]) -> dict[str, str]:
    skip = callback_logged_keys(config)
    params = {}
    for key in wanted:
        if key in config and key not in skip:
            value = config[key]
            text = value if isinstance(value, str) else json.dumps(value)
            params[key] = text[:MAX_PARAM_LENGTH]
    return params


def open_run(meta: dict[str, Any]) -> tuple[Any, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = meta["mlflow_experiment"]
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name)
        except Exception:  # another trial created it first
            experiment_id = client.get_experiment_by_name(name).experiment_id
    else:
        experiment_id = experiment.experiment_id
    tags = {str(k): str(v)[:MAX_TAG_LENGTH] for k, v in (meta.get("tags") or {}).items()}
    if meta.get("parent_run_id"):
        tags["mlflow.parentRunId"] = str(meta["parent_run_id"])
    tags[TAG_START] = _now()
    run = client.create_run(experiment_id, run_name=meta["run_name"], tags=tags)
    return client, run.info.run_id


def run_trial(config_path: Path, meta_path: Path) -> int:
    config, meta = read_inputs(config_path, meta_path)

    import mlflow

    # a signal between creating the run and owning it would leave it RUNNING forever:
    # hold SIGTERM/SIGINT until the try below can turn them into KILLED
    held = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    client, run_id = open_run(meta)
    started = time.monotonic()
    status, exit_code = "FAILED", EXIT_FAILED
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
        # the callback reads these; MLFLOW_RUN_ID must not be set while our run is active
        os.environ.pop("MLFLOW_RUN_ID", None)
        os.environ["MLFLOW_EXPERIMENT_NAME"] = meta["mlflow_experiment"]
        print(f"sweepctl trial {meta['run_name']}: MLflow run {run_id}", file=sys.stderr,
              flush=True)
        mlflow.start_run(run_id=run_id)
        mlflow.log_params({**environment_params(),
                           **llamafactory_params(config, list(meta.get("log_params") or []))})
        mlflow.log_artifact(str(config_path))
        from llamafactory.train.tuner import run_exp

        run_exp(dict(config))
        status, exit_code = "FINISHED", 0
    except Interrupted as exc:
        status, exit_code = "KILLED", 128 + exc.signum
        client.set_tag(run_id, TAG_STATUS_ERROR, f"interrupted by {exc}")
    except BaseException as exc:  # SystemExit from argument parsing is a failure too
        detail = f"{type(exc).__name__}: {exc}".strip()
        client.set_tag(run_id, TAG_STATUS_ERROR, detail[:MAX_TAG_LENGTH])
        with contextlib.suppress(Exception):
            client.log_text(run_id, traceback.format_exc(), "error.txt")
        traceback.print_exc()
    finally:
        # the deadline's SIGTERM must not cut the bookkeeping short
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        # tags are best effort: one lost to a network blip must not keep the run from ending
        for key, value in ((TAG_END, _now()),
                           (TAG_DURATION, f"{time.monotonic() - started:.1f}"),
                           (TAG_EXIT, str(exit_code))):
            with contextlib.suppress(Exception):
                client.set_tag(run_id, key, value)
        if not end_run(mlflow, client, run_id, status):
            # the run would look RUNNING forever; at least the exit status tells the truth
            status, exit_code = f"{status} (not recorded in MLflow)", EXIT_FAILED
    print(f"sweepctl trial {meta['run_name']}: {status}", file=sys.stderr, flush=True)
    return exit_code


def end_run(mlflow: Any, client: Any, run_id: str, status: str, attempts: int = 5) -> bool:
    """End the run with ``status``, retrying while MLflow is briefly unreachable."""
    for attempt in range(attempts):
        try:
            if mlflow.active_run() is not None:
                mlflow.end_run(status=status)
            else:
                client.set_terminated(run_id, status=status)
            return True
        except Exception as exc:
            print(f"trial_runner: ending run {run_id} as {status} failed "
                  f"({type(exc).__name__}: {exc}); attempt {attempt + 1} of {attempts}",
                  file=sys.stderr, flush=True)
            time.sleep(min(2 ** attempt, 10))
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="LLaMA-Factory train YAML")
    parser.add_argument("--meta", type=Path, required=True, help="sweepctl's meta.json")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return run_trial(args.config, args.meta)
    except Interrupted as exc:
        print(f"trial_runner: interrupted by {exc} before the run started", file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:  # unreadable inputs, MLflow unreachable: before any run exists
        print(f"trial_runner: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
