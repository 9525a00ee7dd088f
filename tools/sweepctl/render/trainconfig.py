"""What a trial hands to LLaMA-Factory and to the trial runner.

Three pure functions: the per-trial train config (the resolved config plus the keys
sweepctl owns), the trial's MLflow tags (design.md "MLflow conventions") and the
runner's metadata (meta.json beside train.yaml in the trial's ConfigMap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweepctl.clients.mlflow_store import (
    TAG_EXPERIMENT,
    TAG_GIT_SHA,
    TAG_PR,
    TAG_ROLE,
    TAG_SPEC_HASH,
    TAG_TRIAL,
    TAG_TRIAL_ID,
)
from sweepctl.errors import SweepctlError
from sweepctl.spec.model import OWNED_KEYS, Experiment
from sweepctl.sweep.tpe import round_tags
from sweepctl.sweep.trial import Trial

META_VERSION = 1
# checkpoints a retried trial resumes from (design.md "Trial lifecycle on a cluster"):
# often enough that a preemption loses little, few enough that the PVC does not fill up
DEFAULT_SAVE_STEPS = 200
DEFAULT_SAVE_TOTAL_LIMIT = 2
EARLY_STOP_RULES = ("median",)
TIER_MEMORY_EFFICIENT = "memory_efficient"
TIER_HIGH_QUALITY = "high_quality"
TIER_BALANCED = "balanced"
HIGH_QUALITY_RANK = 32


def train_config(trial: Trial, output_dir: str) -> dict[str, Any]:
    """The trial's LLaMA-Factory config; sweepctl alone decides where and how it reports.

    Checkpointing is on by default (every DEFAULT_SAVE_STEPS steps, the newest
    DEFAULT_SAVE_TOTAL_LIMIT kept in output_dir) so that a retried trial resumes; a
    trial's own save_strategy / save_steps / save_total_limit win (``save_strategy: no``
    opts out of resuming).
    """
    config = {key: value for key, value in trial.config.items() if key not in OWNED_KEYS}
    config["report_to"] = "mlflow"
    config["output_dir"] = output_dir
    # the transformers callback names its run after run_name (LLaMA-Factory ignores
    # MLFLOW_RUN_NAME), so the trial name goes here too
    config["run_name"] = trial.name
    config.setdefault("save_strategy", "steps")
    config.setdefault("save_steps", DEFAULT_SAVE_STEPS)
    config.setdefault("save_total_limit", DEFAULT_SAVE_TOTAL_LIMIT)
    return config


def tier(config: Mapping[str, Any]) -> str:
    """The seed's auto-tagging: quantized runs first, then the high-rank ones."""
    if _as_int(config.get("quantization_bit")) == 4:
        return TIER_MEMORY_EFFICIENT
    rank = _as_int(config.get("lora_rank"))
    if rank is not None and rank >= HIGH_QUALITY_RANK:
        return TIER_HIGH_QUALITY
    return TIER_BALANCED


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def trial_tags(experiment: Experiment, trial: Trial, git_sha: str | None,
               pr: int | str | None, *, spec_hash: str | None = None) -> dict[str, str]:
    """Every tag of a trial run; sweepctl's own tags win over the experiment's ``tags:``."""
    tags: dict[str, str] = {str(key): str(value) for key, value in experiment.tags.items()}
    tags.update({
        TAG_EXPERIMENT: experiment.name,
        TAG_TRIAL: trial.name,
        TAG_TRIAL_ID: trial.trial_id,
        TAG_ROLE: "trial",
        "phase": experiment.phase,
        "tier": tier(trial.config),
        "dataset.name": experiment.dataset.name,
        "dataset.version": experiment.dataset.version,
        "dataset.sha256": experiment.dataset.sha256,
    })
    if git_sha:
        tags[TAG_GIT_SHA] = git_sha
        tags["mlflow.source.git.commit"] = git_sha
    if pr is not None and str(pr):
        tags[TAG_PR] = str(pr)
    if spec_hash:
        tags[TAG_SPEC_HASH] = spec_hash
    if trial.round_number:  # tpe: the next launch rebuilds its study from these
        names = experiment.sweep.get("parameters") or {}
        tags.update(round_tags(trial.round_number, {k: trial.config.get(k) for k in names}))
    return tags


def param_keys(config: Mapping[str, Any]) -> list[str]:
    """Keys the runner logs as params under their own names.

    All of the trial's keys except the ones sweepctl owns; the runner itself drops those
    that transformers' TrainingArguments (and so its MLflow callback) already logs,
    because MLflow refuses a param logged twice with different spellings of one value.
    """
    return sorted(key for key in config if key not in OWNED_KEYS)


def early_stop_meta(early_stop: Mapping[str, Any] | None,
                    experiment: Experiment) -> dict[str, Any] | None:
    """sweep.yaml's ``early_stop: {rule, min_steps}`` completed with the objective.

    The objective's metric and goal are what the runner compares; ``min_trials`` is how
    many completed trials the median needs at a step before it prunes (default 1).
    """
    if not early_stop:
        return None
    rule = str(early_stop.get("rule", "median"))
    if rule not in EARLY_STOP_RULES:
        # validate rejects it with a position first; this guards callers that skip validate
        raise SweepctlError(f"unknown early_stop rule {rule!r}; "
                            f"known: {', '.join(EARLY_STOP_RULES)}")
    return {
        "rule": rule,
        "min_steps": int(early_stop.get("min_steps", 0)),
        "min_trials": int(early_stop.get("min_trials", 1)),
        "metric": str(early_stop.get("metric", experiment.objective.metric)),
        "goal": str(early_stop.get("goal", experiment.objective.goal)),
    }


def runner_meta(experiment: Experiment, trial: Trial, *, git_sha: str | None,
                pr: int | str | None, parent_run_id: str | None,
                spec_hash: str | None = None, output_uri: str | None = None,
                log_adapter: bool = False,
                early_stop: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """meta.json: everything the runner needs besides train.yaml and MLFLOW_TRACKING_URI.

    ``output_uri`` is where the trial's output (the adapter) can be found from outside
    the pod (e.g. ``pvc://CLAIM/PATH``); without it the runner records output_dir.
    """
    meta: dict[str, Any] = {
        "version": META_VERSION,
        "mlflow_experiment": experiment.mlflow_experiment,
        "run_name": trial.name,
        "tags": trial_tags(experiment, trial, git_sha, pr, spec_hash=spec_hash),
        "parent_run_id": parent_run_id,
        "log_params": param_keys(trial.config),
        "log_adapter": bool(log_adapter),
    }
    if output_uri:
        meta["output_uri"] = output_uri
    # sweep.yaml's early_stop unless the caller says otherwise: every backend prunes alike
    stop = early_stop_meta(experiment.sweep.get("early_stop") if early_stop is None
                           else early_stop, experiment)
    if stop is not None:
        meta["early_stop"] = stop
    return meta
