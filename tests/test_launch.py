"""`sweepctl launch` against kmock's KubernetesEmulator over HTTP and a real MLflow store."""

from __future__ import annotations

import hashlib
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_emulator import RunningEmulator, running_emulator
from sweepctl.backends import BackendSettings, Outcome
from sweepctl.cli.main import main
from sweepctl.clients.kube_api import RetryPolicy, configuration_for_host
from sweepctl.usecases.launch import LaunchOptions, LaunchReport, launch
from sweepctl.usecases.status import status
from sweepctl.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "experiments" / "tiny-lora-demo"
NAMESPACE = "ml"
FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.002, max_delay=0.02, timeout=10)


def make_experiment(root: Path, mlflow_experiment: str, **defaults: Any) -> Path:
    """The demo experiment in a temporary experiments/ with its own defaults.yaml."""
    experiments = root / "experiments"
    folder = experiments / "tiny-lora-demo"
    shutil.copytree(DEMO, folder)
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["mlflow"]["experiment"] = mlflow_experiment
    # a dataset hash of its own: reuse crosses MLflow experiments by design, so tests that
    # share a store must not share trial ids
    doc["dataset"]["sha256"] = hashlib.sha256(mlflow_experiment.encode()).hexdigest()
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    data = {"kubernetes": {"namespace": NAMESPACE, "image": "registry.local/train:1",
                           "backoff_limit": 0},
            "local": {"python": sys.executable, "max_parallel": 2}}
    for key, value in defaults.items():
        data.setdefault(key, {}).update(value)
    (experiments / "defaults.yaml").write_text(yaml.safe_dump(data))
    return folder


def own_trial_ids(folder: Path, **budget: int) -> None:
    """A dataset hash of the test's own (and budget changes): the store is shared by the
    module and reuse and attempts cross MLflow experiments by trial id, so a run another
    test logged must not count here."""
    import uuid

    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["dataset"]["sha256"] = uuid.uuid4().hex * 2
    doc["budget"].update(budget)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def emu() -> Any:
    with running_emulator() as running:
        yield running


def options(emu: RunningEmulator, store: str, **extra: Any) -> LaunchOptions:
    return LaunchOptions(backend="kubernetes", tracking_uri=store, git_sha="abc123",
                         kube_configuration=configuration_for_host(emu.url),
                         kube_retry=extra.pop("retry", FAST_RETRY), **extra)


def outcomes(report: LaunchReport) -> dict[str, Outcome]:
    return {r.name: r.outcome for e in report.experiments for r in e.results}


def test_three_launches_in_a_row_create_each_job_once(tmp_path: Path, emu: RunningEmulator,
                                                      store: str) -> None:
    folder = make_experiment(tmp_path, "row")
    first = launch([folder], options(emu, store))
    assert first.ok, first.not_launched
    names = set(outcomes(first))
    assert len(names) == 4 and set(outcomes(first).values()) == {Outcome.LAUNCHED}
    for _ in range(2):
        again = launch([folder], options(emu, store))
        assert again.ok
        assert set(outcomes(again).values()) == {Outcome.RUNNING}
    assert set(emu.objects("jobs", NAMESPACE)) == names
    assert set(emu.objects("configmaps", NAMESPACE)) == names
    assert emu.creates("jobs") == 4  # the re-launches saw the Jobs and sent no create
    table = status(folder, backend="kubernetes", tracking_uri=store,
                   settings=BackendSettings(kube_configuration=configuration_for_host(emu.url)))
    # max_parallel 2: two Jobs created running, two suspended for a later launch to release
    assert sorted(row.backend for row in table.rows) == ["pending", "pending", "suspended",
                                                         "suspended"]
    assert {row.run_status for row in table.rows} == {"-"}


def test_a_relaunch_lists_instead_of_asking_per_pending_job(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """The Jobs not yet Ready get their ConfigMaps checked on every reconcile (a launch
    that died between Job and ConfigMap): one list of sweepctl's ConfigMaps per
    namespace, not a 409 and a read per Job, so the scheduled reconcile of a cluster
    full of queued Jobs stays a constant number of requests."""
    folder = make_experiment(tmp_path, "relaunch-requests")
    own_trial_ids(folder)
    first = launch([folder], options(emu, store))
    assert first.ok and sorted(emu.objects("configmaps", NAMESPACE)) == sorted(outcomes(first))
    again = launch([folder], options(emu, store))
    assert again.ok and set(outcomes(again).values()) == {Outcome.RUNNING}
    # two Jobs pending (not Ready in the emulator), two suspended: a list of Jobs, a list
    # of ConfigMaps, and nothing per Job
    assert again.backend_requests == 2
    assert emu.creates("configmaps") == 4


def test_two_concurrent_launches_create_each_job_once(tmp_path: Path, emu: RunningEmulator,
                                                      store: str) -> None:
    folder = make_experiment(tmp_path, "concurrent")
    reports: list[LaunchReport] = []

    def run() -> None:
        reports.append(launch([folder], options(emu, store)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == 2 and all(r.ok for r in reports)
    launched = [n for r in reports for n, o in outcomes(r).items() if o == Outcome.LAUNCHED]
    assert sorted(launched) == sorted(set(launched)) and len(launched) == 4
    assert len(emu.objects("jobs", NAMESPACE)) == 4


def test_lost_create_response_is_no_duplicate_and_counts_as_launched(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    folder = make_experiment(tmp_path, "lost")
    dry = launch([folder], options(emu, store, dry_run=True))  # learn the names
    victim = sorted(outcomes(dry))[1]
    emu.emulator.objects.clear()
    emu.emulator.faults.lost_create_names.add(victim)
    report = launch([folder], options(emu, store))
    assert report.ok
    assert outcomes(report)[victim] == Outcome.LAUNCHED
    assert emu.emulator.faults.injected == 1
    assert victim in emu.objects("jobs", NAMESPACE)
    assert len(emu.objects("jobs", NAMESPACE)) == 4


def test_flaky_api_names_exactly_the_missing_trials_then_completes(
        tmp_path: Path, emu: RunningEmulator, store: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_experiment(tmp_path, "flaky")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": emu.url}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sweepctl.backends.kubernetes.RetryPolicy",
                        lambda: RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01))
    faults = emu.emulator.faults
    faults.rng.seed(4)
    faults.rate = 0.3
    code = main(["launch", str(folder), "--backend", "kubernetes"])
    out = capsys.readouterr().out
    faults.rate = 0.0
    jobs = set(emu.objects("jobs", NAMESPACE))
    assert faults.injected > 0
    if code == 0:
        assert len(jobs) == 4
    else:
        assert code == 1
        named = {line.split(":")[0].strip() for line in out.splitlines()
                 if line.startswith("  tiny-lora-demo-")}
        assert named, out
        # a trial reported launched has its Job; every trial without a Job is named
        expected = {line.split(":")[0] for line in named}
        all_names = set(outcomes(launch([folder], options(emu, store, dry_run=True))))
        assert all_names - jobs <= expected
    assert main(["launch", str(folder), "--backend", "kubernetes"]) == 0
    assert len(emu.objects("jobs", NAMESPACE)) == 4


def test_changed_spec_is_reported_and_the_job_left_untouched(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    folder = make_experiment(tmp_path, "changed")
    assert launch([folder], options(emu, store)).ok
    before = emu.objects("jobs", NAMESPACE)
    defaults = folder.parent / "defaults.yaml"
    data = yaml.safe_load(defaults.read_text())
    data["kubernetes"]["backoff_limit"] = 3  # the same trials, another Job spec
    defaults.write_text(yaml.safe_dump(data))
    report = launch([folder], options(emu, store))
    assert not report.ok
    assert set(outcomes(report).values()) == {Outcome.CHANGED}
    assert all("left untouched" in r.detail for r in report.not_launched)
    assert emu.objects("jobs", NAMESPACE) == before
    assert emu.creates("jobs") == 4


def test_finished_run_without_job_is_not_recreated(tmp_path: Path, emu: RunningEmulator,
                                                   store: str) -> None:
    from mlflow.tracking import MlflowClient

    folder = make_experiment(tmp_path, "ttl")
    own_trial_ids(folder)   # its FINISHED run would make later tests reuse the trial
    first = launch([folder], options(emu, store))
    done = first.experiments[0].results[0]
    # the Job ran, its run FINISHED, then its TTL deleted the Job and the ConfigMap
    client = MlflowClient(tracking_uri=store)
    experiment_id = client.get_experiment_by_name("ttl").experiment_id
    run = client.create_run(experiment_id, tags={"sweepctl.trial_id": done.trial_id,
                                                 "sweepctl.role": "trial"})
    client.set_terminated(run.info.run_id, "FINISHED")
    emu.emulator.objects.clear()
    again = launch([folder], options(emu, store))
    assert outcomes(again)[done.name] == Outcome.REUSED
    assert done.name not in emu.objects("jobs", NAMESPACE)
    assert len(emu.objects("jobs", NAMESPACE)) == 3


def test_dry_run_is_server_side_and_leaves_mlflow_alone(tmp_path: Path, emu: RunningEmulator,
                                                        store: str) -> None:
    from mlflow.tracking import MlflowClient

    folder = make_experiment(tmp_path, "dry")
    report = launch([folder], options(emu, store, dry_run=True))
    assert report.ok and set(outcomes(report).values()) == {Outcome.LAUNCHED}
    creates = [r for r in emu.emulator if r.method == "POST"]
    assert creates and all(r.params.get("dryRun") == "All" for r in creates)
    assert MlflowClient(tracking_uri=store).get_experiment_by_name("dry") is None


def test_incomplete_checklist_and_invalid_experiment_are_refused(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    folder = make_experiment(tmp_path, "refused")
    checklist = folder / "checklist.yaml"
    checklist.write_text(checklist.read_text().replace("seed_set: true", "seed_set: false"))
    broken = folder.parent / "broken"
    shutil.copytree(folder, broken)
    (broken / "sweep.yaml").write_text("strategy: grid\nparameters: 7\n")
    report = launch([folder, broken], options(emu, store))
    assert not report.ok
    reasons = {e.path.name: " ".join(e.refused) for e in report.refused}
    assert "checklist incomplete: seed_set" in reasons["tiny-lora-demo"]
    assert "sweep.yaml" in reasons["broken"]
    assert emu.objects("jobs", NAMESPACE) == {}


def test_a_policy_violation_is_refused_at_launch_when_validate_was_skipped(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """A pre-commit hook can be skipped (and a branch pushed without CI): the merged
    experiment that picks its own service account is refused by launch itself."""
    folder = make_experiment(tmp_path, "policy")
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["runtime"]["kubernetes"] = {"service_account": "cluster-admin"}
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    report = launch([folder], options(emu, store))
    assert not report.ok
    (refused,) = report.refused
    assert any(line.startswith(str(folder / "experiment.yaml")) and
               "kubernetes.service_account" in line and line.endswith("[policy-override]")
               for line in refused.refused), refused.refused
    assert "cluster-admin" not in " ".join(refused.refused)
    assert emu.objects("jobs", NAMESPACE) == {}
    assert emu.objects("configmaps", NAMESPACE) == {}


def test_launch_judges_the_policy_by_the_defaults_it_runs_with(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """The policy is decided on the defaults.yaml the command read once, the one its
    runtime is built from, not on a second read of the file: here the file changes
    between the two (a checkout under a running reconcile) to lift the limit, and the
    Jobs would still be rendered from the strict defaults with the experiment's own
    service account."""
    folder = make_experiment(tmp_path, "policy-once")
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["runtime"]["kubernetes"] = {"service_account": "cluster-admin"}
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    workspace = Workspace(shared_tracking=True, env_tracking_uri=store)
    workspace.defaults(folder.parent)   # the command's one read: the strict policy
    defaults = folder.parent / "defaults.yaml"
    data = yaml.safe_load(defaults.read_text())
    data["policy"] = {"allow_overrides": ["kubernetes.service_account"]}
    defaults.write_text(yaml.safe_dump(data))
    report = launch([folder], options(emu, store), workspace=workspace)
    (refused,) = report.refused
    assert any("kubernetes.service_account" in line and "[policy-override]" in line
               for line in refused.refused), refused.refused
    assert emu.objects("jobs", NAMESPACE) == {}


def test_suspended_job_of_a_changed_or_removed_trial_is_not_released(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """A reported "changed, left untouched" Job must stay untouched: releasing it would run
    the old spec; a trial no longer in git must not start either."""
    import kmock

    folder = make_experiment(tmp_path, "stale-suspended")
    assert launch([folder], options(emu, store)).ok   # max_parallel 2: two run, two wait
    jobs = emu.objects("jobs", NAMESPACE)
    waiting = sorted(n for n, j in jobs.items() if j["spec"].get("suspend"))
    active = sorted(n for n, j in jobs.items() if not j["spec"].get("suspend"))
    assert len(waiting) == 2 and len(active) == 2
    for name in active:  # both finish: two free slots
        emu.emulator.objects[kmock.resource("batch/v1/jobs"), NAMESPACE, name].patch(
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    defaults = folder.parent / "defaults.yaml"
    data = yaml.safe_load(defaults.read_text())
    data["kubernetes"]["backoff_limit"] = 3  # every trial now renders another Job spec
    defaults.write_text(yaml.safe_dump(data))
    report = launch([folder], options(emu, store))
    assert {outcomes(report)[name] for name in waiting} == {Outcome.CHANGED}
    jobs = emu.objects("jobs", NAMESPACE)
    assert all(jobs[name]["spec"].get("suspend") is True for name in waiting)

    # the sweep shrinks to its baseline: the old trials' suspended Jobs are not git's work
    (folder / "sweep.yaml").write_text(
        "strategy: list\ntrials:\n  - {lora_rank: 4, lora_alpha: 8}\nmax_parallel: 2\n")
    baseline = folder / "baseline.yaml"
    baseline.write_text(baseline.read_text().replace("seed: 42", "seed: 43"))
    data["kubernetes"]["backoff_limit"] = 0
    defaults.write_text(yaml.safe_dump(data))
    report = launch([folder], options(emu, store))
    assert report.ok and set(outcomes(report).values()) == {Outcome.LAUNCHED}
    jobs = emu.objects("jobs", NAMESPACE)
    assert all(jobs[name]["spec"].get("suspend") is True for name in waiting)


def test_mlflow_credentials_in_the_uri_never_reach_the_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking URI with user:password (basic auth) in an MLflow error is printed by the
    CLI and kept in CI logs: the password must be masked."""
    from conftest import free_port  # type: ignore[import-not-found]

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    folder = make_experiment(tmp_path, "secret-uri")
    uri = f"http://anna:s3cr3t-pw@127.0.0.1:{free_port()}"
    report = launch([folder], LaunchOptions(backend="local", tracking_uri=uri,
                                            state_dir=tmp_path / ".sweepctl"))
    [refused] = report.refused
    text = " ".join(refused.refused)
    assert "cannot" in text and "127.0.0.1" in text
    assert "s3cr3t-pw" not in text


def test_status_shows_the_finished_run_launch_reuses_from_another_experiment(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """Reuse is by trial id across sweeps: when launch says "reused", status must show
    that FINISHED run and its objective, not "-"."""
    from mlflow.tracking import MlflowClient

    folder = make_experiment(tmp_path, "reused-elsewhere")
    own_trial_ids(folder)
    dry = launch([folder], options(emu, store, dry_run=True))
    trial = dry.experiments[0].results[0]
    client = MlflowClient(tracking_uri=store)
    experiment_id = client.create_experiment("reused-elsewhere")
    run = client.create_run(experiment_id, tags={
        "sweepctl.trial_id": trial.trial_id, "sweepctl.role": "trial",
        "sweepctl.experiment": "an-earlier-sweep", "sweepctl.trial": "an-earlier-sweep-x"})
    client.log_metric(run.info.run_id, "eval_loss", 0.25)
    client.set_terminated(run.info.run_id, "FINISHED")
    report = launch([folder], options(emu, store))
    assert outcomes(report)[trial.name] == Outcome.REUSED
    table = status(folder, backend="kubernetes", tracking_uri=store,
                   settings=BackendSettings(kube_configuration=configuration_for_host(emu.url)))
    row = next(r for r in table.rows if r.trial_id == trial.trial_id)
    assert (row.run_status, row.objective, row.run_id) == ("FINISHED", 0.25, run.info.run_id)
    assert table.count("FINISHED") == 1


def test_failure_budget_keeps_suspended_jobs_suspended(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """budget.max_failed_trials (1 in the demo) spent: the Jobs waiting for a slot wait on,
    like trials never created; nothing new starts on a setup that fails."""
    import kmock

    folder = make_experiment(tmp_path, "budget-suspended")
    assert launch([folder], options(emu, store)).ok   # max_parallel 2: two run, two wait
    jobs = emu.objects("jobs", NAMESPACE)
    waiting = sorted(n for n, j in jobs.items() if j["spec"].get("suspend"))
    failed, done = sorted(n for n, j in jobs.items() if not j["spec"].get("suspend"))
    emu.emulator.objects[kmock.resource("batch/v1/jobs"), NAMESPACE, failed].patch(
        {"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    emu.emulator.objects[kmock.resource("batch/v1/jobs"), NAMESPACE, done].patch(
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}})

    report = launch([folder], options(emu, store))
    assert not report.ok and outcomes(report)[failed] == Outcome.FAILED
    jobs = emu.objects("jobs", NAMESPACE)
    assert len(waiting) == 2
    assert all(jobs[name]["spec"].get("suspend") is True for name in waiting)


def test_a_succeeded_job_without_a_finished_run_is_named_not_called_running(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """The Job ran, but MLflow (another tracking URI, a deleted run) has no FINISHED run:
    the Job cannot be re-run in place, so the user is told what to delete."""
    import kmock

    folder = make_experiment(tmp_path, "orphan-succeeded", kubernetes={"queue": None})
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("max_parallel: 2", "max_parallel: 4"))
    assert launch([folder], options(emu, store)).ok
    name = sorted(emu.objects("jobs", NAMESPACE))[0]
    emu.emulator.objects[kmock.resource("batch/v1/jobs"), NAMESPACE, name].patch(
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    report = launch([folder], options(emu, store))
    assert outcomes(report)[name] == Outcome.FAILED
    (result,) = [r for r in report.not_launched if r.name == name]
    assert "succeeded but MLflow" in result.detail and "delete the Job" in result.detail


def _log_failed_run(store: str, mlflow_experiment: str, trial_id: str, attempts: int) -> None:
    """The trial's MLflow run as the runner leaves it: FAILED after ``attempts`` starts."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment_id = client.get_experiment_by_name(mlflow_experiment).experiment_id
    run = client.create_run(experiment_id, tags={
        "sweepctl.trial_id": trial_id, "sweepctl.role": "trial",
        "sweepctl.attempt": str(attempts)})
    client.set_terminated(run.info.run_id, "FAILED")


def test_a_failed_trial_is_not_recreated_after_its_ttl_once_attempts_are_spent(
        tmp_path: Path, emu: RunningEmulator, store: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 7: a failed Job removed by its TTL used to be re-created on every launch,
    spending GPUs on the same failure forever. budget.max_attempts_per_trial (2 by
    default) stops it: "gave up", not counted as launched, named with exit 1."""
    folder = make_experiment(tmp_path, "gave-up", kubernetes={"queue": None})
    own_trial_ids(folder, max_failed_trials=4)   # attempts only: nothing held by failures
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("max_parallel: 2", "max_parallel: 4"))
    first = launch([folder], options(emu, store))
    spent, once = sorted(first.experiments[0].results, key=lambda r: r.name)[:2]
    _log_failed_run(store, "gave-up", spent.trial_id, attempts=2)  # a pod retry resumed it
    _log_failed_run(store, "gave-up", once.trial_id, attempts=1)
    emu.emulator.objects.clear()  # ttl_seconds_after_finished removed every Job

    again = launch([folder], options(emu, store))
    assert outcomes(again)[spent.name] == Outcome.GAVE_UP
    assert outcomes(again)[once.name] == Outcome.LAUNCHED   # one attempt left
    assert spent.name not in emu.objects("jobs", NAMESPACE)
    assert once.name in emu.objects("jobs", NAMESPACE)
    assert not again.ok
    (gave_up,) = [r for r in again.not_launched if r.outcome == Outcome.GAVE_UP]
    assert "2 attempt(s)" in gave_up.detail and "max_attempts_per_trial is 2" in gave_up.detail
    assert again.experiments[0].count(Outcome.LAUNCHED) == 3

    # the command line: exit 1, the trial named on its own line, its column counted
    emu.emulator.objects.clear()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": emu.url}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)
    assert main(["launch", str(folder), "--backend", "kubernetes"]) == 1
    out = capsys.readouterr().out
    assert f"  {spent.name}: gave up: 2 attempt(s) without a FINISHED run" in out
    assert spent.name not in emu.objects("jobs", NAMESPACE)

    # the admin raises the budget: the trial gets its one more attempt
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["budget"]["max_attempts_per_trial"] = 3
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    emu.emulator.objects.clear()
    raised = launch([folder], options(emu, store))
    assert outcomes(raised)[spent.name] == Outcome.LAUNCHED


def test_a_failed_job_with_attempts_spent_is_reported_gave_up_not_delete_to_retry(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """The Job is still there, failed, and its run counted the last allowed attempt:
    deleting the Job would not retry it, so the report must not say so."""
    import kmock

    folder = make_experiment(tmp_path, "gave-up-job", kubernetes={"queue": None})
    own_trial_ids(folder, max_failed_trials=4)   # attempts only: nothing held by failures
    first = launch([folder], options(emu, store))
    result = sorted(first.experiments[0].results, key=lambda r: r.name)[0]
    emu.emulator.objects[kmock.resource("batch/v1/jobs"), NAMESPACE, result.name].patch(
        {"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    again = launch([folder], options(emu, store))
    assert outcomes(again)[result.name] == Outcome.FAILED  # 1 attempt: the Job counts
    _log_failed_run(store, "gave-up-job", result.trial_id, attempts=2)
    last = launch([folder], options(emu, store))
    assert outcomes(last)[result.name] == Outcome.GAVE_UP


def test_changed_since_picks_the_experiments_a_push_changed(git_repo: Path) -> None:
    """launch.yml runs `launch --changed-since <before>`: only folders whose experiment
    files (or the shared defaults.yaml) differ; a notes.md edit launches nothing."""
    import subprocess

    from sweepctl.usecases.launch import changed_since

    def commit(message: str) -> None:
        subprocess.run(["git", "-C", str(git_repo), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(git_repo), "commit", "-qm", message], check=True)

    first = make_experiment(git_repo, "a")
    second = first.parent / "other-demo"
    shutil.copytree(first, second)
    commit("two experiments")
    assert changed_since([first, second], "HEAD") == []

    (second / "notes.md").write_text("only words\n")
    sweep = first / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("max_parallel: 2", "max_parallel: 1"))
    assert changed_since([first, second], "HEAD") == [first]

    commit("edit")
    defaults = first.parent / "defaults.yaml"
    defaults.write_text(defaults.read_text() + "# a comment is a change too\n")
    assert changed_since([first, second], "HEAD") == [first, second]
    assert changed_since([first, second], "HEAD~1") == [first, second]


def test_a_hard_killed_run_is_shown_stale_and_the_next_launch_restarts_the_trial(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """A pod killed before the runner could end its run leaves it RUNNING, and its Job
    is gone (TTL, a deleted node): status must not say it runs forever, and launch creates
    the trial again (the runner then adopts that same run)."""
    from mlflow.tracking import MlflowClient
    from sweepctl.workspace import Workspace

    folder = make_experiment(tmp_path, "stale-running")
    own_trial_ids(folder)
    workspace = Workspace(shared_tracking=True, env_tracking_uri=store)
    trial = workspace.resolve(workspace.load(folder)).trials[0]
    client = MlflowClient(tracking_uri=store)
    experiment_id = client.create_experiment("stale-running")
    client.create_run(experiment_id, tags={
        "sweepctl.trial_id": trial.trial_id, "sweepctl.role": "trial",
        "sweepctl.experiment": "tiny-lora-demo", "sweepctl.trial": trial.name})
    table = status(folder, backend="kubernetes", tracking_uri=store,
                   settings=BackendSettings(kube_configuration=configuration_for_host(emu.url)))
    row = next(r for r in table.rows if r.trial_id == trial.trial_id)
    assert (row.backend, row.run_status) == ("-", "RUNNING (stale)")
    report = launch([folder], options(emu, store))
    assert outcomes(report)[trial.name] == Outcome.LAUNCHED
    table = status(folder, backend="kubernetes", tracking_uri=store,
                   settings=BackendSettings(kube_configuration=configuration_for_host(emu.url)))
    row = next(r for r in table.rows if r.trial_id == trial.trial_id)
    assert row.run_status == "RUNNING" and row.backend in ("pending", "suspended")


def test_a_rerun_after_a_crash_between_job_and_configmap_completes_the_trial(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """Job first, ConfigMap second: a launch that dies (or whose ConfigMap create fails)
    between the two leaves a Job whose pod waits for its ConfigMap. The re-run sees the
    Job ("already running") and must create the missing ConfigMap, owned by the Job, or
    the pod waits in ContainerCreating forever; a suspended Job it releases gets its
    ConfigMap too."""
    import kmock
    from sweepctl.clients.kube_api import KubeApi
    from sweepctl.render.kubernetes import config_data_hash
    from sweepctl.render.labels import ANNOTATION_CONFIG_HASH

    folder = make_experiment(tmp_path, "half-created")
    # the two Jobs patched Complete below have no FINISHED run: not a spent failure budget
    own_trial_ids(folder, max_failed_trials=4)
    assert launch([folder], options(emu, store)).ok   # max_parallel 2: two run, two wait
    api = KubeApi(configuration_for_host(emu.url), retry=FAST_RETRY)
    for name in emu.objects("configmaps", NAMESPACE):  # as if the launch died after Jobs
        api.delete(NAMESPACE, "ConfigMap", name)
    assert emu.objects("configmaps", NAMESPACE) == {}
    jobs = emu.objects("jobs", NAMESPACE)
    active = sorted(n for n, j in jobs.items() if not j["spec"].get("suspend"))
    waiting = sorted(n for n, j in jobs.items() if j["spec"].get("suspend"))

    again = launch([folder], options(emu, store))
    assert again.ok and set(outcomes(again).values()) == {Outcome.RUNNING}
    maps = emu.objects("configmaps", NAMESPACE)
    assert sorted(maps) == active
    for name in active:   # the one the Job's pod checks at start (kmock sets no uid to own)
        assert config_data_hash(maps[name]) == \
            jobs[name]["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]

    for name in active:  # both finish: the next launch releases the waiting two
        emu.emulator.objects[kmock.resource("batch/v1/jobs"), NAMESPACE, name].patch(
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    released = outcomes(launch([folder], options(emu, store)))
    assert {released[name] for name in waiting} == {Outcome.RUNNING}
    jobs = emu.objects("jobs", NAMESPACE)
    assert not any(jobs[name]["spec"].get("suspend") for name in waiting)
    assert sorted(emu.objects("configmaps", NAMESPACE)) == sorted(active + waiting)
    assert emu.creates("jobs") == 4


def test_a_role_that_may_not_list_configmaps_still_completes_the_trial(
        tmp_path: Path, emu: RunningEmulator, store: str) -> None:
    """A deploy/rbac.yaml from before ConfigMaps were listed: the reconcile reads each
    not-yet-Ready Job's ConfigMap instead and still creates the missing one."""
    from sweepctl.clients.kube_api import KubeApi

    folder = make_experiment(tmp_path, "no-list-role")
    own_trial_ids(folder)
    assert launch([folder], options(emu, store)).ok
    api = KubeApi(configuration_for_host(emu.url), retry=FAST_RETRY)
    active = sorted(n for n, j in emu.objects("jobs", NAMESPACE).items()
                    if not j["spec"].get("suspend"))
    api.delete(NAMESPACE, "ConfigMap", active[0])
    emu.emulator.faults.forbidden.add(("list", "configmaps"))
    again = launch([folder], options(emu, store))
    assert again.ok and set(outcomes(again).values()) == {Outcome.RUNNING}
    assert active[0] in emu.objects("configmaps", NAMESPACE)
    # a list of Jobs, the forbidden list, a read per pending Job, the create of the one
    assert again.backend_requests == 1 + 1 + len(active) + 1


def test_an_mlflow_error_in_one_experiment_s_round_refuses_that_one_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tpe's next round reads MLflow again (a kept index's records of its trials): a
    failed read there refuses that experiment, and the others are still reconciled and
    reported."""
    from mlflow_runs import copies
    from sweepctl.errors import MlflowError
    from sweepctl.usecases import adaptive
    from sweepctl.usecases import launch as launch_module

    folders = copies(tmp_path, 3)

    def next_round(resolved: Any, index: Any, observed: Any) -> Any:
        if resolved.name == folders[1].name:
            raise MlflowError("cannot search runs at http://mlflow: 503 Service Unavailable")
        return adaptive.next_round(resolved, index, observed)

    monkeypatch.setattr(launch_module, "next_round", next_round)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    report = launch(folders, LaunchOptions(backend="local", dry_run=True, tracking_uri=uri,
                                           state_dir=tmp_path / ".sweepctl"),
                    workspace=Workspace(env_tracking_uri=uri))
    refused = {e.name: e.refused for e in report.experiments if e.refused}
    assert refused == {folders[1].name: [
        "mlflow: cannot search runs at http://mlflow: 503 Service Unavailable"]}
    launched = [e for e in report.experiments if not e.refused]
    assert len(launched) == 2 and all(e.count(Outcome.LAUNCHED) == 3 for e in launched)
