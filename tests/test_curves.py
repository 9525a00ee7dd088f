"""Learning curves: one PNG per experiment, loss and objective against step per trial."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from matplotlib import image
from pytest_httpserver import HTTPServer
from sweepctl.errors import SweepctlError
from sweepctl.results import curves, pngfile
from sweepctl.results.curves import (
    CURVES_FILE,
    MAX_POINTS,
    figure,
    legend_label,
    series,
    write_curves,
)
from werkzeug import Request, Response

HISTORIES = {
    "baseline": {"loss": [(5, 7.6), (10, 7.2), (15, 6.9)], "eval_loss": [(15, 7.1)]},
    "r16-a32": {"loss": [(5, 7.5), (10, 7.0), (15, 6.6)], "eval_loss": [(15, 6.8)]},
    "lr5e-3": {"loss": [(5, 7.4), (10, float("nan")), (15, 6.2)], "eval_loss": [(15, 6.4)]},
}


def test_one_png_with_a_line_per_trial_in_each_panel(tmp_path: Path) -> None:
    path = write_curves("tiny-lora-demo", HISTORIES, "eval_loss", tmp_path / "plots")
    assert path == tmp_path / "plots" / CURVES_FILE
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [CURVES_FILE]
    pixels = image.imread(path)  # a valid PNG matplotlib reads back
    assert pixels.shape[0] == 340 and pixels.shape[1] == 1000
    fig = figure("tiny-lora-demo", HISTORIES, "eval_loss")
    assert fig is not None
    loss, objective = fig.axes
    assert [a.get_ylabel() for a in fig.axes] == ["loss", "eval_loss"]
    assert [line.get_label() for line in loss.lines] == list(HISTORIES)
    assert [line.get_label() for line in objective.lines] == list(HISTORIES)
    # the NaN step is a gap, not a point
    assert list(loss.lines[2].get_xdata()) == [5, 15]
    legend = loss.get_legend()
    assert objective.get_legend() is None and legend is not None
    assert [t.get_text() for t in legend.get_texts()] == list(HISTORIES)


def test_objective_that_is_the_loss_gets_one_panel() -> None:
    fig = figure("x", {"a": {"loss": [(1, 2.0)]}}, "loss")
    assert fig is not None and len(fig.axes) == 1 and len(fig.axes[0].lines) == 1


def test_no_history_writes_nothing(tmp_path: Path) -> None:
    assert write_curves("x", {"a": {"loss": []}, "b": {}}, "eval_loss", tmp_path) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("label", ["../../etc/passwd", "/tmp/evil.png", "..", "a/b\\c",
                                   "$\\frac{1}{0}$", "_nolegend_", "\x1b[31mred", ""])
def test_a_hostile_trial_label_cannot_write_outside_plots(tmp_path: Path, label: str) -> None:
    plots = tmp_path / "exp" / "plots"
    path = write_curves("exp", {label: {"loss": [(1, 1.0), (2, 0.5)]}}, "eval_loss", plots)
    assert path == plots / CURVES_FILE
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [f"exp/plots/{CURVES_FILE}"]
    fig = figure("exp", {label: {"loss": [(1, 1.0)]}}, "eval_loss")
    assert fig is not None
    legend = fig.axes[0].get_legend()
    # shown (not hidden by a leading underscore), literally (no mathtext)
    assert legend is not None and len(legend.get_texts()) == 1
    assert legend.get_texts()[0].get_text() == legend_label(label)


def test_a_symlinked_png_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me", encoding="utf-8")
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / CURVES_FILE).symlink_to(target)
    with pytest.raises(SweepctlError, match="symlink is refused"):
        write_curves("x", HISTORIES, "eval_loss", plots)
    assert target.read_text(encoding="utf-8") == "keep me"


def test_a_symlinked_plots_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "plots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SweepctlError, match="symlink is refused"):
        write_curves("x", HISTORIES, "eval_loss", tmp_path / "plots")
    assert list(elsewhere.iterdir()) == []


_POINTS = st.lists(st.tuples(st.integers(0, 5000),
                             st.floats(-1e6, 1e6) | st.just(float("nan"))),
                   max_size=40)
_HISTORIES = st.dictionaries(
    st.text(st.characters(min_codepoint=32, max_codepoint=0x17F), max_size=12),  # in DejaVu
    st.fixed_dictionaries({"loss": _POINTS, "eval_loss": _POINTS}), min_size=1, max_size=25)


def _fresh_bytes(folder: Path, histories: dict[str, Any], objective: str) -> bytes | None:
    pngfile._KEPT.clear()
    path = write_curves("exp", histories, objective, folder, key="k")
    return None if path is None else path.read_bytes()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_HISTORIES, second=_HISTORIES, objective=st.sampled_from(["eval_loss", "loss"]))
# a panel left empty keeps a new axes' view, not the last plot's (found by this test)
@example(first={"a": {"loss": [], "eval_loss": [(0, 0.0)]}},
         second={"a": {"loss": [(0, 0.0)], "eval_loss": []}}, objective="eval_loss")
def test_a_kept_figure_draws_byte_for_byte_the_png_a_new_one_draws(
        first: dict[str, Any], second: dict[str, Any], objective: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        fresh = _fresh_bytes(root / "fresh", second, objective)
        write_curves("other", first, objective, root / "first", key="other")
        kept = write_curves("exp", second, objective, root / "second", key="k")
        assert (None if kept is None else kept.read_bytes()) == fresh


def test_one_figure_per_layout_draws_every_plot_of_a_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    blank = curves._blank
    monkeypatch.setattr(curves, "_blank", lambda panels: made.append(panels) or blank(panels))
    pngfile._KEPT.clear()
    for index in range(3):
        write_curves(f"exp-{index}", HISTORIES, "eval_loss", tmp_path / str(index))
    write_curves("one-panel", {"a": {"loss": [(1, 2.0)]}}, "loss", tmp_path / "loss")
    assert made == [2, 1]


def test_a_plot_that_fails_does_not_give_its_figure_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = _fresh_bytes(tmp_path / "fresh", HISTORIES, "eval_loss")
    draw = curves._draw

    def half_drawn(fig: Any, *args: Any) -> None:
        draw(fig, *args)
        fig.axes[0].set_xscale("log")   # state no plot of ours resets
        raise RuntimeError("matplotlib gave up")

    monkeypatch.setattr(curves, "_draw", half_drawn)
    with pytest.raises(RuntimeError):
        write_curves("exp", HISTORIES, "eval_loss", tmp_path / "failed", key="k")
    monkeypatch.setattr(curves, "_draw", draw)
    kept = write_curves("exp", HISTORIES, "eval_loss", tmp_path / "again", key="k")
    assert kept is not None and kept.read_bytes() == fresh


@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(allow_nan=True)), max_size=2000))
def test_series_is_sorted_finite_bounded_and_keeps_the_last_point(
        points: list[tuple[int, float]]) -> None:
    steps, values = series(points)
    assert steps == sorted(steps) and len(steps) == len(values) <= MAX_POINTS
    assert all(math.isfinite(v) for v in values)
    finite = sorted((s, v) for s, v in points if math.isfinite(v))
    if finite:
        assert (steps[-1], values[-1]) == finite[-1]


def test_report_notes_writes_the_curves_from_mlflow_and_links_them(
        tmp_path: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_trial, make_experiment, result, trials_of
    from sweepctl.cli.main import main
    from sweepctl.clients.mlflow_store import MlflowStore

    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    ids = [log_trial(client, experiment, trial, metrics=result(ev, 10.0))
           for trial, ev in zip(trials, (0.45, 0.39, 0.41), strict=True)]
    # one bulk request per metric for both runs, the step order kept (log_trial logs
    # loss at steps 1-3); a run id asked twice is fetched once
    store = MlflowStore(mlflow_server)
    histories = store.metric_histories([ids[0], ids[1], ids[0]], ["loss", "eval_loss"])
    assert store.calls["get_metric_history_bulk_interval"] == 2
    assert store.calls["get_metric_history"] == 0
    assert [step for step, _ in sorted(histories[ids[0]]["loss"])] == [1, 2, 3]
    assert histories[ids[1]]["eval_loss"] == [(3, 0.39)]
    assert list(histories) == [ids[0], ids[1]]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    capsys.readouterr()
    assert main(["report", str(folder), "--notes"]) == 0, capsys.readouterr().err
    png = folder / "plots" / CURVES_FILE
    assert image.imread(png).shape[1] == 1000  # two panels of 5 inches at 100 dpi
    notes = (folder / "notes.md").read_text()
    assert f"(plots/{CURVES_FILE})" in notes


def test_the_curves_are_drawn_again_only_when_their_runs_change(
        tmp_path: Path, mlflow_server: str) -> None:
    """The hourly report of every experiment: an experiment whose finished runs are the
    same costs no history request and leaves its PNG byte for byte."""
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_trial, make_experiment, result, trials_of
    from sweepctl.usecases.report import ReportRequest, report
    from sweepctl.workspace import Workspace

    folder, _ = make_experiment(tmp_path)
    experiment, trials = trials_of(folder)
    client = MlflowClient(mlflow_server)
    for trial, ev in zip(trials[:2], (0.45, 0.39), strict=True):
        log_trial(client, experiment, trial, metrics=result(ev, 10.0))

    def again() -> tuple[int, bytes]:
        workspace = Workspace(env_tracking_uri=mlflow_server)
        assert report(workspace, [folder], ReportRequest(notes=True), None).ok
        return (workspace.mlflow_calls("get_metric_history_bulk_interval")
                + workspace.mlflow_calls("get_metric_history"),
                (folder / "plots" / CURVES_FILE).read_bytes())

    first_calls, first_png = again()
    assert first_calls == 2                       # (loss, eval_loss) for both runs
    calls, png = again()
    assert calls == 0 and png == first_png
    log_trial(client, experiment, trials[2], metrics=result(0.41, 10.0))
    calls, png = again()
    assert calls == 2 and png != first_png        # a third run: drawn again
    (folder / "plots" / CURVES_FILE).write_bytes(first_png)  # a PR put back an old one
    assert again()[0] == 2


def _runs_with_loss(client: Any, experiment_id: str, count: int, steps: int = 3,
                    first: int = 1) -> list[str]:
    from mlflow.entities import Metric

    ids = []
    for i in range(count):
        run_id = client.create_run(experiment_id, run_name=f"t{i}").info.run_id
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (step + i + 1), 0, step)
                                          for step in range(first, first + steps)])
        ids.append(run_id)
    return ids


def test_histories_are_one_request_per_hundred_runs_each_thinned_by_the_server(
        mlflow_server: str) -> None:
    """101 runs (one with 2,000 steps): two bulk requests, and the long run comes back
    as at most max_points points, its first and last steps kept."""
    from mlflow.tracking import MlflowClient
    from sweepctl.clients.mlflow_store import HISTORY_RUNS_PER_REQUEST, MlflowStore

    client = MlflowClient(mlflow_server)
    eid = client.create_experiment("curves-bulk")
    ids = _runs_with_loss(client, eid, HISTORY_RUNS_PER_REQUEST) + _runs_with_loss(
        client, eid, 1, steps=2000)
    store = MlflowStore(mlflow_server)
    histories = store.metric_histories(ids, ["loss"], max_points=50)
    assert store.calls["get_metric_history_bulk_interval"] == 2
    assert store.calls["get_metric_history"] == 0
    assert [step for step, _ in histories[ids[7]]["loss"]] == [1, 2, 3]
    long = sorted(step for step, _ in histories[ids[-1]]["loss"])
    assert len(long) <= 50 and long[0] == 1 and long[-1] == 2000


def test_a_local_store_reads_each_history_in_full(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from sweepctl.clients.mlflow_store import MlflowStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    ids = _runs_with_loss(client, client.create_experiment("curves-local"), 2, steps=600)
    store = MlflowStore(uri)
    histories = store.metric_histories(ids, ["loss", "eval_loss"])
    assert store.calls["get_metric_history"] == 4        # 2 runs x 2 metrics
    assert store.calls["get_metric_history_bulk_interval"] == 0
    assert len(histories[ids[1]]["loss"]) == 600 and histories[ids[1]]["eval_loss"] == []


def test_a_server_without_the_bulk_endpoint_is_asked_per_run_and_only_once_in_bulk(
        httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MLflow server older than GetMetricHistoryBulkInterval answers 404: the store
    falls back to get_metric_history per run, and does not try the bulk endpoint again."""
    from sweepctl.clients.mlflow_store import HISTORY_ENDPOINT, MlflowStore

    bulk = httpserver.expect_request(HISTORY_ENDPOINT)
    bulk.respond_with_data("Not Found", status=404)

    def history(request: Request) -> Response:   # what an old server's get-history says
        value = 0.5 - int(request.args["run_id"][1:]) / 10
        return Response(json.dumps({"metrics": [{"key": request.args["metric_key"],
                                                 "value": value, "timestamp": 0, "step": 7}]}),
                        content_type="application/json")

    httpserver.expect_request("/api/2.0/mlflow/metrics/get-history").respond_with_handler(
        history)
    store = MlflowStore(httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr("sweepctl.clients.mlflow_store.HISTORY_RUNS_PER_REQUEST", 2)
    histories = store.metric_histories(["r0", "r1", "r2"], ["loss"])
    assert histories == {"r0": {"loss": [(7, 0.5)]}, "r1": {"loss": [(7, 0.4)]},
                         "r2": {"loss": [(7, 0.3)]}}
    assert store.calls["get_metric_history_bulk_interval"] == 1   # the 2nd chunk: per run
    assert store.calls["get_metric_history"] == 3
    assert sum(1 for request, _ in httpserver.log if request.path == HISTORY_ENDPOINT) == 1


def test_the_source_key_is_read_back_only_from_a_real_png(tmp_path: Path) -> None:
    from sweepctl.results.curves import drawn_from, source_key

    key = source_key({"baseline": "r1"}, ["loss"])
    assert write_curves("exp", HISTORIES, "eval_loss", tmp_path, key=key) is not None
    assert drawn_from(tmp_path) == key
    assert key != source_key({"baseline": "r2"}, ["loss"])
    (tmp_path / "elsewhere.png").write_bytes((tmp_path / CURVES_FILE).read_bytes())
    (tmp_path / CURVES_FILE).unlink()
    assert drawn_from(tmp_path) is None
    (tmp_path / CURVES_FILE).symlink_to(tmp_path / "elsewhere.png")
    assert drawn_from(tmp_path) is None           # a symlink is not followed
    (tmp_path / CURVES_FILE).unlink()
    (tmp_path / CURVES_FILE).write_text("not a png")
    assert drawn_from(tmp_path) is None


@pytest.mark.parametrize("server", ["mlflow_server", "mlflow_file_server"])
def test_experiments_share_history_requests_unless_one_could_thin_another(
        server: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three experiments of short runs: one request per metric for all of them. Then a
    long run next to a short one whose steps lie beyond it, more distinct steps than a
    shared request asks for (the server's cap, 100 here): the file store samples one set
    of steps for the whole request and would drop the short run's middle point, so that
    request is asked again experiment by experiment, and the short run keeps every point
    from either store."""
    from mlflow.tracking import MlflowClient
    from sweepctl.clients.mlflow_store import MlflowStore

    uri = request.getfixturevalue(server)
    client = MlflowClient(uri)
    eid = client.create_experiment(f"curves-shared-{server}")
    short = [_runs_with_loss(client, eid, 2) for _ in range(3)]
    store = MlflowStore(uri)
    found = store.grouped_histories([(ids, ["loss", "eval_loss"]) for ids in short])
    assert store.calls["get_metric_history_bulk_interval"] == 2   # not 3 x 2
    for group, ids in zip(found, short, strict=True):
        assert not isinstance(group, SweepctlError)
        assert sorted(group) == sorted(ids)
        assert all([s for s, _ in group[i]["loss"]] == [1, 2, 3] for i in ids)
        assert all(group[i]["eval_loss"] == [] for i in ids)

    monkeypatch.setattr("sweepctl.clients.mlflow_store.SHARED_HISTORY_POINTS", 100)
    long = _runs_with_loss(client, eid, 1, steps=200)
    late = _runs_with_loss(client, eid, 1, first=1001)
    if server == "mlflow_file_server":   # the peer's behaviour this guards against
        mixed = MlflowStore(uri).metric_histories(long + late, ["loss"], max_points=50)
        assert [s for s, _ in mixed[late[0]]["loss"]] == [1001, 1003]
    store = MlflowStore(uri)
    first, second = store.grouped_histories([(long, ["loss"]), (late, ["loss"])],
                                            max_points=50)
    assert not isinstance(first, SweepctlError) and not isinstance(second, SweepctlError)
    assert [s for s, _ in second[late[0]]["loss"]] == [1001, 1002, 1003]
    assert 40 <= len(first[long[0]]["loss"]) <= 51
    assert store.calls["get_metric_history_bulk_interval"] == 3   # shared, then each


def test_a_file_store_thins_short_runs_by_their_union_and_the_steps_tell(
        mlflow_file_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No run has the cap's points, only their steps together do (6 + 6 distinct, a cap
    of 8): the shared response is sampled all the same, and the distinct steps are what
    catches it."""
    from mlflow.tracking import MlflowClient
    from sweepctl.clients.mlflow_store import MlflowStore

    monkeypatch.setattr("sweepctl.clients.mlflow_store.SHARED_HISTORY_POINTS", 8)
    client = MlflowClient(mlflow_file_server)
    eid = client.create_experiment("curves-union")
    early = _runs_with_loss(client, eid, 1, steps=6)
    late = _runs_with_loss(client, eid, 1, steps=6, first=101)
    mixed = MlflowStore(mlflow_file_server).metric_histories(early + late, ["loss"],
                                                             max_points=8)
    assert len(mixed[late[0]]["loss"]) < 6          # what a shared read would keep
    store = MlflowStore(mlflow_file_server)
    found = store.grouped_histories([(early, ["loss"]), (late, ["loss"])])
    assert not isinstance(found[1], SweepctlError)
    assert [s for s, _ in found[1][late[0]]["loss"]] == list(range(101, 107))
    assert store.calls["get_metric_history_bulk_interval"] == 3


def test_grouped_histories_give_each_group_its_own_metrics(mlflow_server: str) -> None:
    """A run in two groups gets each group's metrics; a metric one group asks for is one
    request of its own; an empty group costs no request."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from sweepctl.clients.mlflow_store import MlflowStore

    client = MlflowClient(mlflow_server)
    eid = client.create_experiment("curves-metrics")
    shared, other = _runs_with_loss(client, eid, 2)
    client.log_batch(shared, metrics=[Metric("acc", 0.5, 0, 3)])
    store = MlflowStore(mlflow_server)
    first, second, empty = store.grouped_histories(
        [([shared], ["loss"]), ([shared, other], ["acc"]), ([], ["eval_loss"])])
    assert first == {shared: {"loss": [(1, 1.0 / 2), (2, 1.0 / 3), (3, 1.0 / 4)]}}
    assert second == {shared: {"acc": [(3, 0.5)]}, other: {"acc": []}}
    assert empty == {}
    assert store.calls["get_metric_history_bulk_interval"] == 2   # loss, acc


def test_grouped_histories_from_a_server_without_the_bulk_endpoint(
        httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared request is answered 404: every run is read on its own, once."""
    from sweepctl.clients.mlflow_store import HISTORY_ENDPOINT, MlflowStore

    httpserver.expect_request(HISTORY_ENDPOINT).respond_with_data("Not Found", status=404)

    def history(request: Request) -> Response:
        value = int(request.args["run_id"][1:]) / 10
        return Response(json.dumps({"metrics": [{"key": request.args["metric_key"],
                                                 "value": value, "timestamp": 0, "step": 7}]}),
                        content_type="application/json")

    httpserver.expect_request("/api/2.0/mlflow/metrics/get-history").respond_with_handler(
        history)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store = MlflowStore(httpserver.url_for("/").rstrip("/"))
    found = store.grouped_histories([(["r1"], ["loss"]), (["r2", "r3"], ["loss"])])
    assert found == [{"r1": {"loss": [(7, 0.1)]}},
                     {"r2": {"loss": [(7, 0.2)]}, "r3": {"loss": [(7, 0.3)]}}]
    assert store.calls["get_metric_history_bulk_interval"] == 1
    assert store.calls["get_metric_history"] == 3


def test_history_batches_pack_experiments_up_to_a_hundred_runs() -> None:
    from sweepctl.clients.mlflow_store import _batches

    def groups(*sizes: int) -> list[tuple[list[str], list[str]]]:
        return [([f"{i}-{n}" for n in range(size)], ["loss"])
                for i, size in enumerate(sizes)]

    assert _batches(groups(40, 40, 40)) == [[0, 1], [2]]
    assert _batches(groups(3, 150, 3, 97)) == [[0], [1], [2, 3]]
    assert _batches(groups()) == []


def test_a_report_reads_the_histories_of_its_experiments_together(
        tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two experiments drawn for the first time: their runs read in one request per
    metric, each PNG its own; a read that fails (a request naming one of the first
    experiment's runs) fails only that experiment, before anything of it is written."""
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_trial, make_experiment, result, trials_of
    from sweepctl.clients.mlflow_store import MlflowStore
    from sweepctl.errors import MlflowError
    from sweepctl.usecases.report import ReportRequest, report
    from sweepctl.workspace import Workspace

    client = MlflowClient(mlflow_server)
    folders = [make_experiment(tmp_path, source=source)[0]
               for source in ("lora-rank-sweep", "learning-rate-ofat")]
    runs: list[set[str]] = []
    for folder, loss in zip(folders, (0.45, 0.61), strict=True):
        experiment, trials = trials_of(folder)
        runs.append({log_trial(client, experiment, trial, metrics=result(loss, 10.0))
                     for trial in trials[:2]})
    workspace = Workspace(env_tracking_uri=mlflow_server)
    summary = report(workspace, folders, ReportRequest(notes=True), None)
    assert summary.ok, [r.error for r in summary.reports]
    assert workspace.mlflow_calls("get_metric_history_bulk_interval") == 2  # one a metric
    pngs = [(folder / "plots" / CURVES_FILE).read_bytes() for folder in folders]
    assert pngs[0] != pngs[1]

    for folder in folders:   # again, from nothing drawn; the first experiment's read fails
        shutil.rmtree(folder / "plots")
    before = (folders[0] / "notes.md").read_bytes()
    read = MlflowStore._histories

    def failing(store: MlflowStore, run_ids: list[str], *args: Any) -> Any:
        if runs[0] & set(run_ids):
            raise MlflowError("cannot read metric histories at http://mlflow: 503")
        return read(store, run_ids, *args)

    monkeypatch.setattr(MlflowStore, "_histories", failing)
    first, second = report(Workspace(env_tracking_uri=mlflow_server), folders,
                           ReportRequest(notes=True), None).reports
    assert first.error == "mlflow: cannot read metric histories at http://mlflow: 503"
    assert (folders[0] / "notes.md").read_bytes() == before
    assert not (folders[0] / "plots").exists()
    assert second.error is None and (folders[1] / "plots" / CURVES_FILE).is_file()
