"""`sweepctl history` on a real git repository with a scripted history."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sweepctl.cli.main import main
from sweepctl.usecases.history import diff_params, parse_trailers, pr_number

EXP = "experiments/lora-rank-sweep"

BASELINE = """\
model_name_or_path: meta-llama/Meta-Llama-3-8B
finetuning_type: lora
lora_rank: 16
lora_alpha: 32
learning_rate: 2.0e-4
seed: 42
fp16: true
"""
SWEEP = """\
strategy: grid
parameters:
  lora_rank: [8, 16]
  learning_rate: [1.0e-4, 2.0e-4]
derived:
  lora_alpha: 2 * lora_rank
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True)
    return done.stdout.strip()


def write(repo: Path, name: str, text: str) -> None:
    path = repo / EXP / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def scripted(git_repo: Path) -> dict[str, str]:
    """Proposal, two spec edits, an unrelated commit, a broken edit and its fix, results."""
    (git_repo / "README.md").write_text("repo\n")
    shas = {"init": commit(git_repo, "Initial commit")}
    write(git_repo, "experiment.yaml", "name: lora-rank-sweep\nbudget:\n  gpu_hours: 40\n")
    write(git_repo, "baseline.yaml", BASELINE)
    write(git_repo, "sweep.yaml", SWEEP)
    write(git_repo, "notes.md", "# notes\n")
    shas["proposal"] = commit(git_repo, "Propose the LoRA rank sweep (#12)")
    write(git_repo, "sweep.yaml", SWEEP.replace("[8, 16]", "[8, 16, 32]"))
    write(git_repo, "experiment.yaml", "name: lora-rank-sweep\nbudget:\n  gpu_hours: 60\n")
    shas["edit1"] = commit(git_repo, "Add rank 32 and raise the budget\n\nReviewers asked.")
    write(git_repo, "baseline.yaml",
          BASELINE.replace("learning_rate: 2.0e-4", "learning_rate: 1.0e-4")
          .replace("fp16: true\n", "bf16: true\n"))
    shas["edit2"] = commit(git_repo, "Merge pull request #14 from anna/bf16\n\nbf16 and lr")
    (git_repo / "other.txt").write_text("unrelated\n")
    commit(git_repo, "Unrelated change")
    write(git_repo, "sweep.yaml", "strategy: grid\nparameters: [\n")
    shas["broken"] = commit(git_repo, "Broken sweep")
    write(git_repo, "sweep.yaml", SWEEP.replace("[8, 16]", "[8, 16, 32]"))
    shas["fixed"] = commit(git_repo, "Fix the sweep")
    write(git_repo, "notes.md", "# notes\n<!-- sweepctl:results:begin -->\n| r | loss |\n")
    shas["results"] = commit(
        git_repo, "sweepctl: results for lora-rank-sweep\n\n"
        "Sweepctl-Experiment: lora-rank-sweep\nSweepctl-Result: notes.md")
    shas["launch"] = commit(
        git_repo, "Record the launch\n\nSweepctl-Experiment: lora-rank-sweep\n"
        "Sweepctl-Launch: 9 trials")
    shas["other-exp"] = commit(
        git_repo, "Record another\n\nSweepctl-Experiment: lora-rank-sweep-2\n"
        "Sweepctl-Launch: 1 trial")
    return shas


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_text_names_every_change(scripted: dict[str, str], git_repo: Path,
                                 capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(git_repo)
    code, out, err = run(capsys, "history", EXP)
    assert (code, err) == (0, "")
    assert out.startswith("lora-rank-sweep (experiments/lora-rank-sweep): 7 commits, oldest first")
    blocks = out.split("\n\n")[1:]
    assert [b.split()[0] for b in blocks] == [scripted[k][:7] for k in (
        "proposal", "edit1", "edit2", "broken", "fixed", "results", "launch")]
    proposal, edit1, edit2, broken, fixed, results, launch = blocks
    assert "Test Author <author@example.com> (#12) [proposed]" in proposal
    assert "proposed: baseline.yaml, experiment.yaml, notes.md, sweep.yaml" in proposal
    assert "[edited]" in edit1 and "(#" not in edit1.splitlines()[0]
    assert "sweep.yaml: parameters.lora_rank: [8, 16] -> [8, 16, 32]" in edit1
    assert "experiment.yaml: budget.gpu_hours: 40 -> 60" in edit1
    assert "(#14)" in edit2
    assert "baseline.yaml: learning_rate: 0.0002 -> 0.0001" in edit2
    assert "baseline.yaml: + bf16 = true" in edit2
    assert "baseline.yaml: - fp16 (was true)" in edit2
    assert "warning: sweep.yaml did not parse at" in broken
    assert "warning: sweep.yaml did not parse at" in fixed  # its parent is the broken one
    assert "[results]" in results and "modified: notes.md" in results
    assert "Sweepctl-Experiment: lora-rank-sweep" in results
    assert "Sweepctl-Result: notes.md" in results
    assert "[launch]" in launch and "Sweepctl-Launch: 9 trials" in launch
    assert "Unrelated change" not in out and "Record another" not in out


def test_json_is_the_same_as_data(scripted: dict[str, str], git_repo: Path,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(git_repo)
    code, out, _ = run(capsys, "history", "lora-rank-sweep", "--format", "json")
    assert code == 0
    data = json.loads(out)
    entries = {e["sha"]: e for e in data["entries"]}
    edit1 = entries[scripted["edit1"]]
    assert edit1["files"] == {"experiment.yaml": "modified", "sweep.yaml": "modified"}
    assert {"file": "sweep.yaml", "key": "parameters.lora_rank", "kind": "changed",
            "old": [8, 16], "new": [8, 16, 32]} in edit1["changes"]
    assert entries[scripted["edit2"]]["pr"] == 14
    assert entries[scripted["results"]]["trailers"] == [
        ["Sweepctl-Experiment", "lora-rank-sweep"], ["Sweepctl-Result", "notes.md"]]
    assert entries[scripted["proposal"]]["date"].startswith("20")


def test_branch_commits_take_the_pr_of_their_merge(git_repo: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write(git_repo, "baseline.yaml", BASELINE)
    commit(git_repo, "Propose")
    git(git_repo, "checkout", "-q", "-b", "anna/rank")
    write(git_repo, "baseline.yaml", BASELINE.replace("lora_rank: 16", "lora_rank: 32"))
    branch = commit(git_repo, "Try rank 32")
    git(git_repo, "checkout", "-q", "main")
    (git_repo / "x.txt").write_text("x\n")
    commit(git_repo, "Elsewhere")
    git(git_repo, "merge", "-q", "--no-ff", "anna/rank", "-m",
        "Merge pull request #21 from anna/rank")
    monkeypatch.chdir(git_repo)
    code, out, _ = run(capsys, "history", EXP, "--format", "json")
    entries = {e["sha"]: e for e in json.loads(out)["entries"]}
    assert code == 0
    assert entries[branch]["pr"] == 21
    assert [e["kind"] for e in entries.values()] == ["proposed", "edited", "merge"]


def test_unknown_folder_is_one_line(git_repo: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (git_repo / "a").write_text("a\n")
    commit(git_repo, "init")
    monkeypatch.chdir(git_repo)
    code, _, err = run(capsys, "history", "experiments/nope")
    assert code == 2
    assert err.strip() == ("sweepctl: error: no commit in HEAD touched experiments/nope "
                           "(is it committed?)")


def test_helpers() -> None:
    assert pr_number("Fix things (#123)\n\nbody") == 123
    assert pr_number("Merge pull request #7 from a/b") == 7
    assert pr_number("See #7 for details") is None
    assert parse_trailers("s\n\nbody\n\nA-B: 1\nSweepctl-Result: x\n  y") == (
        ("A-B", "1"), ("Sweepctl-Result", "x y"))
    assert parse_trailers("s\n\nnot a trailer line\nKey: v") == ()
    assert [(c.key, c.kind) for c in diff_params("f", {"a": {"b": 1, "c": 2}}, {"a": {"b": 1.0}})
            ] == [("a.b", "changed"), ("a.c", "removed")]


def test_a_shallow_clone_is_one_clear_line_not_a_truncated_story(
        scripted: dict[str, str], git_repo: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """actions/checkout fetches one commit by default: its parent is missing, so the
    history must say so (not 'unknown revision <sha>', not a fake 'proposed' entry)."""
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{git_repo}", str(shallow)],
                   check=True, capture_output=True)
    monkeypatch.chdir(shallow)
    code, out, err = run(capsys, "history", EXP)
    assert (code, out) == (1, "")
    assert err.startswith("sweepctl: error: git: this clone is shallow: the history of "
                          "experiments/lora-rank-sweep goes back past ")
    assert "git fetch --unshallow" in err and len(err.strip().splitlines()) == 1
    # a deep enough clone holds the whole history of the folder: it works as before
    deep = tmp_path / "deep"
    subprocess.run(["git", "clone", "-q", "--depth", "20", f"file://{git_repo}", str(deep)],
                   check=True, capture_output=True)
    monkeypatch.chdir(deep)
    code, out, err = run(capsys, "history", EXP)
    assert (code, err) == (0, "") and "7 commits" in out.splitlines()[0]
