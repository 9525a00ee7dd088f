"""The trial runner with real LLaMA-Factory (LoRA on CPU) against a real MLflow server.

The runner runs as a subprocess of the trainer's python, exactly as in a Job or the
local backend; its inputs are made by the same functions `sweepctl render` uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT, trainer_python  # type: ignore[import-not-found]
from sweepctl.clients import mlflow_store
from sweepctl.render.trainconfig import runner_meta, train_config, trial_tags
from sweepctl.spec.model import Budget, Dataset, Experiment, Objective
from sweepctl.sweep.trial import Trial

pytestmark = pytest.mark.slow
RUNNER = REPO_ROOT / "tools" / "sweepctl" / "runner" / "trial_runner.py"


def tiny_config(model: Path, **changes: Any) -> dict[str, Any]:
    """A LoRA SFT small enough for ~10 s on CPU: 4 steps, 64 tokens, eval at the end."""
    return {
        "model_name_or_path": str(model / "model"), "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.05,
        "lora_target": "all", "dataset": "tiny_alpaca", "dataset_dir": str(model / "data"),
        "template": "default", "cutoff_len": 64, "val_size": 0.1, "max_steps": 4,
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
        "learning_rate": 1.0e-3, "logging_steps": 1, "save_strategy": "no", "seed": 42,
        "do_eval": True, "eval_strategy": "no", "preprocessing_num_workers": 1,
        "overwrite_output_dir": True, **changes,
    }


def experiment_for(mlflow_experiment: str) -> Experiment:
    return Experiment(
        path=Path("experiments/tiny"), name="tiny-lora", title="tiny", owner="t@example.com",
        hypothesis="h", phase="baseline", objective=Objective("eval_loss", "minimize", 9.0),
        budget=Budget(max_trials=4, gpu_hours=1, hours_per_trial=0.1),
        dataset=Dataset("tiny_alpaca", "v1", "ab" * 32), mlflow_experiment=mlflow_experiment,
        tags={"model.base": "tiny-llama"}, runtime={}, baseline={}, sweep={}, checklist={},
    )


def write_inputs(tmp_path: Path, tracking_uri: str, config: dict[str, Any],
                 with_parent: bool = True, experiment: Experiment | None = None,
                 **meta_options: Any) -> tuple[Experiment, Trial, str | None]:
    experiment = experiment or experiment_for(f"runner-{uuid.uuid4().hex[:8]}")
    trial_id = uuid.uuid4().hex[:10]
    trial = Trial(index=0, slug="baseline", params={}, config=config, trial_id=trial_id,
                  name=f"tiny-lora-baseline-{trial_id}")
    parent = None
    if with_parent:
        parent = mlflow_store.ensure_parent_run(tracking_uri, experiment.mlflow_experiment,
                                                experiment.name, {})
    (tmp_path / "train.yaml").write_text(
        yaml.safe_dump(train_config(trial, str(tmp_path / "output"))))
    meta = runner_meta(experiment, trial, git_sha="d" * 40, pr=7, parent_run_id=parent,
                       **meta_options)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return experiment, trial, parent


def runner_command(tmp_path: Path) -> list[str]:
    python = trainer_python()
    if python is None:
        pytest.skip("no trainer environment: run `make trainer` or set SWEEPCTL_TRAINER_PYTHON")
    return [str(python), str(RUNNER), "--config", str(tmp_path / "train.yaml"),
            "--meta", str(tmp_path / "meta.json")]


def runner_env(tracking_uri: str, **extra: str) -> dict[str, str]:
    # MLFLOW_RUN_ID in the caller's environment must not redirect the trial; system
    # metrics sampled every second so that a 10 s trial has some
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1",
            "MLFLOW_RUN_ID": "0" * 32, "TOKENIZERS_PARALLELISM": "false",
            "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1", **extra}


def run_runner(tmp_path: Path, tracking_uri: str,
               **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(runner_command(tmp_path), cwd=tmp_path,
                          env=runner_env(tracking_uri, **extra_env),
                          capture_output=True, text=True, timeout=600, check=False)


def all_runs(tracking_uri: str, experiment: Experiment) -> list[mlflow_store.RunRecord]:
    return list(mlflow_store.iter_runs(tracking_uri, experiment.mlflow_experiment, ""))


def test_one_finished_run_with_tags_params_and_eval(tmp_path: Path, mlflow_server: str,
                                                    tiny_model: Path) -> None:
    experiment, trial, parent = write_inputs(tmp_path, mlflow_server, tiny_config(tiny_model),
                                             log_adapter=True)
    result = run_runner(tmp_path, mlflow_server)
    assert result.returncode == 0, result.stderr[-3000:]

    runs = all_runs(mlflow_server, experiment)
    trials = [r for r in runs if r.tags.get(mlflow_store.TAG_ROLE) == "trial"]
    # exactly the parent and this trial: the final evaluation opened no orphan run
    assert len(runs) == 2 and len(trials) == 1
    run = trials[0]
    assert run.status == "FINISHED"
    assert run.tags["mlflow.runName"] == trial.name
    assert run.tags["mlflow.parentRunId"] == parent
    expected = trial_tags(experiment, trial, "d" * 40, 7)
    assert {k: run.tags.get(k) for k in expected} == expected
    assert run.tags["tier"] == "balanced"
    for tag in ("sweepctl.start_time", "sweepctl.end_time", "sweepctl.duration_seconds"):
        assert run.tags[tag]
    assert float(run.tags["sweepctl.duration_seconds"]) > 0
    assert run.params["lora_rank"] == "8"
    assert run.params["lora_alpha"] == "16"
    assert run.params["lora_dropout"] == "0.05"
    assert run.params["lora_target"] == "all"
    assert run.params["cutoff_len"] == "64"
    assert run.params["template"] == "default"
    assert run.params["finetuning_type"] == "lora"
    assert run.params["dataset"] == "tiny_alpaca"
    assert run.params["env.torch"].startswith("2.")
    assert run.params["env.gpu_count"] == "0"
    assert run.params["learning_rate"] == "0.001"  # from transformers' callback, once
    assert "eval_loss" in run.metrics and "train_loss" in run.metrics
    assert run.trial_id == trial.trial_id

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    artifacts = [a.path for a in client.list_artifacts(run.run_id)]
    assert "train.yaml" in artifacts
    assert run.tags["sweepctl.attempt"] == "1"
    assert "sweepctl.resumed_from_step" not in run.tags and "sweepctl.pruned" not in run.tags
    assert run.tags["sweepctl.output_dir"] == str(tmp_path / "output")
    adapter = {Path(a.path).name for a in client.list_artifacts(run.run_id, "adapter")}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= adapter
    assert "system/cpu_utilization_percentage" in run.metrics


@pytest.mark.parametrize(("change", "error"), [
    ({"lora_ranks": 8}, "lora_ranks"),                          # a typo LLaMA-Factory refuses
    ({"lr_scheduler_type": "cosinee"}, "cosinee"),              # issue 13's trial
])
def test_a_broken_config_exits_78_and_ends_failed_with_the_error(
        tmp_path: Path, mlflow_server: str, tiny_model: Path, change: dict[str, Any],
        error: str) -> None:
    config = tiny_config(tiny_model, **change)
    experiment, trial, _ = write_inputs(tmp_path, mlflow_server, config, with_parent=False)
    result = run_runner(tmp_path, mlflow_server)
    assert result.returncode == 78  # EX_CONFIG: the Job fails at once instead of retrying
    assert error in result.stderr

    runs = all_runs(mlflow_server, experiment)
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "FAILED"
    assert run.trial_name == trial.name
    assert error in run.tags["sweepctl.error"]
    assert run.tags["sweepctl.exit_status"] == "78"
    assert "mlflow.parentRunId" not in run.tags


def test_sigterm_ends_the_run_killed(tmp_path: Path, mlflow_server: str,
                                     tiny_model: Path) -> None:
    config = tiny_config(tiny_model, max_steps=100_000)
    experiment, _, _ = write_inputs(tmp_path, mlflow_server, config, with_parent=False)
    proc = subprocess.Popen(runner_command(tmp_path), cwd=tmp_path,
                            env=runner_env(mlflow_server), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not all_runs(mlflow_server, experiment):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    (run,) = all_runs(mlflow_server, experiment)
    assert run.status == "KILLED"
    assert "SIGTERM" in run.tags["sweepctl.error"]


def test_a_config_that_is_not_yaml_exits_78_before_any_run(tmp_path: Path,
                                                           mlflow_server: str,
                                                           tiny_model: Path) -> None:
    experiment, _, _ = write_inputs(tmp_path, mlflow_server, tiny_config(tiny_model),
                                    with_parent=False)
    (tmp_path / "train.yaml").write_text("lora_rank: [8\nlearning_rate: 1\n")
    result = run_runner(tmp_path, mlflow_server)
    assert result.returncode == 78
    assert "not YAML" in result.stderr
    assert all_runs(mlflow_server, experiment) == []


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    return sorted(MlflowClient(tracking_uri).get_metric_history(run_id, key),
                  key=lambda point: (point.timestamp, point.step))


def test_a_hard_killed_trial_resumes_from_its_checkpoint_in_the_same_run(
        tmp_path: Path, mlflow_server: str, tiny_model: Path) -> None:
    config = tiny_config(tiny_model, max_steps=40, save_strategy="steps", save_steps=5,
                         save_total_limit=2)
    experiment, _, _ = write_inputs(tmp_path, mlflow_server, config, with_parent=False)
    first = subprocess.Popen(runner_command(tmp_path), cwd=tmp_path,
                             env=runner_env(mlflow_server), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "output").glob("checkpoint-*/trainer_state.json")):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        first.kill()  # SIGKILL: no handler runs, the run stays RUNNING
        first.wait()
    killed_ms = int(time.time() * 1000)
    (stale,) = all_runs(mlflow_server, experiment)
    assert stale.status == "RUNNING"

    result = run_runner(tmp_path, mlflow_server)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(mlflow_server, experiment)   # adopted, not a second run
    assert run.run_id == stale.run_id
    assert run.status == "FINISHED"
    assert run.tags["sweepctl.attempt"] == "2"
    resumed = int(run.tags["sweepctl.resumed_from_step"])
    assert resumed >= 5 and resumed % 5 == 0
    history = metric_history(mlflow_server, run.run_id, "loss")
    second = [point.step for point in history if point.timestamp > killed_ms]
    assert second and min(second) == resumed + 1 and max(second) == 40
    below = [point.step for point in history if point.step <= resumed]
    assert len(below) == len(set(below))   # attempt 2 logged nothing below its checkpoint


def test_two_processes_on_torchrun_make_one_run(tmp_path: Path, mlflow_server: str,
                                                tiny_model: Path) -> None:
    port = free_port()
    experiment, _, _ = write_inputs(tmp_path, mlflow_server, tiny_config(tiny_model),
                                    with_parent=False)
    result = run_runner(tmp_path, mlflow_server, NPROC_PER_NODE="2", NNODES="1",
                        NODE_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(mlflow_server, experiment)   # rank 1 and the final eval: no orphans
    assert run.status == "FINISHED"
    assert run.params["env.world_size"] == "2"
    # LLaMA-Factory's own line from each rank: two processes really trained together
    assert "Process rank: 1, world size: 2" in result.stdout + result.stderr
    assert run.params["env.nproc_per_node"] == "2"
    assert "eval_loss" in run.metrics and "train_loss" in run.metrics
    assert run.params["lora_rank"] == "8"


def test_the_median_rule_prunes_a_trial_worse_than_the_finished_ones(
        tmp_path: Path, mlflow_server: str, tiny_model: Path) -> None:
    evaluated = {"max_steps": 8, "eval_strategy": "steps", "eval_steps": 2}
    early_stop = {"rule": "median", "min_steps": 2}
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    good_dir.mkdir()
    bad_dir.mkdir()
    experiment, _, _ = write_inputs(good_dir, mlflow_server,
                                    tiny_config(tiny_model, **evaluated), with_parent=False,
                                    early_stop=early_stop)
    assert run_runner(good_dir, mlflow_server).returncode == 0
    _, bad, _ = write_inputs(bad_dir, mlflow_server,
                             tiny_config(tiny_model, learning_rate=5.0, **evaluated),
                             with_parent=False, experiment=experiment, early_stop=early_stop)
    result = run_runner(bad_dir, mlflow_server)
    assert result.returncode == 0, result.stderr[-3000:]

    runs = {run.trial_name: run for run in all_runs(mlflow_server, experiment)}
    pruned = runs.pop(bad.name)
    (finished,) = runs.values()
    assert pruned.status == finished.status == "FINISHED"
    assert pruned.tags["sweepctl.pruned"] == "true"
    assert json.loads(pruned.tags["sweepctl.pruned_detail"])["step"] == 2
    assert "sweepctl.pruned" not in finished.tags
    steps = {p.step for p in metric_history(mlflow_server, pruned.run_id, "loss")}
    assert max(steps) == 2
    assert max(p.step for p in metric_history(mlflow_server, finished.run_id, "loss")) == 8
    assert "eval_loss" in pruned.metrics   # its partial result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return pids


def test_sigterm_reaches_every_rank_and_ends_the_run_killed(
        tmp_path: Path, mlflow_server: str, tiny_model: Path) -> None:
    config = tiny_config(tiny_model, max_steps=100_000)
    experiment, _, _ = write_inputs(tmp_path, mlflow_server, config, with_parent=False)
    env = runner_env(mlflow_server, NPROC_PER_NODE="2", NNODES="1", NODE_RANK="0",
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    proc = subprocess.Popen(runner_command(tmp_path), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any(r.metrics.get("loss") for r in all_runs(mlflow_server, experiment)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        # the runner, torchrun and its two ranks
        assert len(processes_mentioning(str(tmp_path / "meta.json"))) >= 4
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    (run,) = all_runs(mlflow_server, experiment)
    assert run.status == "KILLED"
    assert not [pid for pid in processes_mentioning(str(tmp_path / "meta.json"))
                if pid != proc.pid]   # no rank outlives the runner


class _FlakyMlflow:
    """Stands in for the mlflow module at the one call that ends the run."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.ended: list[str] = []

    def active_run(self) -> object:
        return object()

    def end_run(self, status: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("mlflow unreachable")
        self.ended.append(status)


def test_ending_the_run_survives_a_blip_and_admits_a_longer_outage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sweepctl.runner import trial_runner

    monkeypatch.setattr(trial_runner.time, "sleep", lambda seconds: None)
    blip = _FlakyMlflow(failures=2)
    assert trial_runner.end_run(blip, None, "run1", "FINISHED")
    assert blip.ended == ["FINISHED"]
    outage = _FlakyMlflow(failures=99)
    assert not trial_runner.end_run(outage, None, "run1", "FINISHED", attempts=3)
    assert outage.ended == []


def test_a_relaunched_cancelled_run_is_no_longer_tagged_cancelled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sweepctl cancel` tags the run it ends KILLED; the next launch (git still asks for
    the trial) reopens that run. This attempt was not cancelled: if it is killed later
    (a Ctrl-C, a hard kill) status and the comment must say KILLED, not "cancelled"."""
    from mlflow.tracking import MlflowClient
    from sweepctl.runner import trial_runner

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = MlflowClient(store)
    experiment_id = client.create_experiment("cancel-then-relaunch")
    tags = {mlflow_store.TAG_TRIAL_ID: "t1", mlflow_store.TAG_ROLE: "trial",
            mlflow_store.TAG_EXPERIMENT: "e"}
    run = client.create_run(experiment_id, run_name="e-t1",
                            tags={**tags, mlflow_store.TAG_ATTEMPT: "1"})
    store_api = mlflow_store.MlflowStore(store)
    store_api.mark_cancelled(run.info.run_id, end=True)
    [cancelled] = mlflow_store.trial_runs(store, "cancel-then-relaunch", "e")
    assert cancelled.cancelled

    _, run_id, attempt = trial_runner.open_run(
        {"mlflow_experiment": "cancel-then-relaunch", "run_name": "e-t1", "tags": tags})
    assert (run_id, attempt) == (run.info.run_id, 2)
    client.set_terminated(run_id, status="KILLED")   # this attempt killed, not cancelled
    [again] = mlflow_store.trial_runs(store, "cancel-then-relaunch", "e")
    assert again.status == "KILLED" and not again.cancelled
