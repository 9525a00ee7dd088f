"""`sweepctl new`: the scaffolded folder validates, explains itself, and bad names are refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from sweepctl.cli.main import main
from sweepctl.spec.scaffold import RESULTS_BEGIN, RESULTS_END, render_files, scaffold
from sweepctl.spec.validate import validate_paths

REPO_ROOT = Path(__file__).resolve().parent.parent
YAML_FILES = ("experiment.yaml", "baseline.yaml", "sweep.yaml", "checklist.yaml")


@pytest.fixture
def in_repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory shaped like this repo: schemas/ beside experiments/."""
    (tmp_path / "schemas").symlink_to(REPO_ROOT / "schemas")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_new_creates_a_folder_that_validates(in_repo_copy: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "lora-rank-sweep"]) == 0
    folder = in_repo_copy / "experiments" / "lora-rank-sweep"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*YAML_FILES, "notes.md"])
    assert "created experiments/lora-rank-sweep/" in capsys.readouterr().out

    assert main(["validate", "experiments", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checked"] == 1
    assert report["errors"] == 0, report["findings"]


def test_validate_library_reports_zero_errors(tmp_path: Path) -> None:
    folder = scaffold(tmp_path / "experiments", "my-sweep")
    result = validate_paths([folder])
    assert result.checked_folders == 1
    assert [str(f) for f in result.findings.errors] == []
    assert len(result.experiments) == 1
    assert result.experiments[0].name == "my-sweep"


def test_schema_line_points_at_the_repo_schemas(in_repo_copy: Path) -> None:
    assert main(["new", "a1"]) == 0
    for file_name in YAML_FILES:
        first = (in_repo_copy / "experiments" / "a1" / file_name).read_text().splitlines()[0]
        kind = file_name.removesuffix(".yaml")
        assert first == f"# yaml-language-server: $schema=../../schemas/{kind}.schema.json"
        target = (in_repo_copy / "experiments" / "a1" / first.split("=", 1)[1]).resolve()
        assert target.is_file()


def test_schema_line_follows_a_deeper_dir(in_repo_copy: Path) -> None:
    assert main(["new", "deep", "--dir", "teams/nlp/experiments"]) == 0
    text = (in_repo_copy / "teams/nlp/experiments/deep/sweep.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../../../../schemas/sweep.schema.json")


def test_baseline_holds_the_seeds_values(tmp_path: Path) -> None:
    folder = scaffold(tmp_path, "seeded")
    baseline = yaml.safe_load((folder / "baseline.yaml").read_text())
    assert baseline | {
        "model_name_or_path": "/storage/models/base-model",
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_target": "q_proj,k_proj,v_proj,o_proj",
        "learning_rate": 1.0e-4,
        "num_train_epochs": 3,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "warmup_ratio": 0.1,
        "lr_scheduler_type": "cosine",
        "cutoff_len": 2048,
        "val_size": 0.1,
        "template": "llama3",
        "seed": 42,
    } == baseline
    assert not {"report_to", "output_dir", "run_name"} & set(baseline)


def test_every_top_level_field_is_explained(tmp_path: Path) -> None:
    folder = scaffold(tmp_path, "explained")
    for file_name in YAML_FILES:
        lines = (folder / file_name).read_text().splitlines()
        for i, line in enumerate(lines):
            if not line or line[0] in "# " or ":" not in line:
                continue
            explained = "#" in line or lines[i - 1].startswith("#")
            assert explained, f"{file_name}:{i + 1}: {line!r} has no comment"


def test_notes_has_the_results_markers_once(tmp_path: Path) -> None:
    text = (scaffold(tmp_path, "noted") / "notes.md").read_text()
    assert text.count(RESULTS_BEGIN) == 1
    assert text.count(RESULTS_END) == 1
    assert text.index(RESULTS_BEGIN) < text.index(RESULTS_END)


def test_owner_with_yaml_syntax_is_quoted(tmp_path: Path) -> None:
    folder = scaffold(tmp_path, "owned", owner="Anna # ML: platform")
    data = yaml.safe_load((folder / "experiment.yaml").read_text())
    assert data["owner"] == "Anna # ML: platform"
    assert data["name"] == "owned"


@pytest.mark.parametrize("name", ["Lora", "lora_rank", "-lora", "lora-", "a" * 41, "lora.rank",
                                  "lora rank", "ł"])
def test_invalid_name_is_refused_in_one_line(name: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "--dir", str(tmp_path), "--", name]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("sweepctl: error: experiment name")
    assert list(tmp_path.iterdir()) == []


def test_forty_characters_is_allowed(tmp_path: Path) -> None:
    assert main(["new", "a" * 40, "--dir", str(tmp_path)]) == 0


def test_existing_folder_is_refused_and_untouched(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.md").write_text("mine\n")
    assert main(["new", "taken", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "already exists" in err
    assert os.listdir(tmp_path / "taken") == ["notes.md"]
    assert (tmp_path / "taken" / "notes.md").read_text() == "mine\n"


def test_render_is_deterministic() -> None:
    assert render_files("x", "o") == render_files("x", "o")


def test_mlflow_tick_means_the_name_is_chosen_not_that_it_exists(tmp_path: Path) -> None:
    # only launch creates the MLflow experiment, so "tick once it exists" could never be
    # done before the first launch; the tick means "I chose mlflow.experiment"
    folder = scaffold(tmp_path, "ticked")
    checklist = folder / "checklist.yaml"
    line = next(t for t in checklist.read_text().splitlines()
                if t.startswith("mlflow_experiment_created:"))
    assert line.split("#", 1)[1].strip() == "tick once you chose mlflow.experiment; launch " \
        "creates it"
    # ticking it with no MLflow anywhere (no tracking server, no ./mlruns) is simply true
    checklist.write_text(checklist.read_text().replace("mlflow_experiment_created: false",
                                                       "mlflow_experiment_created: true"))
    rules = {f.rule for f in validate_paths([folder]).findings}
    assert "checklist-mlflow-experiment-created" not in rules
    assert not (tmp_path / "mlruns").exists()
