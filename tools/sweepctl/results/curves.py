"""Learning curves: ONE PNG per experiment, the training loss and the objective against
the step, one line per trial (issue 13 item 4).

The histories come in as plain data, ``{trial label: {metric: [(step, value), ...]}}``;
fetching them from MLflow (for at most ``MAX_RUNS`` trials, one bulk history request per
metric from a tracking server) is the caller's job, so this module stays pure apart from
writing the file.

Decisions:

* A trial label comes from an MLflow run tag: untrusted. It never names a file (the
  file is ``learning-curves.png``, a name no sensitivity plot can take: LLaMA-Factory
  keys have no ``-``), and in the legend it is shown literally: ``$`` would start
  matplotlib mathtext and a leading ``_`` would hide the line from the legend.
* The file is written by ``pngfile.save_png``: a symlink planted as ``plots/`` or as
  the PNG (a PR can commit one) makes the write fail instead of overwriting its target.
* Non-finite values (a diverged trial's NaN loss) are dropped: they are gaps, not points.
  Each line keeps at most ``MAX_POINTS`` points (evenly thinned) so a long run does
  not make a huge PNG; the legend lists at most ``MAX_LEGEND`` trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweepctl.results import pngfile
from sweepctl.results.pngfile import read_description, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES_FILE = "learning-curves.png"
LOSS_KEY = "loss"           # the transformers MLflow callback's per-step training loss
MAX_POINTS = 500
MAX_RUNS = 100              # trials whose curves are fetched and drawn
MAX_LEGEND = 20
LABEL_MAX = 60

History = Mapping[str, Sequence[tuple[int, float]]]


def legend_label(label: str) -> str:
    """A trial label as literal legend text (no mathtext, not hidden, bounded)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in label)[:LABEL_MAX]
    text = text.replace("\\", "\\\\").replace("$", r"\$")
    return f" {text}" if text.startswith("_") or not text else text


def series(points: Sequence[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """Finite points sorted by step, thinned to at most ``MAX_POINTS``."""
    clean = sorted((int(s), float(v)) for s, v in points if math.isfinite(float(v)))
    if len(clean) > MAX_POINTS:
        stride = math.ceil(len(clean) / MAX_POINTS)
        clean = [*clean[:-1:stride], clean[-1]]  # keep the last point: the final value
    return [s for s, _ in clean], [v for _, v in clean]


def _metrics(objective: str, loss_key: str) -> list[str]:
    return [loss_key] if objective == loss_key else [loss_key, objective]


def _has_points(histories: Mapping[str, History], metrics: Sequence[str]) -> bool:
    return any(series(h.get(m, ()))[0] for h in histories.values() for m in metrics)


def _blank(panels: int) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * panels, 3.4), dpi=100)
    fig.subplots(1, panels, squeeze=False)
    pngfile.set_margins(fig, left=0.75, right=0.2, bottom=0.5, top=0.6, gap=0.85)
    return fig


def figure(experiment: str, histories: Mapping[str, History], objective: str,
           loss_key: str = LOSS_KEY) -> Figure | None:
    """The figure (loss panel, objective panel), or None when no trial has any point."""
    metrics = _metrics(objective, loss_key)
    if not _has_points(histories, metrics):
        return None
    fig = _blank(len(metrics))
    _draw(fig, experiment, histories, metrics)
    return fig


def _draw(fig: Figure, experiment: str, histories: Mapping[str, History],
          metrics: Sequence[str]) -> None:
    panels = fig.axes
    for axes, metric in zip(panels, metrics, strict=True):
        for label, history in histories.items():
            steps, values = series(history.get(metric, ()))
            if steps:
                # a single eval point still shows: a marker on every line
                axes.plot(steps, values, marker="o", markersize=3, label=legend_label(label))
        axes.set_xlabel("step")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric} vs step", fontsize=9)
    # one legend, on the panel that shows the most trials (an eval-less trial has no
    # objective line)
    legend_on = max(panels, key=lambda a: len(a.get_legend_handles_labels()[0]))
    handles, labels = legend_on.get_legend_handles_labels()
    legend_on.legend(handles[:MAX_LEGEND], labels[:MAX_LEGEND], fontsize=7)
    fig.suptitle(f"{legend_label(experiment)}: learning curves", fontsize=10)


def source_key(run_ids: Mapping[str, str], metrics: Sequence[str]) -> str:
    """What a curves PNG is drawn from: the runs (by label) and the metrics. A FINISHED
    run's history does not change, so the same key is the same picture."""
    return pngfile.source_key(["curves", sorted(run_ids.items()), sorted(metrics)])


def drawn_from(folder: Path) -> str | None:
    """The source key of the curves PNG already in ``folder`` (None: none there)."""
    return read_description(folder, CURVES_FILE)


def write_curves(experiment: str, histories: Mapping[str, History], objective: str,
                 folder: Path, loss_key: str = LOSS_KEY, key: str | None = None
                 ) -> Path | None:
    """Write ``folder/learning-curves.png`` (folder created), ``key`` (source_key) kept
    in it; None when there is no data. Drawn on this process's kept figure of the layout
    (``pngfile.kept_figure``)."""
    metrics = _metrics(objective, loss_key)
    if not _has_points(histories, metrics):
        return None
    with pngfile.kept_figure(f"curves-{len(metrics)}", lambda: _blank(len(metrics))) as fig:
        _draw(fig, experiment, histories, metrics)
        return save_png(fig, folder, CURVES_FILE, description=key)
