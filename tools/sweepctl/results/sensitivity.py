"""Sensitivity: per varied parameter and value, mean / std / count of the objective over
every finished run (replicates count individually), as a table and an error-bar PNG."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sweepctl.errors import SweepctlError
from sweepctl.results.compare import Comparison, format_value


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


def sensitivity(comparison: Comparison) -> dict[str, list[Point]]:
    """parameter -> one point per value, sorted by value (numbers numerically)."""
    table: dict[str, list[Point]] = {}
    for parameter in comparison.varied:
        samples: dict[str, tuple[object, list[float]]] = {}
        for row in comparison.rows:
            if not row.in_sweep or not row.values or parameter not in row.params:
                continue
            value = row.params[parameter]
            samples.setdefault(repr(value), (value, []))[1].extend(row.values)
        points = [
            Point(parameter, value, statistics.fmean(values),
                  statistics.stdev(values) if len(values) >= 2 else None, len(values))
            for value, values in samples.values()
        ]
        table[parameter] = sorted(points, key=lambda p: _sort_key(p.value))
    return table


def markdown_table(comparison: Comparison, table: dict[str, list[Point]]) -> str:
    from tabulate import tabulate

    rows = [[p.parameter, format_value(p.value), f"{p.mean:.4g}",
             "–" if p.std is None else f"{p.std:.2g}", str(p.count)]
            for points in table.values() for p in points]
    headers = ["parameter", "value", f"mean {comparison.metric}", "std", "runs"]
    return str(tabulate(rows, headers, tablefmt="github", disable_numparse=True))


def plot_name(parameter: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", parameter) + ".png"


def write_plots(comparison: Comparison, table: dict[str, list[Point]],
                folder: Path) -> list[Path]:
    """One error-bar PNG per parameter with results, in ``folder`` (created)."""
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepctlError(f"cannot create {folder}: {exc.strerror}") from exc
    for parameter, points in table.items():
        if not points:
            continue
        path = folder / plot_name(parameter)
        _plot(comparison, parameter, points, path)
        written.append(path)
    return written


def _plot(comparison: Comparison, parameter: str, points: Sequence[Point], path: Path) -> None:
    # a bare Figure renders through Agg without pyplot's global state or a display
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.2), dpi=100)
    axes = figure.add_subplot()
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
    figure.tight_layout()
    try:
        figure.savefig(path, format="png", metadata={"Software": None})
    except OSError as exc:
        raise SweepctlError(f"cannot write {path}: {exc.strerror}") from exc
