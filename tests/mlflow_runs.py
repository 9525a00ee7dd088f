"""Helpers for the results tests: experiment folders and MLflow runs logged exactly as
the trial runner logs them (tags, LLaMA-Factory params under their own names, the
transformers callback's metrics with `loss` per step)."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from sweepctl.clients.mlflow_store import TAG_EXPERIMENT, TAG_PR, TAG_ROLE, TAG_TRIAL, TAG_TRIAL_ID
from sweepctl.spec.folder import load_experiment
from sweepctl.spec.model import Experiment
from sweepctl.sweep.expand import expand
from sweepctl.sweep.trial import Trial

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE = "ghcr.io/example/llama-factory-train:0.9.5"  # defaults.yaml's kubernetes.image
LOGGED_KEYS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "learning_rate",
               "cutoff_len", "template", "finetuning_type", "seed", "num_train_epochs")


def make_experiment(root: Path, sweep: str | None = None, source: str = "lora-rank-sweep",
                    max_trials: int | None = None) -> tuple[Path, str]:
    """A copy of an example experiment under root/experiments with a unique MLflow
    experiment name (so tests sharing the session's server do not see each other)."""
    experiments = root / "experiments"
    experiments.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "experiments" / "defaults.yaml", experiments / "defaults.yaml")
    folder = experiments / source
    shutil.copytree(REPO_ROOT / "experiments" / source, folder)
    mlflow_name = f"test-{uuid.uuid4().hex[:10]}"
    text = (folder / "experiment.yaml").read_text()
    text = text.replace("experiment: llama-finetuning", f"experiment: {mlflow_name}")
    # a dataset hash of its own: the trial ids are this test's alone, so a FINISHED run
    # another test logged to the shared server is never reused here (reuse crosses MLflow
    # experiments by design)
    text = re.sub(r"sha256: [0-9a-f]{64}", f"sha256: {uuid.uuid4().hex * 2}", text)
    if max_trials is not None:
        text = text.replace("max_trials: 10", f"max_trials: {max_trials}")
    (folder / "experiment.yaml").write_text(text)
    if sweep is not None:
        (folder / "sweep.yaml").write_text(sweep)
    return folder, mlflow_name


def copies(root: Path, count: int) -> list[Path]:
    """``count`` experiments under root/experiments, each with its own name and MLflow
    experiment (so the scan has to cover several)."""
    first, _ = make_experiment(root, source="lora-rank-sweep")
    folders = [first]
    for i in range(1, count):
        folder = first.parent / f"rank-copy-{i}"
        shutil.copytree(first, folder)
        doc = yaml.safe_load((folder / "experiment.yaml").read_text())
        doc["name"] = folder.name
        doc["mlflow"]["experiment"] = f"{doc['mlflow']['experiment']}-{i}"
        (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
        folders.append(folder)
    return folders


def trials_of(folder: Path) -> tuple[Experiment, list[Trial]]:
    experiment = load_experiment(folder)
    return experiment, expand(experiment, IMAGE)


def log_trial(client: MlflowClient, experiment: Experiment, trial: Trial,
              status: str = "FINISHED", metrics: Mapping[str, float] | None = None,
              pr: int | None = None, start: int | None = None) -> str:
    """One trial run as the runner leaves it; returns the run id."""
    experiment_id = client.get_experiment_by_name(experiment.mlflow_experiment)
    eid = (experiment_id.experiment_id if experiment_id is not None
           else client.create_experiment(experiment.mlflow_experiment))
    rank = int(trial.config.get("lora_rank", 8))
    tags = {TAG_EXPERIMENT: experiment.name, TAG_TRIAL: trial.name,
            TAG_TRIAL_ID: trial.trial_id, TAG_ROLE: "trial", "phase": experiment.phase,
            "tier": "high_quality" if rank >= 32 else "balanced",
            "dataset.version": experiment.dataset.version, **experiment.tags}
    if pr is not None:
        tags[TAG_PR] = str(pr)
    run = client.create_run(eid, run_name=trial.name, tags=tags, start_time=start)
    now = int(time.time() * 1000)
    values: dict[str, Any] = dict(metrics or {})
    batch = []
    loss = values.pop("loss", None)
    if loss is not None:  # `loss` per step, the last one is the final train loss
        batch += [Metric("loss", loss + 0.3 / step, now, step) for step in (1, 2)]
        batch.append(Metric("loss", loss, now, 3))
    batch += [Metric(k, float(v), now, 3) for k, v in values.items()]
    params = [Param(k, str(trial.config[k])) for k in LOGGED_KEYS if k in trial.config]
    client.log_batch(run.info.run_id, metrics=batch, params=params,
                     tags=[RunTag("mlflow.runName", trial.name)])
    if status not in ("RUNNING", "SCHEDULED"):
        client.set_terminated(run.info.run_id, status=status)
    return str(run.info.run_id)


def result(eval_loss: float, runtime: float, loss: float = 0.5,
           samples: float = 10.0) -> dict[str, float]:
    return {"eval_loss": eval_loss, "train_runtime": runtime, "loss": loss,
            "train_loss": loss + 0.1, "train_samples_per_second": samples, "epoch": 3.0}
