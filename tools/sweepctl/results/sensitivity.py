"""Sensitivity: per varied parameter and value, mean / std / count of the objective over
the finished runs (replicates count individually), as a table and an error-bar PNG.

Which runs a parameter's points use depends on the sweep's shape (issue 13 item 2):

* one-at-a-time (every trial changes at most one parameter vs the baseline): a
  parameter's points are the baseline and that parameter's own trials. Pooling every
  trial that left it alone would put a 40-epoch trial into ``lora_dropout = 0``.
* otherwise (grid, random, list): the marginal mean over every trial with that value.

A key that follows another (a derived ``lora_alpha: 2 * lora_rank``: it changes exactly
when an earlier key changes, and its value is a function of that key's) is no parameter
of its own: it gets no table rows and no plot. Which keys are derived comes from the
sweep spec (``Comparison.derived``, set by compare): from the rows alone, a random or
tpe sweep's second parameter (drawn with the first in every trial, each value unique)
would look derived. Without the spec it is inferred from the rows; the shape always is.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweepctl.results.compare import Comparison, Row
from sweepctl.results.pngfile import (
    kept_figure,
    read_description,
    save_png,
    set_margins,
    source_key,
)
from sweepctl.values import format_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Point:
    parameter: str
    value: object
    mean: float
    std: float | None      # sample std; None with a single run
    count: int


def _sort_key(value: object) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _changed(row: Row, baseline: Row) -> frozenset[str]:
    return frozenset(k for k, v in row.params.items()
                     if repr(v) != repr(baseline.params.get(k)))


def followers(comparison: Comparison) -> frozenset[str]:
    """Varied keys that follow an earlier varied key (derived from it): no plot of their own.

    The sweep's ``derived`` keys when the comparison knows them; else inferred: ``b``
    follows ``a`` when, over the sweep's rows, ``b`` changes vs the baseline exactly when
    ``a`` does and each value of ``a`` comes with one value of ``b``.
    """
    if comparison.derived is not None:
        # the spec says: random and tpe change every key in every trial with values of
        # their own, which the rows cannot tell from a derived key
        return frozenset(k for k in comparison.varied if k in comparison.derived)
    rows = [row for row in comparison.rows if row.in_sweep]
    baseline = comparison.baseline
    if baseline is None:
        return frozenset()
    changed = [_changed(row, baseline) for row in rows]
    found: set[str] = set()
    for position, follower in enumerate(comparison.varied):
        if any(leader not in found and _follows(rows, changed, leader, follower)
               for leader in comparison.varied[:position]):
            found.add(follower)
    return frozenset(found)


def _follows(rows: Sequence[Row], changed: Sequence[frozenset[str]], leader: str,
             follower: str) -> bool:
    if any((leader in c) != (follower in c) for c in changed):
        return False
    seen: dict[str, str] = {}
    for row in rows:
        value = repr(row.params.get(follower))
        if seen.setdefault(repr(row.params.get(leader)), value) != value:
            return False
    return True


def is_one_at_a_time(comparison: Comparison, ignore: frozenset[str] = frozenset()) -> bool:
    """Every trial changes at most one parameter (``ignore``: followers) vs the baseline."""
    baseline = comparison.baseline
    if baseline is None:
        return False
    return all(len(_changed(row, baseline) - ignore) <= 1
               for row in comparison.rows if row.in_sweep)


def _rows_for(comparison: Comparison, parameter: str, one_at_a_time: bool,
              ignore: frozenset[str]) -> list[Row]:
    rows = [row for row in comparison.rows
            if row.in_sweep and row.values and parameter in row.params]
    baseline = comparison.baseline
    if not one_at_a_time or baseline is None:
        return rows
    return [row for row in rows if _changed(row, baseline) - ignore <= {parameter}]


def sensitivity(comparison: Comparison) -> dict[str, list[Point]]:
    """parameter -> one point per value, sorted by value (numbers numerically)."""
    ignore = followers(comparison)
    one_at_a_time = is_one_at_a_time(comparison, ignore)
    table: dict[str, list[Point]] = {}
    for parameter in comparison.varied:
        if parameter in ignore:
            continue
        samples: dict[str, tuple[object, list[float]]] = {}
        for row in _rows_for(comparison, parameter, one_at_a_time, ignore):
            value = row.params[parameter]
            samples.setdefault(repr(value), (value, []))[1].extend(row.values)
        points = [
            Point(parameter, value, statistics.fmean(values),
                  statistics.stdev(values) if len(values) >= 2 else None, len(values))
            for value, values in samples.values()
        ]
        table[parameter] = sorted(points, key=lambda p: _sort_key(p.value))
    return table


def plot_name(parameter: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", parameter) + ".png"


def write_plots(comparison: Comparison, table: dict[str, list[Point]],
                folder: Path) -> list[Path]:
    """One error-bar PNG per parameter with results, in ``folder`` (created; no symlinks).
    A PNG already drawn from the same points is left as it is (no drawing, no write)."""
    paths = []
    for parameter, points in table.items():
        if not points:
            continue
        name = plot_name(parameter)
        key = source_key(["sensitivity", comparison.experiment, comparison.metric, parameter,
                          [(repr(p.value), p.mean, p.std, p.count) for p in points]])
        if read_description(folder, name) != key:
            with kept_figure("sensitivity", _blank) as figure:
                _plot(figure, comparison, parameter, points)
                save_png(figure, folder, name, description=key)
        paths.append(folder / name)
    return paths


def _blank() -> Figure:
    # a bare Figure renders through Agg without pyplot's global state or a display
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.2), dpi=100)
    figure.add_subplot()
    set_margins(figure, left=0.8, right=0.15, bottom=0.55, top=0.35)
    return figure


def _plot(figure: Figure, comparison: Comparison, parameter: str,
          points: Sequence[Point]) -> None:
    """The error-bar plot of ``parameter`` drawn on ``figure`` (blank, from _blank)."""
    axes = figure.axes[0]
    # categorical positions: sweep values are few and often log-spaced (learning rates)
    positions = list(range(len(points)))
    axes.errorbar(positions, [p.mean for p in points],
                  yerr=[p.std or 0.0 for p in points], fmt="o-", capsize=4)
    axes.set_xticks(positions, [format_value(p.value) for p in points])
    for x, p in zip(positions, points, strict=True):
        axes.annotate(f"n={p.count}", (x, p.mean), textcoords="offset points", xytext=(0, 6),
                      ha="center", fontsize=7)
    axes.set_xlabel(parameter)
    axes.set_ylabel(f"{comparison.metric} (mean ± std)")
    axes.set_title(f"{comparison.experiment}: {comparison.metric} vs {parameter}", fontsize=9)
