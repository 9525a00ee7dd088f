"""GPU-hours count the GPUs a trial holds (issue 10 finding 7): gpus_per_trial x
nodes_per_trial of the resolved runtime (defaults.yaml + the experiment's ``runtime:``),
the same figure in validate's budget check and in the plan."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sweepctl.cli.main import main
from sweepctl.spec.validate import validate_paths
from sweepctl.usecases.plan import build_plan

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "experiments" / "lora-rank-sweep"


def make_repo(tmp_path: Path, gpus: int, nodes: int = 1, override: int | None = None,
              gpu_hours: float = 40) -> Path:
    """lora-rank-sweep (3 trials after dropping the baseline duplicate, 3 h each) under
    the repository's defaults.yaml with the GPUs given there (and, if asked, overridden
    in experiment.yaml's runtime)."""
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    defaults = yaml.safe_load((REPO_ROOT / "experiments" / "defaults.yaml").read_text())
    defaults["kubernetes"].update(gpus_per_trial=gpus, nodes_per_trial=nodes)
    (experiments / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    folder = experiments / EXAMPLE.name
    shutil.copytree(EXAMPLE, folder)
    sweep = folder / "sweep.yaml"
    text = sweep.read_text()
    start = text.index("lora_rank: [")
    sweep.write_text(text[:start] + "lora_rank: [8, 16, 32]" + text[text.index("]", start) + 1:])
    doc: dict[str, Any] = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["budget"]["gpu_hours"] = gpu_hours
    if override is not None:
        doc.setdefault("runtime", {}).setdefault("kubernetes", {})["gpus_per_trial"] = override
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    return folder


def budget_lines(folder: Path) -> list[str]:
    return [f.message for f in validate_paths([folder]).findings if f.rule == "budget-gpu-hours"]


def test_one_gpu_per_trial_is_the_old_figure(tmp_path: Path) -> None:
    folder = make_repo(tmp_path, gpus=1)
    assert budget_lines(folder) == []
    assert build_plan(folder).gpu_hours == 9


def test_gpus_and_nodes_of_defaults_yaml_multiply_the_budget(tmp_path: Path) -> None:
    """3 trials x 3 h = 9 h was within 40 GPU-hours; on 4 GPUs x 2 nodes it is 72."""
    folder = make_repo(tmp_path, gpus=4, nodes=2)
    assert budget_lines(folder) == [
        "3 trials x 3 h x 4 GPU(s) x 2 nodes = 72 GPU-hours; budget.gpu_hours in "
        "experiment.yaml is 40"]
    plan = build_plan(folder)
    assert plan.gpus_per_trial == 8
    assert plan.gpu_hours == 72 and plan.over_gpu_hours and not plan.ok


def test_the_experiments_runtime_override_is_what_counts(tmp_path: Path) -> None:
    folder = make_repo(tmp_path, gpus=1, override=8)
    assert budget_lines(folder) == [
        "3 trials x 3 h x 8 GPU(s) = 72 GPU-hours; budget.gpu_hours in experiment.yaml is 40"]
    assert build_plan(folder).gpu_hours == 72


def test_within_budget_on_several_gpus(tmp_path: Path) -> None:
    folder = make_repo(tmp_path, gpus=2, gpu_hours=18)
    assert budget_lines(folder) == []
    plan = build_plan(folder)
    assert plan.gpu_hours == 18 and plan.ok


def test_plan_refuses_nothing_but_reports_the_multi_gpu_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """What a reviewer reads: the plan's budget line uses the GPU count too."""
    folder = make_repo(tmp_path, gpus=4, nodes=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["plan", str(folder), "--offline"]) == 1
    assert "72 GPU-hours" in capsys.readouterr().out


def test_cpu_trials_spend_no_gpu_hours(tmp_path: Path) -> None:
    folder = make_repo(tmp_path, gpus=0, gpu_hours=1)
    assert budget_lines(folder) == []
    assert build_plan(folder).gpu_hours == 0
