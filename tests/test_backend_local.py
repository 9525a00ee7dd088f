"""The local backend: the real trial runner in subprocesses, with a fake quick LLaMA-Factory
(and torch) on PYTHONPATH, against a real MLflow store; plus, when the trainer venv exists,
the real LLaMA-Factory on the tiny model (slow)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sweepctl.backends import BackendSettings, Outcome
from sweepctl.backends.local import LocalProcesses, LocalTrial
from sweepctl.cli.main import main
from sweepctl.usecases.launch import LaunchOptions, LaunchReport, launch
from sweepctl.usecases.status import status
from test_launch import make_experiment, own_trial_ids

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "tools" / "sweepctl" / "runner" / "trial_runner.py"
TRAINER_PYTHON = Path(os.environ.get("SWEEPCTL_TRAINER_PYTHON",
                                     REPO / ".venv-trainer" / "bin" / "python"))

FAKE_TUNER = '''
import json, os, time
import mlflow

def run_exp(config):
    stamp = os.environ["FAKE_TRAINER_STAMPS"]
    start = time.time()
    with open(os.path.join(stamp, "started-" + config["run_name"]), "w") as handle:
        handle.write(os.getcwd())
    sleep = float(os.environ.get("FAKE_TRAINER_SLEEP", config.get("fake_sleep", 0.3)))
    if sleep > 5:  # a slow trial shows live progress
        mlflow.log_param("max_steps", "100")
        for step in (10, 20):
            mlflow.log_metrics({"loss": 20.0 / step, "epoch": step / 50}, step=step)
    time.sleep(sleep)
    if config.get("lora_rank") == int(os.environ.get("FAKE_TRAINER_FAIL_RANK", "-1")):
        raise RuntimeError("fake trainer: diverged")
    mlflow.log_metric("eval_loss", 5.0 - 100 * config["learning_rate"] - config["lora_rank"] / 100)
    mlflow.log_metric("train_runtime", time.time() - start)
    with open(os.path.join(stamp, config["run_name"]), "w") as handle:
        json.dump([start, time.time()], handle)
'''


@pytest.fixture(scope="module")
def fake_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-ins for torch and llamafactory: the runner is real, training takes 0.3 s."""
    site = tmp_path_factory.mktemp("fake-site")
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text(
        "__version__ = '0.0-fake'\nclass version:\n    cuda = None\n"
        "class cuda:\n    @staticmethod\n    def is_available():\n        return False\n")
    tuner = site / "llamafactory" / "train"
    tuner.mkdir(parents=True)
    for package in (site / "llamafactory", tuner, site / "llamafactory" / "hparams"):
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text("")
    (site / "llamafactory" / "hparams" / "training_args.py").write_text(
        "from dataclasses import dataclass\n@dataclass\nclass TrainingArguments:\n"
        "    learning_rate: float = 0.0\n")
    (tuner / "tuner.py").write_text(FAKE_TUNER)
    return site


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    # one store per test: reuse by trial id crosses MLflow experiments, so a module-wide
    # store let the first test's FINISHED runs make every later launch a reuse
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow-local') / 'mlflow.db'}"


def local_options(tmp_path: Path, store: str, fake_site: Path, **env: str) -> LaunchOptions:
    stamps = tmp_path / "stamps"
    stamps.mkdir(exist_ok=True)
    child_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                 "PYTHONPATH": str(fake_site), "FAKE_TRAINER_STAMPS": str(stamps), **env}
    return LaunchOptions(backend="local", tracking_uri=store, git_sha="abc123",
                         state_dir=tmp_path / ".sweepctl", env=child_env)


def outcomes(report: LaunchReport) -> dict[str, Outcome]:
    return {r.name: r.outcome for e in report.experiments for r in e.results}


def test_local_launch_runs_trials_in_parallel_then_reuses_them(
        tmp_path: Path, store: str, fake_site: Path) -> None:
    from mlflow.tracking import MlflowClient

    folder = make_experiment(tmp_path, "local-demo")
    opts = local_options(tmp_path, store, fake_site)
    report = launch([folder], opts)
    assert report.ok, report.not_launched
    assert set(outcomes(report).values()) == {Outcome.LAUNCHED}
    names = set(outcomes(report))
    # one log file per trial, and never more than max_parallel (2) at once
    for name in names:
        log = tmp_path / ".sweepctl" / "runs" / "tiny-lora-demo" / name / "trial.log"
        assert "FINISHED" in log.read_text()
    spans = [json.loads(p.read_text()) for p in (tmp_path / "stamps").iterdir()
             if not p.name.startswith("started-")]
    assert len(spans) == 4
    assert max(sum(1 for s in spans if s[0] <= t < s[1]) for t, _ in spans) <= 2
    client = MlflowClient(tracking_uri=store)
    experiment_id = client.get_experiment_by_name("local-demo").experiment_id
    runs = client.search_runs([experiment_id], "tags.`sweepctl.role` = 'trial'")
    assert {r.data.tags["sweepctl.trial"] for r in runs} == names
    assert {r.info.status for r in runs} == {"FINISHED"}
    parent = report.experiments[0].parent_run_id
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent}

    table = status(folder, backend="local", tracking_uri=store,
                   settings=BackendSettings(state_dir=opts.state_dir))
    assert {row.name for row in table.rows} == names
    assert {(row.backend, row.run_status) for row in table.rows} == {("succeeded", "FINISHED")}
    assert all(row.objective is not None for row in table.rows)

    started = time.monotonic()
    again = launch([folder], opts)
    assert again.ok and set(outcomes(again).values()) == {Outcome.REUSED}
    assert time.monotonic() - started < 10


def test_failed_trial_is_named_with_its_log_and_retried_next_time(
        tmp_path: Path, store: str, fake_site: Path) -> None:
    folder = make_experiment(tmp_path, "local-fail")
    own_trial_ids(folder)   # the module's store: no other test's run of these trials
    report = launch([folder], local_options(tmp_path, store, fake_site,
                                            FAKE_TRAINER_FAIL_RANK="16"))
    failed = report.not_launched
    assert len(failed) == 2 and all("-r16-" in r.name for r in failed)
    assert all("trial.log" in r.detail and "exited with 1" in r.detail for r in failed)
    fixed = launch([folder], local_options(tmp_path, store, fake_site))
    assert fixed.ok
    assert sorted(outcomes(fixed).values()) == [Outcome.LAUNCHED] * 2 + [Outcome.REUSED] * 2


def test_failure_budget_holds_trials_that_never_ran(
        tmp_path: Path, store: str, fake_site: Path) -> None:
    """budget.max_failed_trials (1 in the demo): once reached, new trials wait for a fix."""
    import yaml

    folder = make_experiment(tmp_path, "local-budget")
    own_trial_ids(folder)   # the module's store: no other test's run of these trials
    first = launch([folder], local_options(tmp_path, store, fake_site,
                                           FAKE_TRAINER_FAIL_RANK="16"))
    assert sorted(outcomes(first).values()) == [Outcome.FAILED] * 2 + [Outcome.LAUNCHED] * 2
    sweep = yaml.safe_load((folder / "sweep.yaml").read_text())
    sweep["parameters"]["lora_rank"].append(4)   # two new trials that never ran
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    experiment = yaml.safe_load((folder / "experiment.yaml").read_text())
    experiment["budget"]["max_trials"] = 8
    experiment["budget"]["max_attempts_per_trial"] = 3   # r16 fails twice, then is fixed
    (folder / "experiment.yaml").write_text(yaml.safe_dump(experiment))

    second = launch([folder], local_options(tmp_path, store, fake_site,
                                            FAKE_TRAINER_FAIL_RANK="16"))
    by_name = outcomes(second)
    held = [name for name, outcome in by_name.items() if outcome == Outcome.HELD]
    assert len(held) == 2 and all("-r4-" in name for name in held)
    assert not second.ok and {r.name for r in second.not_launched} >= set(held)
    assert all("max_failed_trials" in r.detail for r in second.not_launched
               if r.outcome == Outcome.HELD)

    fixed = launch([folder], local_options(tmp_path, store, fake_site))
    # the failed ones are retried first (a human re-ran it); the held ones wait one more round
    assert sorted(outcomes(fixed).values()) == \
        [Outcome.HELD] * 2 + [Outcome.LAUNCHED] * 2 + [Outcome.REUSED] * 2
    assert launch([folder], local_options(tmp_path, store, fake_site)).ok


def test_a_failed_trial_is_retried_only_while_attempts_are_left(
        tmp_path: Path, store: str, fake_site: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """budget.max_attempts_per_trial (2 by default): the r16 trials fail twice, then the
    fix lands; they are not started a third time ("gave up", exit 1) and status shows
    the attempts that were spent."""
    folder = make_experiment(tmp_path, "local-attempts")
    own_trial_ids(folder)   # the module's store: no other test's run of these trials
    failing = local_options(tmp_path, store, fake_site, FAKE_TRAINER_FAIL_RANK="16")
    for _ in range(2):
        report = launch([folder], failing)
        assert {r.name for r in report.not_launched} == {
            name for name in outcomes(report) if "-r16-" in name}
        assert all(r.outcome == Outcome.FAILED for r in report.not_launched)

    stamps = tmp_path / "stamps"
    shutil.rmtree(stamps)
    fixed = launch([folder], local_options(tmp_path, store, fake_site))
    by_name = outcomes(fixed)
    gave_up = sorted(n for n, o in by_name.items() if o == Outcome.GAVE_UP)
    assert len(gave_up) == 2 and all("-r16-" in name for name in gave_up)
    assert set(by_name.values()) == {Outcome.GAVE_UP, Outcome.REUSED}
    assert not fixed.ok and fixed.experiments[0].count(Outcome.LAUNCHED) == 0
    assert all("max_attempts_per_trial is 2" in r.detail for r in fixed.not_launched)
    assert not any(p.name.startswith("started-") for p in stamps.iterdir())  # nothing ran

    table = status(folder, backend="local", tracking_uri=store,
                   settings=BackendSettings(state_dir=tmp_path / ".sweepctl"))
    assert {row.name: row.attempts for row in table.rows if row.name in gave_up} == \
        dict.fromkeys(gave_up, 2)

    # what the user reads: the attempts column of `sweepctl status`
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("SWEEPCTL_BACKEND", "local")
    monkeypatch.chdir(tmp_path)
    assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "attempts" in out
    for name in gave_up:
        (row,) = [line for line in out.splitlines() if name in line]
        cells = [cell.strip() for cell in row.split("│")]
        assert cells[-4:-2] == ["2", "-"]   # attempts, then no objective (then progress)


def test_trials_run_in_the_repo_root_whatever_the_launchers_cwd(
        tmp_path: Path, store: str, fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (local.python, model and dataset dirs) mean the repo root."""
    folder = make_experiment(tmp_path, "local-cwd")
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    report = launch([folder], local_options(tmp_path, store, fake_site))
    assert report.ok
    started = list((tmp_path / "stamps").glob("started-*"))
    assert started and {p.read_text() for p in started} == {str(tmp_path.resolve())}


def test_relative_local_python_is_relative_to_the_repo_root(tmp_path: Path) -> None:
    relative = LocalProcesses(".venv-trainer/bin/python", RUNNER, tmp_path, "", workdir=tmp_path)
    assert relative.python == str(tmp_path / ".venv-trainer/bin/python")
    assert LocalProcesses("python3", RUNNER, tmp_path, "", workdir=tmp_path).python == "python3"
    assert LocalProcesses("/usr/bin/python3", RUNNER, tmp_path, "",
                        workdir=tmp_path).python == "/usr/bin/python3"


def test_ctrl_c_stops_the_children_and_their_runs_end_killed(
        tmp_path: Path, store: str, fake_site: Path) -> None:
    from mlflow.tracking import MlflowClient

    opts = local_options(tmp_path, store, fake_site)
    backend = LocalProcesses(sys.executable, RUNNER, tmp_path / ".sweepctl", store, 2,
                           opts.env)
    meta = {"version": 1, "mlflow_experiment": "local-kill", "run_name": "slow",
            "tags": {"sweepctl.trial_id": "slow1", "sweepctl.role": "trial"},
            "parent_run_id": None, "log_params": []}
    trial = LocalTrial("slow1", "slow", {"fake_sleep": 60, "run_name": "slow",
                                          "learning_rate": 0.1, "lora_rank": 8}, meta)
    started = tmp_path / "stamps" / "started-slow"
    received = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        received.set()
        raise KeyboardInterrupt

    def interrupt_when_started() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not received.is_set():
            if started.is_file():  # inside LLaMA-Factory, where a real Ctrl-C lands
                os.kill(os.getpid(), signal.SIGINT)
                received.wait(5)   # again only if this one never reached the handler
            else:
                time.sleep(0.1)

    # Python's own Ctrl-C behaviour, but it tells the sender it arrived: under a loaded
    # pytest-xdist worker one SIGINT in a few runs never reached the main thread
    previous = signal.signal(signal.SIGINT, on_sigint)
    threading.Thread(target=interrupt_when_started, daemon=True).start()
    try:
        results = backend.run("exp", [trial])
    except KeyboardInterrupt:
        pass
    else:  # the trial ended on its own: say how, from its log
        log = next((tmp_path / ".sweepctl").rglob("trial.log"), None)
        pytest.fail(f"the trial ended before Ctrl-C: {results}; "
                    f"{log.read_text()[-2000:] if log else 'no trial.log'}")
    finally:
        signal.signal(signal.SIGINT, previous)
    client = MlflowClient(tracking_uri=store)
    experiment_id = client.get_experiment_by_name("local-kill").experiment_id
    runs = client.search_runs([experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]
    # stopped, not failed: "re-run launch to resume them" must not find the failure
    # budget (max_failed_trials) spent and hold the trials that never started
    assert backend.observe("exp")["slow1"].phase == "interrupted"


@pytest.mark.slow
@pytest.mark.skipif(not TRAINER_PYTHON.is_file(), reason="the trainer venv is not installed")
def test_real_llamafactory_on_the_tiny_model(tmp_path: Path, store: str) -> None:
    probe = subprocess.run([str(TRAINER_PYTHON), "-c", "from transformers import LlamaConfig"],
                           capture_output=True, check=False)
    if probe.returncode:
        pytest.skip("the trainer venv cannot import transformers (see demo/install_trainer.sh)")
    folder = make_experiment(tmp_path, "local-real")
    subprocess.run([str(TRAINER_PYTHON), str(REPO / "demo" / "build_tiny_model.py"),
                    str(tmp_path / ".sweepctl" / "tiny")], check=True, capture_output=True)
    defaults = folder.parent / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace(sys.executable, str(TRAINER_PYTHON)))
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("learning_rate: [1.0e-3, 5.0e-3]",
                                               "learning_rate: [1.0e-3]"))
    env: dict[str, Any] = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                           "HF_HUB_OFFLINE": "1"}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the demo's paths (.sweepctl/tiny/...) are relative to the repo root
    try:
        report = launch([folder], LaunchOptions(backend="local", tracking_uri=store,
                                                state_dir=tmp_path / ".sweepctl", env=env))
    finally:
        os.chdir(cwd)
    assert report.ok, [(r.name, r.detail) for r in report.not_launched]
    assert len(outcomes(report)) == 2
    shutil.rmtree(tmp_path / ".sweepctl" / "tiny", ignore_errors=True)


def _slow_trial(name: str = "slow", sleep: float = 60) -> LocalTrial:
    meta = {"version": 1, "mlflow_experiment": "local-claims", "run_name": name,
            "tags": {"sweepctl.trial_id": f"{name}1", "sweepctl.role": "trial"},
            "parent_run_id": None, "log_params": []}
    return LocalTrial(f"{name}1", name, {"fake_sleep": sleep, "run_name": name,
                                         "learning_rate": 0.1, "lora_rank": 8}, meta)


def _wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_trial_whose_launcher_crashed_is_not_started_twice(
        tmp_path: Path, store: str, fake_site: Path) -> None:
    """sweepctl killed -9 while its trial trains: the trial still counts as running (the
    runner holds the claim), so the next launch does not start a second copy."""
    opts = local_options(tmp_path, store, fake_site)
    state = tmp_path / ".sweepctl"
    script = (
        "import sys, pathlib\n"
        "from sweepctl.backends.local import LocalProcesses, LocalTrial\n"
        f"meta = {_slow_trial().meta!r}\n"
        f"config = {dict(_slow_trial().train_config)!r}\n"
        f"LocalProcesses(sys.executable, pathlib.Path({str(RUNNER)!r}), "
        f"pathlib.Path({str(state)!r}), {store!r}, 1, {opts.env!r})"
        ".run('exp', [LocalTrial('slow1', 'slow', config, meta)])\n")
    launcher = subprocess.Popen([sys.executable, "-c", script])
    runners: list[int] = []

    def our_runners() -> list[int]:  # the trials this test started (by their unique path)
        found = subprocess.run(["pgrep", "-f", str(state / "runs" / "exp" / "slow")],
                               capture_output=True, text=True, check=False).stdout.split()
        return [int(pid) for pid in found]

    try:
        _wait_for(tmp_path / "stamps" / "started-slow")
        launcher.kill()  # the launcher dies; its trial (own session) trains on
        launcher.wait()
        runners = our_runners()
        backend = LocalProcesses(sys.executable, RUNNER, state, store, 1, opts.env)
        assert backend.observe("exp")["slow1"].phase == "running"
        [again] = backend.run("exp", [_slow_trial()])
        assert again.outcome == Outcome.RUNNING
        assert len(list((tmp_path / "stamps").iterdir())) == 1  # no second start
    finally:
        if launcher.poll() is None:
            launcher.kill()
        runners = sorted(set(runners) | set(our_runners()))
        for pid in runners:
            os.kill(pid, signal.SIGTERM)
    # the runner gone too: nothing holds the claim, no exit code was written: it re-runs.
    # Waited for by the claim, not by pgrep: a dying process leaves pgrep's sight (its
    # command line is gone) a moment before the kernel closes its files
    observer = LocalProcesses(sys.executable, RUNNER, state, store, 1, opts.env)
    deadline = time.monotonic() + 30
    while "slow1" in observer.observe("exp") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "slow1" not in observer.observe("exp")


def test_a_claim_file_left_by_a_dead_launcher_never_blocks_the_trial(
        tmp_path: Path, store: str, fake_site: Path) -> None:
    """A claim naming a live pid (pids are reused: in a CI container sweepctl gets the same
    small pid every time) must not make the trial look taken forever."""
    opts = local_options(tmp_path, store, fake_site)
    state = tmp_path / ".sweepctl"
    folder = state / "runs" / "exp" / "quick"
    folder.mkdir(parents=True)
    (folder / "claim").write_text(str(os.getpid()))
    (folder / "trial.json").write_text(json.dumps({"trial_id": "quick1", "name": "quick"}))
    backend = LocalProcesses(sys.executable, RUNNER, state, store, 1, opts.env)
    assert "quick1" not in backend.observe("exp")
    [result] = backend.run("exp", [_slow_trial("quick", sleep=0.1)])
    assert result.outcome == Outcome.LAUNCHED, result.detail
    assert backend.observe("exp")["quick1"].phase == "succeeded"


def test_a_trial_finished_by_a_racing_launch_after_observe_is_not_run_again(
        tmp_path: Path, store: str, fake_site: Path) -> None:
    """Two launches: B looks (nothing there), A runs the trial to the end, then B gets to
    it. B must not train it a second time."""
    opts = local_options(tmp_path, store, fake_site)
    state = tmp_path / ".sweepctl"
    late = LocalProcesses(sys.executable, RUNNER, state, store, 1, opts.env)
    assert late.observe("exp") == {}
    early = LocalProcesses(sys.executable, RUNNER, state, store, 1, opts.env)
    [first] = early.run("exp", [_slow_trial("race", sleep=0.1)])
    assert first.outcome == Outcome.LAUNCHED, first.detail
    [second] = late.run("exp", [_slow_trial("race", sleep=0.1)])
    assert second.outcome == Outcome.RUNNING
    assert [p.name for p in (tmp_path / "stamps").iterdir()].count("started-race") == 1
    assert len(list((tmp_path / "stamps").iterdir())) == 2  # one start, one result


def test_a_launch_into_a_log_says_when_each_local_trial_starts_and_ends(
        tmp_path: Path, store: str, fake_site: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: 82 s of silence in a CI log. A trial's line comes when it starts, and
    another when its process ends, in that order."""
    from sweepctl.cli.main import main

    folder = make_experiment(tmp_path, "local-log-lines")
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    for key, value in {"PYTHONPATH": str(fake_site), "FAKE_TRAINER_STAMPS": str(stamps),
                       "MLFLOW_TRACKING_URI": store}.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(["launch", str(folder), "--backend", "local"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(" ")[1][:-1] for line in lines if line.endswith(": started")]
    assert len(names) == 4
    for name in names:
        started = lines.index(f"tiny-lora-demo {name}: started")
        ended = next(i for i, line in enumerate(lines) if f"] {name}: launched" in line)
        assert started < ended
