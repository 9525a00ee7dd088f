"""The plots of `report --notes`: what each experiment's learning curves are drawn from,
their MLflow histories read before anything is drawn, and the drawing, in worker
processes when there are many.

Decisions:

* Drawing is CPU-bound matplotlib (~0.07 s a curves PNG, ~0.04 s a sensitivity plot on
  a kept figure, see pngfile.kept_figure), so a first report of 1,000 experiments
  spends most of its time there. With ``jobs`` > 1
  and at least ``PARALLEL_FROM`` curves to draw, experiments are drawn by ``jobs`` worker
  processes; fewer are drawn in this process (a worker costs ~1 s to start: it imports
  matplotlib), so the hourly report, which draws almost nothing, starts none.
* A worker gets plain data (the comparison, the histories, the plots folder) and talks
  to no external system; it returns the paths it wrote, or the error's text. Workers are
  spawned, not forked: this process holds MLflow's HTTP pools and their threads.
* A worker writes through the same ``pngfile.save_png`` (no symlink followed). If the
  workers cannot start or one dies, the experiments are drawn here instead: a slower
  report, never a lost one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sweepctl.errors import SweepctlError
from sweepctl.results.compare import Comparison
from sweepctl.workspace import ResolvedExperiment, Workspace

if TYPE_CHECKING:
    from sweepctl.clients.mlflow_store import RunHistories

PARALLEL_FROM = 20   # curves to draw before worker processes pay for their start
MAX_JOBS = 16        # each worker is an interpreter with matplotlib (~100 MB)

# (tracking URI, run id) -> metric -> [(step, value)]
Histories = dict[tuple[str, str], dict[str, list[tuple[int, float]]]]


@dataclass(frozen=True)
class CurveSource:
    """What one experiment's plots/learning-curves.png is drawn from: each trial's first
    FINISHED run (at most ``curves.MAX_RUNS``) and the metrics, named by ``key``."""
    uri: str
    folder: Path
    run_ids: dict[str, str]          # trial label -> run id
    metrics: tuple[str, ...]
    key: str
    drawn: bool                      # the PNG in folder is already drawn from this key


def curve_source(resolved: ResolvedExperiment, comparison: Comparison) -> CurveSource | None:
    from sweepctl.results import curves

    run_ids = dict(list({row.label: row.finished_run_ids[0] for row in comparison.rows
                         if row.in_sweep and row.finished_run_ids}.items())[:curves.MAX_RUNS])
    if not run_ids or not comparison.tracking_uri:
        return None
    folder = resolved.path / "plots"
    metrics = tuple(sorted({curves.LOSS_KEY, comparison.metric}))
    key = curves.source_key(run_ids, metrics)
    return CurveSource(comparison.tracking_uri, folder, run_ids, metrics, key,
                       drawn=curves.drawn_from(folder) == key)


def fetch_histories(workspace: Workspace, sources: Sequence[CurveSource]
                    ) -> tuple[Histories, dict[int, SweepctlError]]:
    """The histories of every curve in ``sources``, read before anything is drawn or
    written, and the errors by source index (a failed read fails only its experiment).

    One ``grouped_histories`` per tracking store, an experiment a group: experiments
    share requests (100 runs each) unless that could thin one's curves by another's
    steps, which the store checks."""
    from sweepctl.results import curves

    fetched: Histories = {}
    failed: dict[int, SweepctlError] = {}
    by_uri: dict[str, list[int]] = {}
    for index, source in enumerate(sources):
        by_uri.setdefault(source.uri, []).append(index)
    for uri, indexes in by_uri.items():
        groups = [(list(sources[i].run_ids.values()), sources[i].metrics) for i in indexes]
        try:
            read: Sequence[RunHistories | SweepctlError] = workspace.store(uri).grouped_histories(
                groups, max_points=curves.MAX_POINTS)
        except SweepctlError as exc:   # the store cannot even be opened
            read = [exc] * len(indexes)
        for index, found in zip(indexes, read, strict=True):
            if isinstance(found, SweepctlError):
                failed[index] = found
                continue
            for run_id, by_metric in found.items():
                fetched[(uri, run_id)] = by_metric
    return fetched, failed


@dataclass(frozen=True)
class Drawing:
    """One experiment's plots to draw, as plain data a worker process can take."""
    experiment: str
    folder: Path
    comparison: Comparison
    curves: CurveSource | None
    # trial label -> metric -> points, for curves still to draw
    histories: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)

    @property
    def draws_curves(self) -> bool:
        return self.curves is not None and not self.curves.drawn


def drawing(resolved: ResolvedExperiment, comparison: Comparison,
            source: CurveSource | None, fetched: Histories) -> Drawing:
    histories = ({label: fetched[(source.uri, run_id)]
                  for label, run_id in source.run_ids.items()}
                 if source is not None and not source.drawn else {})
    return Drawing(resolved.name, resolved.path / "plots", comparison, source, histories)


def draw(item: Drawing) -> list[Path]:
    """The sensitivity plots and the learning curves of one experiment (each drawn again
    only when its source changed); the paths of every plot the notes should link. Values
    come from MLflow, untrusted: whatever matplotlib makes of them (a metric of 1e308
    overflows its tick locator) is this experiment's error, not the report's."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # numpy overflow warnings on such values
            return _draw(item)
    except SweepctlError:
        raise
    except Exception as exc:   # matplotlib/numpy on hostile values; never a traceback
        raise SweepctlError(f"cannot draw the plots of {item.experiment}: "
                            f"{type(exc).__name__}: {exc}") from exc


def _draw(item: Drawing) -> list[Path]:
    from sweepctl.clients import notes_file
    from sweepctl.results import curves, sensitivity

    table = sensitivity.sensitivity(item.comparison)
    for parameter, points in table.items():
        if points:  # a plot (or plots/) that is a symlink would write outside the repo
            notes_file.refuse_links(item.folder / sensitivity.plot_name(parameter))
    plots = sensitivity.write_plots(item.comparison, table, item.folder)
    if item.curves is None:
        return plots
    if item.curves.drawn:
        return [*plots, item.folder / curves.CURVES_FILE]
    path = curves.write_curves(item.experiment, item.histories, item.comparison.metric,
                               item.folder, key=item.curves.key)
    return plots if path is None else [*plots, path]


def _draw_in_worker(item: Drawing) -> list[Path] | str:
    try:
        return draw(item)
    except SweepctlError as exc:
        return str(exc)   # text: not every error of ours survives pickling


def _draw_here(items: Sequence[Drawing]) -> list[list[Path] | SweepctlError]:
    results: list[list[Path] | SweepctlError] = []
    for item in items:
        try:
            results.append(draw(item))
        except SweepctlError as exc:
            results.append(exc)
    return results


def draw_all(items: Sequence[Drawing], jobs: int = 1) -> list[list[Path] | SweepctlError]:
    """``draw`` of each item, in order: its plot paths, or the error that stopped it."""
    if jobs <= 1 or sum(item.draws_curves for item in items) < PARALLEL_FROM:
        return _draw_here(items)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(max_workers=min(jobs, MAX_JOBS, len(items)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_draw_in_worker, items,
                                 chunksize=max(1, len(items) // (jobs * 8))))
    except (BrokenProcessPool, OSError):
        return _draw_here(items)   # no workers (or one died): slower, nothing lost
    return [SweepctlError(result) if isinstance(result, str) else result
            for result in done]
