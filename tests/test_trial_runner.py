"""The trial runner with real LLaMA-Factory (LoRA on CPU) against a real MLflow server.

The runner runs as a subprocess of the trainer's python, exactly as in a Job or the
local backend; its inputs are made by the same functions `sweepctl render` uses.
"""

from __future__ import annotations

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
                 with_parent: bool = True) -> tuple[Experiment, Trial, str | None]:
    experiment = experiment_for(f"runner-{uuid.uuid4().hex[:8]}")
    trial_id = uuid.uuid4().hex[:10]
    trial = Trial(index=0, slug="baseline", params={}, config=config, trial_id=trial_id,
                  name=f"tiny-lora-baseline-{trial_id}")
    parent = None
    if with_parent:
        parent = mlflow_store.ensure_parent_run(tracking_uri, experiment.mlflow_experiment,
                                                experiment.name, {})
    (tmp_path / "train.yaml").write_text(
        yaml.safe_dump(train_config(trial, str(tmp_path / "output"))))
    meta = runner_meta(experiment, trial, git_sha="d" * 40, pr=7, parent_run_id=parent)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return experiment, trial, parent


def runner_command(tmp_path: Path) -> list[str]:
    python = trainer_python()
    if python is None:
        pytest.skip("no trainer environment: run `make trainer` or set SWEEPCTL_TRAINER_PYTHON")
    return [str(python), str(RUNNER), "--config", str(tmp_path / "train.yaml"),
            "--meta", str(tmp_path / "meta.json")]


def runner_env(tracking_uri: str) -> dict[str, str]:
    # MLFLOW_RUN_ID in the caller's environment must not redirect the trial
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1",
            "MLFLOW_RUN_ID": "0" * 32, "TOKENIZERS_PARALLELISM": "false"}


def run_runner(tmp_path: Path, tracking_uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(runner_command(tmp_path), cwd=tmp_path, env=runner_env(tracking_uri),
                          capture_output=True, text=True, timeout=600, check=False)


def all_runs(tracking_uri: str, experiment: Experiment) -> list[mlflow_store.RunRecord]:
    return list(mlflow_store.iter_runs(tracking_uri, experiment.mlflow_experiment, ""))


def test_one_finished_run_with_tags_params_and_eval(tmp_path: Path, mlflow_server: str,
                                                    tiny_model: Path) -> None:
    experiment, trial, parent = write_inputs(tmp_path, mlflow_server, tiny_config(tiny_model))
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

    artifacts = [a.path for a in MlflowClient(mlflow_server).list_artifacts(run.run_id)]
    assert "train.yaml" in artifacts


def test_a_broken_config_ends_failed_with_the_error(tmp_path: Path, mlflow_server: str,
                                                    tiny_model: Path) -> None:
    config = tiny_config(tiny_model, lora_ranks=8)  # a typo LLaMA-Factory refuses
    experiment, trial, _ = write_inputs(tmp_path, mlflow_server, config, with_parent=False)
    result = run_runner(tmp_path, mlflow_server)
    assert result.returncode == 1
    assert "lora_ranks" in result.stderr

    runs = all_runs(mlflow_server, experiment)
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "FAILED"
    assert run.trial_name == trial.name
    assert "lora_ranks" in run.tags["sweepctl.error"]
    assert run.tags["sweepctl.exit_status"] == "1"
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
