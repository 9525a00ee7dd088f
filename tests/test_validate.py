"""The example corpus and the real `sweepctl validate` command.

tests/examples/invalid/<case>/ holds one experiment folder (sometimes a defaults.yaml)
and expected.txt: every finding a user must see, as `file:line:severity:rule` or, where
the wording is the point, as the exact line printed (`file:line:col: severity: message
[rule]`), file relative to the case folder. tests/examples/valid/<case>/ must produce no finding.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sweepctl.cli.main import main
from sweepctl.spec.validate import validate_paths

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "tests" / "examples"
INVALID = sorted(p for p in (EXAMPLES / "invalid").iterdir() if p.is_dir())
VALID = sorted(p for p in (EXAMPLES / "valid").iterdir() if p.is_dir())


def _seen(case: Path, full: frozenset[str] = frozenset()) -> set[str]:
    """Findings as `file:line:severity:rule`, or as the whole line a user reads
    (`file:line:col: severity: message [rule]`) where expected.txt spells that out."""
    seen = set()
    for f in validate_paths([case]).findings:
        name = Path(f.path).relative_to(case).as_posix()
        whole = f"{name}:{f.line}:{f.col}: {f.severity}: {f.message} [{f.rule}]"
        seen.add(whole if whole in full else f"{name}:{f.line}:{f.severity}:{f.rule}")
    return seen


def _expected(case: Path) -> set[str]:
    lines = (case / "expected.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 40
    assert all((case / "expected.txt").is_file() for case in INVALID)


@pytest.mark.parametrize("case", INVALID, ids=[p.name for p in INVALID])
def test_invalid_example(case: Path) -> None:
    expected = _expected(case)
    assert _seen(case, frozenset(expected)) == expected


@pytest.mark.parametrize("case", VALID, ids=[p.name for p in VALID])
def test_valid_example(case: Path) -> None:
    assert _seen(case) == set()


def test_repository_experiments_are_clean() -> None:
    result = validate_paths([REPO_ROOT / "experiments"])
    assert [str(f) for f in result.findings.errors] == []
    examples = [REPO_ROOT / "experiments" / name for name in ("lora-rank-sweep",
                                                              "learning-rate-ofat")]
    assert [str(f) for f in validate_paths(examples).findings] == []
    assert {e.name for e in result.experiments} >= {"lora-rank-sweep", "learning-rate-ofat"}
    assert all(e.checklist_complete for e in result.experiments)


def test_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    # generated here rather than committed: a 1 MiB file does not belong in the repo
    case = tmp_path / "case"
    shutil.copytree(EXAMPLES / "valid" / "grid", case)
    sweep = case / "demo-sweep" / "sweep.yaml"
    sweep.write_text(sweep.read_text() + ("# padding\n" * 110_000))
    # the unreadable sweep.yaml cannot confirm or contradict parameter_space_defined
    assert _seen(case) == {"demo-sweep/sweep.yaml:1:error:yaml-too-large"}


def test_cli_passes_on_the_repository_experiments(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert main(["validate"]) == 0
    assert " error: " not in capsys.readouterr().out


def test_cli_reports_findings_as_compiler_lines(capsys: pytest.CaptureFixture[str]) -> None:
    case = EXAMPLES / "invalid" / "baseline-missing-seed"
    assert main(["validate", str(case)]) == 1
    out = capsys.readouterr().out.splitlines()
    checklist = case / "demo-sweep" / "checklist.yaml"
    assert (f"{checklist}:8:1: error: seed_set is true but baseline.yaml has no 'seed' "
            "[checklist-seed-set]") in out
    assert out[-1] == "2 error(s), 0 warning(s)"


def test_cli_warnings_alone_exit_zero_unless_strict(capsys: pytest.CaptureFixture[str]) -> None:
    case = EXAMPLES / "invalid" / "checklist-unticked"
    assert main(["validate", str(case)]) == 0
    assert "warning: seed_set is not ticked" in capsys.readouterr().out
    assert main(["validate", "--strict", str(case)]) == 1


def test_cli_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2


def test_cli_json_gives_the_same_findings(capsys: pytest.CaptureFixture[str]) -> None:
    case = EXAMPLES / "invalid" / "experiment-budget-typo"
    assert main(["validate", "--format", "json", str(case)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["checked"] == 1 and report["errors"] == 3
    assert {f["rule"] for f in report["findings"]} == {
        "schema-required", "schema-unknown-key", "checklist-budget-defined"}
    unknown = next(f for f in report["findings"] if f["rule"] == "schema-unknown-key")
    assert (unknown["line"], unknown["col"]) == (11, 1)
    assert unknown["message"] == "unknown key 'budjet' in experiment; did you mean 'budget'?"


def test_console_script_end_to_end() -> None:
    # the real entry point in a real process, as pre-commit runs it
    case = EXAMPLES / "invalid" / "baseline-owned-output-dir"
    proc = subprocess.run([sys.executable, "-m", "sweepctl", "validate", str(case)],
                          capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "baseline.yaml:18:1: error: 'output_dir' is set by sweepctl" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_cli_without_experiments_folder_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # from the wrong directory the default experiments/ is missing: passing would be a lie
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    assert capsys.readouterr().err.startswith("sweepctl: error: no experiments/ folder in ")
    (tmp_path / "experiments").mkdir()  # a fresh repo with no experiment yet is fine
    assert main(["validate"]) == 0


def test_ignored_warnings_are_hidden_for_that_experiment_only(tmp_path: Path) -> None:
    quiet, loud = tmp_path / "quiet", tmp_path / "loud"
    shutil.copytree(EXAMPLES / "valid" / "warnings-ignored", quiet)
    shutil.copytree(EXAMPLES / "invalid" / "typical-many", loud)
    # the two folders hold the same experiment name: look at the warnings only
    result = validate_paths([quiet, loud])
    warned = {Path(f.path).relative_to(tmp_path).parts[0] for f in result.findings.warnings}
    assert warned == {"loud"}
    assert len(result.findings.warnings) == len(validate_paths([loud]).findings.warnings) > 0
    # the hidden ones are still counted, so the output can say they were acknowledged
    assert {f.rule for f in result.ignored} == {"typical-range"}
    assert len(result.ignored) == len(result.findings.warnings)
    assert [e.name for e in result.experiments] == ["demo-sweep", "demo-sweep"]


def test_cli_says_how_many_warnings_an_experiment_acknowledged(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Hidden is not gone: the reviewer reads that warnings.ignore silenced something."""
    case = EXAMPLES / "valid" / "warnings-ignored"
    count = len(validate_paths([case]).ignored)
    assert count > 0
    assert main(["validate", str(case)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{count} warning(s) acknowledged by warnings.ignore"


def test_cli_says_nothing_about_acknowledged_warnings_when_there_are_none(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES / "valid" / "grid")]) == 0
    assert "acknowledged" not in capsys.readouterr().out


def test_a_password_in_the_defaults_tracking_uri_is_an_error_never_echoed(
        capsys: pytest.CaptureFixture[str]) -> None:
    case = EXAMPLES / "invalid" / "defaults-password-in-uri"
    assert main(["validate", str(case)]) == 1
    out = capsys.readouterr().out
    assert "defaults.yaml:2:17: error: the value of mlflow.tracking_uri looks like a " \
           "password in a URL" in out
    assert "hunter2" not in out and "trainer:" not in out
