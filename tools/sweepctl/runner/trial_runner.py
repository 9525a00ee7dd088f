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

A trial that runs again (pod retry, relaunch after a kill) adopts its unfinished run
(same sweepctl.trial_id, not FINISHED, the newest), bumps sweepctl.attempt and resumes
from the newest complete checkpoint-N in output_dir. With NPROC_PER_NODE or NNODES > 1
the runner starts torchrun on this file's worker mode; rank 0 attaches to the run,
the other ranks report nowhere, and only this parent process ends the run.

Exit codes: 0 trained, 78 (EX_CONFIG) the config is bad (the Job fails at once, no
retry), 128 + signal when interrupted, 2 unreadable meta, 1 any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
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
TAG_EXPERIMENT = "sweepctl.experiment"
TAG_TRIAL_ID = "sweepctl.trial_id"
TAG_ROLE = "sweepctl.role"
TAG_ATTEMPT = "sweepctl.attempt"
TAG_RESUMED = "sweepctl.resumed_from_step"
TAG_OUTPUT = "sweepctl.output_dir"
TAG_PRUNED = "sweepctl.pruned"
TAG_PRUNED_DETAIL = "sweepctl.pruned_detail"
TAG_CANCELLED = "sweepctl.cancelled"   # set by `sweepctl cancel` on the run it stopped
MAX_PARAM_LENGTH = 500     # MLflow servers before 2.x cap param values at 500 characters
MAX_TAG_LENGTH = 5000
# LLaMA-Factory keys that also name a field of the model's config (the callback logs both)
MODEL_CONFIG_COLLISIONS = {"rope_scaling", "use_cache", "torch_dtype", "attn_implementation"}
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78           # EX_CONFIG: the Job's podFailurePolicy fails the trial at once
KILL_GRACE_SECONDS = 30    # ranks get this long after SIGTERM before SIGKILL
REFERENCE_FILE = "early_stop_reference.json"
OUTCOME_FILE = "outcome.json"


class Interrupted(BaseException):
    """SIGTERM (Kubernetes deleting the pod, the deadline) or SIGINT: end the run KILLED."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class ConfigError(Exception):
    """The train config cannot be parsed or LLaMA-Factory rejects it: retrying cannot help."""


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_inputs(config_path: Path, meta_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import yaml

    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{config_path}: the train config must be a mapping")
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: meta must be a mapping")
    return config, meta


def check_config(config: dict[str, Any]) -> None:
    """LLaMA-Factory's own argument parsing, apart from training, so that its refusal
    (unknown key, bad enum, inconsistent options) is told from a failure while training."""
    try:
        from llamafactory.hparams import get_train_args
    except ImportError:  # a stand-in without LLaMA-Factory's parser: run_exp alone decides
        return
    try:
        get_train_args(dict(config))
    except (ValueError, SystemExit) as exc:
        raise ConfigError(f"LLaMA-Factory rejects the config: {exc}") from exc


def world_size() -> tuple[int, int]:
    """(NNODES, NPROC_PER_NODE) as the Job sets them; 1 and 1 when unset."""
    return (int(os.environ.get("NNODES") or 1), int(os.environ.get("NPROC_PER_NODE") or 1))


def system_metrics_available() -> bool:
    # mlflow samples CPU and RAM with psutil and GPUs with pynvml; psutil is the minimum
    return importlib.util.find_spec("psutil") is not None


def last_checkpoint(output_dir: Path) -> tuple[Path, int] | None:
    """The newest checkpoint-N that was written completely (trainer_state.json is last)."""
    found: list[tuple[int, Path]] = []
    for child in output_dir.glob("checkpoint-*"):
        suffix = child.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (child / "trainer_state.json").is_file():
            found.append((int(suffix), child))
    if not found:
        return None
    step, path = max(found)
    return path, step


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
        "env.nnodes": str(world_size()[0]),
        "env.nproc_per_node": str(world_size()[1]),
        "env.world_size": str(world_size()[0] * world_size()[1]),
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


def _filter_value(value: str) -> str:
    # filter strings quote with '; sweepctl's ids and names never contain one
    if "'" in value:
        raise ValueError(f"cannot search MLflow for {value!r}")
    return value


def experiment_id_for(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # another trial created it first
        return str(client.get_experiment_by_name(name).experiment_id)


def unfinished_run(client: Any, experiment_id: str, trial_id: str) -> Any | None:
    """The trial's newest run that did not finish (RUNNING after a hard kill, KILLED,
    FAILED): launch starts a runner only when no other process runs this trial, so a
    RUNNING one is stale and ours to adopt."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`{TAG_TRIAL_ID}` = '{_filter_value(trial_id)}' "
                       f"and tags.`{TAG_ROLE}` = 'trial'"),
        order_by=["attributes.start_time DESC"], max_results=50)
    for run in runs:
        if run.info.status != "FINISHED":
            return run
    return None


def open_run(meta: dict[str, Any]) -> tuple[Any, str, int]:
    """(client, run id, attempt): the trial's unfinished run adopted, else a new one."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment_id = experiment_id_for(client, meta["mlflow_experiment"])
    tags = {str(k): str(v)[:MAX_TAG_LENGTH] for k, v in (meta.get("tags") or {}).items()}
    previous = unfinished_run(client, experiment_id, tags[TAG_TRIAL_ID]) \
        if tags.get(TAG_TRIAL_ID) else None
    if previous is not None:
        run_id = previous.info.run_id
        attempt = int(previous.data.tags.get(TAG_ATTEMPT, "1")) + 1
        # the last attempt's error, end and cancellation are not this attempt's (a
        # cancelled trial that git still asks for is relaunched; killed again later, it
        # must read KILLED, not "cancelled")
        for key in (TAG_STATUS_ERROR, TAG_END, TAG_EXIT, TAG_CANCELLED):
            if key in previous.data.tags:
                with contextlib.suppress(Exception):
                    client.delete_tag(run_id, key)
        client.set_tag(run_id, TAG_ATTEMPT, str(attempt))
        return client, run_id, attempt
    if meta.get("parent_run_id"):
        tags["mlflow.parentRunId"] = str(meta["parent_run_id"])
    tags[TAG_START] = _now()
    tags[TAG_ATTEMPT] = "1"
    run = client.create_run(experiment_id, run_name=meta["run_name"], tags=tags)
    return client, run.info.run_id, 1


def log_params_once(client: Any, run_id: str, params: dict[str, str]) -> None:
    """MLflow refuses to change a param: a retry keeps the first attempt's values."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    fresh = [Param(k, v) for k, v in params.items() if k not in existing]
    for start in range(0, len(fresh), 100):
        client.log_batch(run_id, params=fresh[start:start + 100])


def keep_first_params(mlflow: Any, run_id: str) -> None:
    """Make transformers' callback keep the first attempt's params on a retried run.

    The callback logs every TrainingArguments field at train start; on a resumed
    attempt resume_from_checkpoint (and the env) differ from attempt 1 and MLflow
    would refuse the whole batch, failing the training. Keys the run already has are
    dropped; the resume point is in the sweepctl.resumed_from_step tag instead.
    """
    original = mlflow.log_params
    existing = set(mlflow.tracking.MlflowClient().get_run(run_id).data.params)

    def log_params(params: Any, *args: Any, **kwargs: Any) -> Any:
        fresh = {k: v for k, v in dict(params).items() if k not in existing}
        existing.update(fresh)
        return original(fresh, *args, **kwargs) if fresh else None

    mlflow.log_params = log_params


def read_reference(client: Any, experiment_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    """What the median rule compares against, read once: the objective's value at each
    step in the FINISHED, unpruned trial runs of the same sweepctl experiment."""
    stop = meta.get("early_stop")
    tags = meta.get("tags") or {}
    if not stop or not tags.get(TAG_EXPERIMENT):
        return {}
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`{TAG_EXPERIMENT}` = '{_filter_value(tags[TAG_EXPERIMENT])}' "
                       f"and tags.`{TAG_ROLE}` = 'trial' and attributes.status = 'FINISHED'"),
        max_results=1000)
    by_step: dict[str, list[float]] = {}
    for run in runs:
        if run.data.tags.get(TAG_TRIAL_ID) == tags.get(TAG_TRIAL_ID) \
                or run.data.tags.get(TAG_PRUNED) == "true":
            continue
        last: dict[int, float] = {}
        for point in client.get_metric_history(run.info.run_id, stop["metric"]):
            last[int(point.step)] = float(point.value)
        for step, value in last.items():
            by_step.setdefault(str(step), []).append(value)
    return {"early_stop": stop, "by_step": by_step}


def median_pruner(reference: dict[str, Any]) -> Any:
    """A TrainerCallback that stops training when the objective at an evaluation is
    worse than the median of the completed trials at the same step."""
    from transformers import TrainerCallback

    stop, by_step = reference["early_stop"], reference["by_step"]
    metric, goal = stop["metric"], stop["goal"]

    class MedianPruner(TrainerCallback):  # type: ignore[misc]
        pruned: dict[str, Any] | None = None

        def on_evaluate(self, args: Any, state: Any, control: Any,
                        metrics: dict[str, float] | None = None, **_: Any) -> None:
            step = int(state.global_step)
            value = (metrics or {}).get(metric, (metrics or {}).get(f"eval_{metric}"))
            others = by_step.get(str(step), [])
            if step < stop["min_steps"] or value is None \
                    or len(others) < stop.get("min_trials", 1):
                return
            median = statistics.median(others)
            # a NaN objective (a diverged trial) compares as worse
            if not ((value <= median) if goal == "minimize" else (value >= median)):
                control.should_training_stop = True
                self.pruned = {"step": step, "value": value, "median": median,
                               "trials": len(others)}

    return MedianPruner()


def train(config: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory in this process; returns what the runner tags (the pruning)."""
    check_config(config)
    from llamafactory.train.tuner import run_exp

    if not reference:
        run_exp(dict(config))
        return {"pruned": None}
    pruner = median_pruner(reference)
    run_exp(dict(config), callbacks=[pruner])
    return {"pruned": pruner.pruned}


def torchrun_command(meta_path: Path, run_id: str, state_dir: Path) -> list[str]:
    """torchrun with the arguments LLaMA-Factory's own launcher (FORCE_TORCHRUN) uses,
    running this file's worker mode so that every rank gets the runner's callbacks."""
    nnodes, nproc = world_size()
    return [sys.executable, "-m", "torch.distributed.run",
            f"--nnodes={nnodes}", f"--node_rank={os.environ.get('NODE_RANK') or 0}",
            f"--nproc_per_node={nproc}",
            f"--master_addr={os.environ.get('MASTER_ADDR') or '127.0.0.1'}",
            f"--master_port={os.environ.get('MASTER_PORT') or 29500}",
            str(Path(__file__).resolve()), "--worker", "--config", str(state_dir / "train.yaml"),
            "--meta", str(meta_path), "--run-id", run_id, "--state-dir", str(state_dir)]


def train_distributed(config: dict[str, Any], meta_path: Path, run_id: str,
                      reference: dict[str, Any]) -> dict[str, Any]:
    """Every rank as a child process group; a signal to the runner reaches all of them.

    The ranks read this attempt's config (with its resume point) and the early-stop
    reference from a private folder: the ConfigMap's train.yaml is read-only, and one
    reference for every rank makes them all stop at the same step.
    """
    import yaml

    with tempfile.TemporaryDirectory(prefix="sweepctl-trial-") as tmp:
        state_dir = Path(tmp)
        (state_dir / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        (state_dir / REFERENCE_FILE).write_text(json.dumps(reference), encoding="utf-8")
        child = subprocess.Popen(torchrun_command(meta_path, run_id, state_dir),
                                 start_new_session=True)
        try:
            code = child.wait()
        finally:
            stop_process_group(child)
        outcome_path = state_dir / OUTCOME_FILE
        outcome = json.loads(outcome_path.read_text(encoding="utf-8")) \
            if outcome_path.is_file() else {}
    if outcome.get("config_error"):
        raise ConfigError(outcome["config_error"])
    if code != 0:
        raise RuntimeError(f"torchrun exited {code}: {outcome.get('error', 'see the log')}")
    return outcome


def stop_process_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to torchrun and every rank, SIGKILL after the grace period."""
    if child.poll() is not None:
        return
    for signum, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def worker(config_path: Path, meta_path: Path, run_id: str, state_dir: Path) -> int:
    """One torchrun rank: rank 0 logs into the runner's run, the others report nowhere."""
    config, _ = read_inputs(config_path, meta_path)
    reference = json.loads((state_dir / REFERENCE_FILE).read_text(encoding="utf-8"))
    lead = int(os.environ.get("RANK", "0")) == 0 and bool(run_id)
    os.environ.pop("MLFLOW_RUN_ID", None)
    if lead:
        import mlflow

        keep_first_params(mlflow, run_id)
        mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics_available())
    else:
        config["report_to"] = "none"
    outcome: dict[str, Any] = {}
    try:
        outcome = train(config, reference)
        return 0
    except ConfigError as exc:
        outcome = {"config_error": str(exc)}
        return EXIT_CONFIG
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"[:MAX_TAG_LENGTH]}
        raise
    finally:
        if lead:
            (state_dir / OUTCOME_FILE).write_text(json.dumps(outcome), encoding="utf-8")


def prepare(client: Any, run_id: str, attempt: int, config: dict[str, Any],
            meta: dict[str, Any]) -> dict[str, Any]:
    """Tags of this attempt, the resume point, and the early-stop reference."""
    output_dir = Path(str(config.get("output_dir", "output"))).resolve()
    client.set_tag(run_id, TAG_OUTPUT, str(meta.get("output_uri") or output_dir))
    checkpoint = last_checkpoint(output_dir) if output_dir.is_dir() else None
    if checkpoint is not None and not config.get("resume_from_checkpoint"):
        config["resume_from_checkpoint"] = str(checkpoint[0])
        client.set_tag(run_id, TAG_RESUMED, str(checkpoint[1]))
        print(f"sweepctl trial {meta['run_name']}: attempt {attempt} resumes from "
              f"{checkpoint[0]}", file=sys.stderr, flush=True)
    experiment_id = client.get_run(run_id).info.experiment_id
    return read_reference(client, experiment_id, meta)


def log_adapter(client: Any, run_id: str, output_dir: Path) -> None:
    """The trained adapter (output_dir's files, not its checkpoints) as artifacts."""
    for path in sorted(output_dir.iterdir()):
        if path.is_file():
            client.log_artifact(run_id, str(path), "adapter")


def execute(config_path: Path, meta_path: Path, config: dict[str, Any],
            meta: dict[str, Any], client: Any, run_id: str) -> dict[str, Any]:
    """Train this attempt, in-process or on torchrun; returns the outcome to tag."""
    import mlflow

    attempt = int(client.get_run(run_id).data.tags.get(TAG_ATTEMPT, "1"))
    reference = prepare(client, run_id, attempt, config, meta)
    log_params_once(client, run_id, {
        **environment_params(),
        **llamafactory_params(config, list(meta.get("log_params") or []))})
    if attempt == 1:
        client.log_artifact(run_id, str(config_path))
    nnodes, nproc = world_size()
    if nnodes * nproc > 1:
        return train_distributed(config, meta_path, run_id, reference)
    keep_first_params(mlflow, run_id)
    mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics_available())
    return train(config, reference)


def run_trial(config_path: Path, meta_path: Path) -> int:
    config, meta = read_inputs(config_path, meta_path)

    import mlflow

    if int(os.environ.get("NODE_RANK") or 0) > 0:
        return run_follower_node(config, meta_path)
    # a signal between creating the run and owning it would leave it RUNNING forever:
    # hold SIGTERM/SIGINT until the try below can turn them into KILLED
    held = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    client, run_id, attempt = open_run(meta)
    started = time.monotonic()
    status, exit_code = "FAILED", EXIT_FAILED
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
        # the callback reads these; MLFLOW_RUN_ID must not be set while our run is active
        os.environ.pop("MLFLOW_RUN_ID", None)
        os.environ["MLFLOW_EXPERIMENT_NAME"] = meta["mlflow_experiment"]
        print(f"sweepctl trial {meta['run_name']}: MLflow run {run_id} attempt {attempt}",
              file=sys.stderr, flush=True)
        outcome = execute(config_path, meta_path, config, meta, client, run_id)
        record_outcome(client, run_id, outcome, config, meta)
        status, exit_code = "FINISHED", 0
    except Interrupted as exc:
        status, exit_code = "KILLED", 128 + exc.signum
        client.set_tag(run_id, TAG_STATUS_ERROR, f"interrupted by {exc}")
    except BaseException as exc:  # SystemExit from argument parsing is a failure too
        if isinstance(exc, ConfigError):
            exit_code = EXIT_CONFIG
        detail = f"{type(exc).__name__}: {exc}".strip()
        client.set_tag(run_id, TAG_STATUS_ERROR, detail[:MAX_TAG_LENGTH])
        with contextlib.suppress(Exception):
            client.log_text(run_id, traceback.format_exc(), f"error-attempt{attempt}.txt")
        traceback.print_exc()
    finally:
        # the deadline's SIGTERM must not cut the bookkeeping short
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        finish(client, run_id, started, exit_code)
        if not end_run(mlflow, client, run_id, status):
            # the run would look RUNNING forever; at least the exit status tells the truth
            status, exit_code = f"{status} (not recorded in MLflow)", EXIT_FAILED
    print(f"sweepctl trial {meta['run_name']}: {status}", file=sys.stderr, flush=True)
    return exit_code


def run_follower_node(config: dict[str, Any], meta_path: Path) -> int:
    """NODE_RANK > 0: this node's ranks train; node 0's runner owns the run."""
    reference: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # the same reference as node 0, read alike
        from mlflow.tracking import MlflowClient

        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        client = MlflowClient()
        reference = read_reference(client, experiment_id_for(client, meta["mlflow_experiment"]),
                                   meta)
    output_dir = Path(str(config.get("output_dir", "output")))
    checkpoint = last_checkpoint(output_dir) if output_dir.is_dir() else None
    if checkpoint is not None and not config.get("resume_from_checkpoint"):
        config["resume_from_checkpoint"] = str(checkpoint[0])
    try:
        train_distributed(config, meta_path, "", reference)
    except ConfigError:
        return EXIT_CONFIG
    return 0


def record_outcome(client: Any, run_id: str, outcome: dict[str, Any],
                   config: dict[str, Any], meta: dict[str, Any]) -> None:
    pruned = outcome.get("pruned")
    if pruned:
        client.set_tag(run_id, TAG_PRUNED, "true")
        client.set_tag(run_id, TAG_PRUNED_DETAIL, json.dumps(pruned))
    if meta.get("log_adapter"):
        log_adapter(client, run_id, Path(str(config.get("output_dir", "output"))).resolve())


def finish(client: Any, run_id: str, started: float, exit_code: int) -> None:
    """End, duration (of this attempt) and exit tags; best effort: one lost to a network
    blip must not keep the run from ending."""
    for key, value in ((TAG_END, _now()),
                       (TAG_DURATION, f"{time.monotonic() - started:.1f}"),
                       (TAG_EXIT, str(exit_code))):
        with contextlib.suppress(Exception):
            client.set_tag(run_id, key, value)


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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one torchrun rank; torchrun forwards the signals
        return worker(args.config, args.meta, args.run_id, args.state_dir)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return run_trial(args.config, args.meta)
    except Interrupted as exc:
        print(f"trial_runner: interrupted by {exc} before the run started", file=sys.stderr)
        return 128 + exc.signum
    except ConfigError as exc:  # before any run exists: no run to mark
        print(f"trial_runner: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # unreadable meta, MLflow unreachable: before any run exists
        print(f"trial_runner: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
