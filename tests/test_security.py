"""Issue 10, the validate side: each attack as a user (or an attacker's PR) runs it.

Every test builds a repository the way a PR would leave it, runs the real
`sweepctl validate` (or render, or the launch loader) and asserts the exact refusal a user
sees, and that no secret value appears anywhere in stdout or stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweepctl.cli.main import main
from sweepctl.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parent.parent
VALID = REPO_ROOT / "tests" / "examples" / "valid" / "grid" / "demo-sweep"
WHERE = "(policy in experiments/defaults.yaml)"
# built at run time, so no token-shaped string sits in the repository for scanners to flag
HF_TOKEN = "hf_" + "Q7vLm2XkP9wRt4Zs8NbYc3JdHf6GaUe1Ko"
GH_TOKEN = "ghp_" + "T0k3nV4lu3Xx9Yy8Zz7Ww6Vv5Uu4Tt3Ss2Rr1"


@pytest.fixture
def experiments(tmp_path: Path) -> Path:
    """A repository's experiments/: the real defaults.yaml and one valid experiment."""
    root = tmp_path / "experiments"
    shutil.copytree(VALID, root / "demo-sweep")
    shutil.copy(REPO_ROOT / "experiments" / "defaults.yaml", root / "defaults.yaml")
    return root


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _validate(paths: list[Path], capsys: pytest.CaptureFixture[str],
              *options: str) -> tuple[int, list[str], str]:
    code = main(["validate", *options, *map(str, paths)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.out + captured.err


def _errors(lines: list[str]) -> list[str]:
    return [line for line in lines if ": error: " in line]


@pytest.mark.parametrize(("override", "key"), [
    ("kubernetes:\n    service_account: cluster-admin", "kubernetes.service_account"),
    ("kubernetes:\n    secret_env:\n      - secret: prod-database", "kubernetes.secret_env"),
    ("kubernetes:\n    namespace: kube-system", "kubernetes.namespace"),
    ("kubernetes:\n    storage:\n      pvc: other-teams-data", "kubernetes.storage"),
    ("kubernetes:\n    node_selector:\n      pool: prod", "kubernetes.node_selector"),
    ("mlflow:\n    tracking_uri: https://collector.attacker.example", "mlflow.tracking_uri"),
    ("github:\n    repository: attacker/inbox", "github.repository"),
])
def test_a_merged_experiment_cannot_widen_its_own_trust(
        experiments: Path, capsys: pytest.CaptureFixture[str], override: str, key: str) -> None:
    experiment = experiments / "demo-sweep" / "experiment.yaml"
    _append(experiment, f"runtime:\n  {override}\n")
    code, out, _ = _validate([experiments], capsys)
    assert code == 1
    assert _errors(out) == [f"{experiment}:23:5: error: runtime.{key} may not be overridden by "
                            f"an experiment {WHERE} [policy-override]"]


def test_an_image_from_elsewhere_is_refused(experiments: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    experiment = experiments / "demo-sweep" / "experiment.yaml"
    _append(experiment, "runtime:\n  kubernetes:\n    image: docker.io/attacker/miner:latest\n")
    code, out, _ = _validate([experiments], capsys)
    assert code == 1
    assert _errors(out) == [f"{experiment}:23:12: error: runtime.kubernetes.image is not from a "
                            "repository in policy.images (allowed: none besides the default) "
                            f"{WHERE} [policy-image]"]


def test_the_admin_can_allow_an_override(experiments: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _append(experiments / "demo-sweep" / "experiment.yaml",
            "runtime:\n  kubernetes:\n    node_selector: {pool: h100}\n    gpus_per_trial: 4\n")
    _append(experiments / "defaults.yaml",
            "policy:\n  allow_overrides: [kubernetes.node_selector]\n")
    code, out, _ = _validate([experiments], capsys)
    assert (code, _errors(out)) == (0, [])


def test_render_and_launch_refuse_what_validate_refuses(
        experiments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a pre-commit hook can be skipped: the commands that act on the experiment check again
    folder = experiments / "demo-sweep"
    _append(folder / "experiment.yaml", "runtime:\n  kubernetes:\n    service_account: admin\n")
    assert main(["render", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "1 error(s) in the experiment (run `sweepctl validate` for details)" in err
    experiment, reasons = Workspace().load_for_launch(folder)
    assert experiment is None
    assert reasons == [f"{folder / 'experiment.yaml'}:23:5: error: "
                       "runtime.kubernetes.service_account may not be overridden by an "
                       f"experiment {WHERE} [policy-override]", "1 error(s), 0 warning(s)"]


def test_trust_remote_code_is_refused_in_baseline_and_sweep(
        experiments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = experiments / "demo-sweep"
    _append(folder / "baseline.yaml", "trust_remote_code: true\n")
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("lora_rank: [8, 16, 32]",
                                               "lora_rank: [8, 16, 32]\n  trust_remote_code: "
                                               "[false, true]"))
    code, out, _ = _validate([experiments], capsys)
    message = ("trust_remote_code runs code from the model's repository in the trial; it needs "
               f"policy.allow_trust_remote_code: true {WHERE} [trust-remote-code]")
    assert code == 1
    assert _errors(out) == [f"{folder / 'baseline.yaml'}:18:20: error: {message}",
                            f"{folder / 'sweep.yaml'}:5:30: error: {message}"]


def test_a_token_in_baseline_is_refused_and_never_echoed(
        experiments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = experiments / "demo-sweep"
    _append(folder / "baseline.yaml", f"hf_hub_token: {HF_TOKEN}\nhub_model_id: {GH_TOKEN}\n")
    code, out, everything = _validate([experiments], capsys)
    assert code == 1
    assert _errors(out) == [
        f"{folder / 'baseline.yaml'}:18:1: error: hf_hub_token carries a secret; secrets never "
        "go into baseline.yaml (they would be logged as MLflow params and stored in ConfigMaps): "
        "reference a Kubernetes Secret via kubernetes.secret_env in defaults.yaml [secret-key]",
        f"{folder / 'baseline.yaml'}:19:15: error: the value of hub_model_id looks like a GitHub "
        "token; remove it from the repository and revoke it [secret-value]"]
    assert HF_TOKEN not in everything and GH_TOKEN not in everything
    code, _, everything = _validate([experiments], capsys, "--format", "json")
    assert code == 1 and json.loads(everything)["errors"] == 2
    assert HF_TOKEN not in everything and GH_TOKEN not in everything


def test_tokens_in_sweep_values_and_tags_are_refused(
        experiments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = experiments / "demo-sweep"
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("lora_rank: [8, 16, 32]",
                                               f"lora_rank: [8, 16, 32]\n  hub_model_id: "
                                               f"['{HF_TOKEN}']"))
    _append(folder / "experiment.yaml", f"tags:\n  {GH_TOKEN}: x\n")
    code, out, everything = _validate([experiments], capsys)
    assert code == 1
    assert f"{folder / 'experiment.yaml'}:22:3: error: a key in tags looks like a GitHub token; " \
           "remove it from the repository and revoke it [secret-value]" in out
    assert f"{sweep}:5:18: error: the value of parameters.hub_model_id.0 looks like a Hugging " \
           "Face token; remove it from the repository and revoke it [secret-value]" in out
    assert HF_TOKEN not in everything and GH_TOKEN not in everything


def test_reserved_tags_are_refused(experiments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = experiments / "demo-sweep" / "experiment.yaml"
    _append(experiment, "tags:\n  sweepctl.pr: 1\n  mlflow.runName: best\n")
    code, out, _ = _validate([experiments], capsys)
    assert code == 1
    reserved = ("is reserved: sweepctl.* and mlflow.* tags are set by sweepctl and MLflow, not by "
                "an experiment [reserved-tag]")
    assert _errors(out) == [f"{experiment}:22:3: error: tag 'sweepctl.pr' {reserved}",
                            f"{experiment}:23:3: error: tag 'mlflow.runName' {reserved}"]


# --------------------------------------------------------------------------- symlinks

SECRET_FILE_TEXT = "MLFLOW_TRACKING_PASSWORD=" + "do-not-print-" + "me"


def _outside(tmp_path: Path, text: str = SECRET_FILE_TEXT) -> Path:
    target = tmp_path / "outside" / "environ"
    target.parent.mkdir()
    target.write_text(text)
    return target


def _link_message(path: Path) -> str:
    return (f"{path}:1:1: error: {path.name} is a symbolic link; experiment files and "
            "defaults.yaml must be regular files (links are never followed) [symlink]")


@pytest.mark.parametrize("as_hook", [False, True])
def test_a_notes_symlink_is_refused_and_not_read(
        experiments: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        as_hook: bool) -> None:
    target = _outside(tmp_path)
    notes = experiments / "demo-sweep" / "notes.md"
    notes.unlink()
    notes.symlink_to(target)
    # pre-commit passes the changed files themselves
    code, out, everything = _validate([notes] if as_hook else [experiments], capsys)
    assert code == 1
    assert _errors(out) == [_link_message(notes)]
    assert SECRET_FILE_TEXT not in everything
    assert target.read_text() == SECRET_FILE_TEXT and notes.is_symlink()


def test_a_plots_symlink_and_links_inside_plots_are_refused(
        experiments: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = experiments / "demo-sweep"
    (folder / "plots").mkdir()
    inner = folder / "plots" / "loss.png"
    inner.symlink_to(_outside(tmp_path))
    code, out, _ = _validate([experiments], capsys)
    assert (code, _errors(out)) == (1, [_link_message(inner)])
    shutil.rmtree(folder / "plots")
    (folder / "plots").symlink_to(tmp_path / "outside", target_is_directory=True)
    code, out, _ = _validate([experiments], capsys)
    assert (code, _errors(out)) == (1, [_link_message(folder / "plots")])


def test_a_symlinked_yaml_file_is_refused_not_read(
        experiments: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the link would show reviewers one file in git and validate another one
    folder = experiments / "demo-sweep"
    target = _outside(tmp_path, (folder / "baseline.yaml").read_text()
                      + f"hf_hub_token: {HF_TOKEN}\n")
    (folder / "baseline.yaml").unlink()
    (folder / "baseline.yaml").symlink_to(target)
    code, out, everything = _validate([experiments], capsys)
    assert code == 1
    assert _errors(out) == [_link_message(folder / "baseline.yaml")]  # not "missing", not read
    assert HF_TOKEN not in everything


def test_a_symlinked_experiment_folder_is_refused(
        tmp_path: Path, experiments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "elsewhere"
    shutil.move(experiments / "demo-sweep", real)
    (experiments / "demo-sweep").symlink_to(real, target_is_directory=True)
    code, out, _ = _validate([experiments], capsys)
    assert (code, _errors(out)) == (1, [_link_message(experiments / "demo-sweep")])


def test_a_symlinked_defaults_yaml_is_refused_and_its_policy_ignored(
        experiments: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a PR replaces the admin's file by a link to a copy that allows everything
    lenient = _outside(tmp_path, "policy:\n  allow_overrides: [kubernetes, mlflow]\n")
    defaults = experiments / "defaults.yaml"
    defaults.unlink()
    defaults.symlink_to(lenient)
    experiment = experiments / "demo-sweep" / "experiment.yaml"
    _append(experiment, "runtime:\n  kubernetes:\n    service_account: cluster-admin\n")
    code, out, _ = _validate([experiments], capsys)
    assert code == 1
    assert _errors(out) == [
        _link_message(defaults),
        f"{experiment}:23:5: error: runtime.kubernetes.service_account may not be overridden "
        f"by an experiment {WHERE} [policy-override]"]
    assert os.readlink(defaults) == str(lenient)


# --------------------------------------------------------------------------- any token

@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet=string.ascii_letters + string.digits, min_size=34, max_size=40),
       key=st.sampled_from(["hub_model_id", "adapter_name_or_path", "dataset_dir"]))
def test_no_generated_token_reaches_the_output(
        experiments: Path, capsys: pytest.CaptureFixture[str], body: str, key: str) -> None:
    baseline = experiments / "demo-sweep" / "baseline.yaml"
    original = baseline.read_text()
    baseline.write_text(original + f"{key}: hf_{body}\n")
    try:
        code, out, everything = _validate([experiments], capsys)
    finally:
        baseline.write_text(original)
    assert code == 1
    assert f"hf_{body}" not in everything
    assert any("looks like a Hugging Face token" in line for line in out)
