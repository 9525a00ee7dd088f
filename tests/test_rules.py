"""Semantic rules, by hand: the messages a user reads, and the positions they jump to."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweepctl.findings import Finding, Findings
from sweepctl.spec.folder import load_experiment
from sweepctl.spec.model import FILE_KINDS
from sweepctl.spec.rules import check_rules, ignored_warnings
from sweepctl.spec.schemas import check_schema
from sweepctl.spec.validate import validate_paths
from sweepctl.spec.yamlload import Document

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = REPO_ROOT / "experiments" / "lora-rank-sweep"


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    folder = tmp_path / "lora-rank-sweep"
    shutil.copytree(SOURCE, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def findings(folder: Path) -> list[Finding]:
    return validate_paths([folder]).findings.sorted()


def test_the_example_is_clean(exp: Path) -> None:
    assert findings(exp) == []


def test_seed_tick_contradicted_names_both_files(exp: Path) -> None:
    edit(exp / "baseline.yaml", "seed: 42\n", "")
    messages = [str(f) for f in findings(exp)]
    assert f"{exp}/checklist.yaml:8:1: error: seed_set is true but baseline.yaml has no 'seed' " \
           "[checklist-seed-set]" in messages


def test_dataset_lock_contradiction_points_at_the_version_line(exp: Path) -> None:
    edit(exp / "experiment.yaml", "version: v2.1.0", "version: latest")
    [finding] = findings(exp)
    assert (finding.path, finding.line, finding.rule) == (
        str(exp / "checklist.yaml"), 7, "checklist-dataset-version-locked")
    assert "experiment.yaml:18 dataset.version is 'latest'" in finding.message


def test_unticked_item_is_a_warning_not_an_error(exp: Path) -> None:
    edit(exp / "checklist.yaml", "budget_defined: true ", "budget_defined: false")
    [finding] = findings(exp)
    assert finding.severity == "warning" and finding.rule == "checklist-incomplete"
    assert "will not launch" in finding.message
    assert validate_paths([exp]).ok


def test_unparsable_file_does_not_add_checklist_noise(exp: Path) -> None:
    (exp / "baseline.yaml").write_text("seed: [unclosed\n")
    assert [f.rule for f in findings(exp)] == ["yaml-syntax"]


def test_missing_file_contradicts_its_tick(exp: Path) -> None:
    (exp / "baseline.yaml").unlink()
    rules = {(Path(f.path).name, f.rule) for f in findings(exp)}
    assert rules == {("baseline.yaml", "missing-file"),
                     ("checklist.yaml", "checklist-baseline-defined"),
                     ("checklist.yaml", "checklist-seed-set")}


def test_near_miss_suggests_the_real_key(exp: Path) -> None:
    edit(exp / "baseline.yaml", "lora_rank: 8", "lora_ranks: 8")
    near = [f for f in findings(exp) if f.rule == "near-miss-key"]
    assert [(f.line, f.col, f.message) for f in near] == [
        (10, 1, "unknown key 'lora_ranks': did you mean 'lora_rank'?")]


def test_custom_unknown_key_passes(exp: Path) -> None:
    (exp / "baseline.yaml").write_text((exp / "baseline.yaml").read_text() + "my_flag: 1\n")
    assert findings(exp) == []


def test_owned_keys_are_errors(exp: Path) -> None:
    text = (exp / "baseline.yaml").read_text()
    (exp / "baseline.yaml").write_text(text + "report_to: wandb\nrun_name: x\n")
    owned = [(f.line, f.message) for f in findings(exp) if f.rule == "owned-key"]
    assert owned == [(27, "'report_to' is set by sweepctl for each trial; remove it from "
                          "baseline.yaml"),
                     (28, "'run_name' is set by sweepctl for each trial; remove it from "
                          "baseline.yaml")]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("lora_rank: 8", "lora_rank: 4", "lora_rank 4 is outside the typical range 8-64"),
    ("learning_rate: 1.0e-4", "learning_rate: 5.0e-6",
     "learning_rate 5e-06 is outside the typical range 1e-05-0.0003"),
    ("lora_alpha: 16", "lora_alpha: 8",
     "lora_alpha 8 is outside the typical range 16-64 (or 2 x lora_rank)"),
    ("val_size: 0.1", "val_size: 0.3", "val_size 0.3 is outside the typical range 0.05-0.2"),
])
def test_typical_ranges_warn_with_the_value_position(exp: Path, old: str, new: str,
                                                     message: str) -> None:
    edit(exp / "baseline.yaml", old, new)
    [finding] = findings(exp)
    assert (finding.severity, finding.rule, finding.message) == ("warning", "typical-range",
                                                                 message)
    key = new.split(":")[0]
    line = (exp / "baseline.yaml").read_text().splitlines().index(new) + 1
    assert (finding.line, finding.col) == (line, len(key) + 3)


def test_alpha_twice_rank_is_typical_at_any_rank(exp: Path) -> None:
    edit(exp / "baseline.yaml", "lora_rank: 8", "lora_rank: 64")
    edit(exp / "baseline.yaml", "lora_alpha: 16", "lora_alpha: 128")
    assert findings(exp) == []


def test_row_count_val_size_is_not_a_fraction(exp: Path) -> None:
    edit(exp / "baseline.yaml", "val_size: 0.1", "val_size: 500")
    assert findings(exp) == []


def test_name_must_equal_folder(exp: Path) -> None:
    target = exp.parent / "renamed"
    exp.rename(target)
    [finding] = findings(target)
    assert finding.rule == "name-mismatch"
    assert finding.message == ("name 'lora-rank-sweep' differs from the folder name 'renamed'; "
                               "rename one so they match")


def test_names_are_unique_across_folders(exp: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "lora-rank-sweep"
    shutil.copytree(exp, other)
    dupes = [f for f in validate_paths([exp, other]).findings if f.rule == "duplicate-name"]
    assert {f.path for f in dupes} == {str(exp / "experiment.yaml"),
                                       str(other / "experiment.yaml")}


_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=8)
_data = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["name", "strategy", "parameters", "trials", "derived", "seed", "lora_rank",
                     "objective", "budget", "dataset", "version", "metric", "target",
                     "seed_set", "baseline_defined", "low", "high", "choices", "x"]),
    inner, max_size=5), max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({kind: _data for kind in FILE_KINDS}))
def test_rules_never_raise_on_any_data(data: dict[str, Any]) -> None:
    # whatever shape the files have, the user gets findings, never a traceback
    folder = Path("/nonexistent/demo")
    docs = {kind: Document(folder / f"{kind}.yaml", value) for kind, value in data.items()}
    found = Findings()
    schema_ok = {kind: check_schema(doc, kind, found) for kind, doc in docs.items()}
    check_rules(folder, docs, schema_ok, found)
    assert all(f.line >= 1 and f.col >= 1 and f.rule for f in found)


def _example_data() -> dict[str, Any]:
    from sweepctl.spec.yamlload import load_document
    return {kind: load_document(SOURCE / f"{kind}.yaml").data for kind in FILE_KINDS}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FILE_KINDS), st.text(max_size=3) | st.sampled_from(
    ["seed", "lora_rank", "lora_alpha", "val_size", "parameters", "derived", "trials",
     "strategy", "budget", "objective", "dataset", "name", "eval_dataset", "quantization_bit"]),
    _data)
def test_rules_never_raise_on_a_mutated_example(kind: str, key: str, value: Any) -> None:
    # one key of a valid experiment replaced by anything: the gates behind the schemas hold
    data = _example_data()
    if isinstance(data[kind], dict):
        data[kind][key] = value
    folder = SOURCE
    docs = {k: Document(folder / f"{k}.yaml", v) for k, v in data.items()}
    found = Findings()
    schema_ok = {k: check_schema(doc, k, found) for k, doc in docs.items()}
    check_rules(folder, docs, schema_ok, found)


@pytest.mark.parametrize("arg", [".", "experiment.yaml", "./"])
def test_validating_from_inside_the_folder_knows_its_name(exp: Path, arg: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Path(".").name is "": the folder's name must come from where it really is
    monkeypatch.chdir(exp)
    assert [str(f) for f in validate_paths([Path(arg)]).findings] == []


def test_name_mismatch_still_names_the_real_folder(exp: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    edit(exp / "experiment.yaml", "name: lora-rank-sweep", "name: other-name")
    monkeypatch.chdir(exp)
    [finding] = validate_paths([Path(".")]).findings
    assert finding.rule == "name-mismatch"
    assert "folder name 'lora-rank-sweep'" in finding.message


def test_non_finite_numbers_are_errors_where_they_are_written(exp: Path) -> None:
    # `.nan` passes every JSON Schema bound; `1e999` is infinity: neither can be a config,
    # a trial id or a budget, and the finding points at the value, not at the sweep
    edit(exp / "experiment.yaml", "target: 0.40", "target: .nan")
    edit(exp / "sweep.yaml", "lora_rank: [8, 16, 32]", "lora_rank: [8, 1e999]")
    assert [(Path(f.path).name, f.line, f.severity, f.rule) for f in findings(exp)] == [
        ("experiment.yaml", 10, "error", "non-finite-number"),
        ("sweep.yaml", 5, "error", "non-finite-number")]


def test_ignored_warnings_come_from_experiment_yaml() -> None:
    case = Path(__file__).resolve().parent / "examples" / "valid" / "warnings-ignored"
    experiment = load_experiment(case / "demo-sweep")
    assert ignored_warnings(experiment) == {"typical-range"}
    assert ignored_warnings(experiment.docs["experiment"].data) == {"typical-range"}
    assert ignored_warnings({"name": "x"}) == frozenset()
    # a name the schema refuses (an error rule) never hides anything
    assert ignored_warnings({"warnings": {"ignore": ["sweep-value-invalid"]}}) == frozenset()
