"""usecases/plots.py: the plots of `report --notes` drawn by worker processes when many."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweepctl.results.curves import CURVES_FILE


def _two_experiments(tmp_path: Path, mlflow_server: str) -> list[Path]:
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_trial, make_experiment, result, trials_of

    client = MlflowClient(mlflow_server)
    folders = [make_experiment(tmp_path, source=source)[0]
               for source in ("lora-rank-sweep", "learning-rate-ofat")]
    for folder, loss in zip(folders, (0.45, 0.61), strict=True):
        experiment, trials = trials_of(folder)
        for trial in trials[:2]:
            log_trial(client, experiment, trial, metrics=result(loss, 10.0))
    return folders


def _not_here(items: object) -> None:
    raise AssertionError("drawn in this process, not by the workers")


def _pngs(folders: list[Path]) -> dict[str, bytes]:
    return {f"{folder.name}/{png.name}": png.read_bytes()
            for folder in folders for png in sorted((folder / "plots").glob("*.png"))}


def test_worker_processes_draw_the_same_pngs_as_this_process(
        tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from sweepctl.usecases import plots
    from sweepctl.usecases.report import ReportRequest, report
    from sweepctl.workspace import Workspace

    folders = _two_experiments(tmp_path, mlflow_server)

    def run(jobs: int) -> dict[str, bytes]:
        for folder in folders:
            shutil.rmtree(folder / "plots", ignore_errors=True)
        summary = report(Workspace(env_tracking_uri=mlflow_server), folders,
                         ReportRequest(notes=True, jobs=jobs), None)
        assert summary.ok, [r.error for r in summary.reports]
        return _pngs(folders)

    here = run(1)
    monkeypatch.setattr(plots, "PARALLEL_FROM", 1)
    monkeypatch.setattr(plots, "_draw_here", _not_here)
    assert run(2) == here and len(here) >= 4   # sensitivity plots and both curves


def test_an_experiment_a_worker_cannot_draw_fails_alone(
        tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """plots/ committed as a file: the worker's write fails, that experiment is reported
    with the error's text (an error does not need to survive pickling), the file is
    kept, and the other experiment is drawn."""
    from sweepctl.usecases import plots
    from sweepctl.usecases.report import ReportRequest, report
    from sweepctl.workspace import Workspace

    folders = _two_experiments(tmp_path, mlflow_server)
    (folders[1] / "plots").write_text("not a folder\n")
    monkeypatch.setattr(plots, "PARALLEL_FROM", 1)
    monkeypatch.setattr(plots, "_draw_here", _not_here)
    summary = report(Workspace(env_tracking_uri=mlflow_server), folders,
                     ReportRequest(notes=True, jobs=2), None)
    first, second = summary.reports
    assert first.error is None and (folders[0] / "plots" / CURVES_FILE).is_file()
    assert second.error == (f"{folders[1] / 'plots'} is a symlink or not a folder; "
                            "refusing to write through it")
    assert (folders[1] / "plots").read_text() == "not a folder\n"


def test_a_metric_matplotlib_cannot_draw_fails_its_experiment_only(
        tmp_path: Path, mlflow_server: str) -> None:
    """A run's loss of +-1e308 (anyone who can log to MLflow can write one) overflows
    matplotlib's tick locator: that experiment's error, in words; the other is written."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from sweepctl.usecases.report import ReportRequest, report
    from sweepctl.workspace import Workspace

    folders = _two_experiments(tmp_path, mlflow_server)
    client = MlflowClient(mlflow_server)
    run_id = client.search_runs(
        [client.get_experiment_by_name(_mlflow_name(folders[0])).experiment_id],
        max_results=1)[0].info.run_id
    client.log_batch(run_id, metrics=[Metric("loss", 1e308, 0, 4), Metric("loss", -1e308, 0, 5)])
    first, second = report(Workspace(env_tracking_uri=mlflow_server), folders,
                           ReportRequest(notes=True), None).reports
    assert first.error is not None
    assert first.error.startswith("cannot draw the plots of lora-rank-sweep: ValueError")
    assert second.error is None and (folders[1] / "plots" / CURVES_FILE).is_file()


def _mlflow_name(folder: Path) -> str:
    from mlflow_runs import trials_of

    return trials_of(folder)[0].mlflow_experiment


def test_few_curves_start_no_worker_and_a_pool_that_cannot_start_draws_here(
        tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    from sweepctl.usecases.report import ReportRequest, report
    from sweepctl.workspace import Workspace

    folders = _two_experiments(tmp_path, mlflow_server)

    def tried(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker pool was started for two curves")

    def no_processes(*args: object, **kwargs: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", tried)
    # two curves to draw, under PARALLEL_FROM: no pool is even tried
    summary = report(Workspace(env_tracking_uri=mlflow_server), folders,
                     ReportRequest(notes=True, jobs=4), None)
    assert summary.ok and len(_pngs(folders)) >= 4
    from sweepctl.usecases import plots

    monkeypatch.setattr(plots, "PARALLEL_FROM", 1)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_processes)
    here = _pngs(folders)
    for folder in folders:
        for png in (folder / "plots").glob("*.png"):
            png.unlink()
    summary = report(Workspace(env_tracking_uri=mlflow_server), folders,
                     ReportRequest(notes=True, jobs=4), None)
    assert summary.ok, [r.error for r in summary.reports]
    assert _pngs(folders) == here   # no workers could start: drawn in this process
