"""Renderers of a ``Comparison``: a pandas frame, markdown (tabulate, GitHub flavour),
CSV and JSON. The PR comment and notes.md reuse ``markdown_table``."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from sweepctl.renderers.escape import md_cell
from sweepctl.results.compare import Comparison, Row
from sweepctl.values import format_value

FORMATS = ("markdown", "csv", "json")
MAX_LITERAL = 300  # a path or URI longer than this is cut: it is a hint, not the data


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}%"


def _objective_cell(row: Row) -> str:
    if row.objective is None:
        return "–"
    if row.expected > 1:
        std = "–" if row.objective_std is None else f"{row.objective_std:.2g}"
        return f"{row.objective:.4g} ± {std} (n={len(row.values)})"
    return _num(row.objective)


def marks(comparison: Comparison, row: Row) -> str:
    found = []
    if row.is_baseline:
        found.append("baseline")
    if comparison.best is row:
        found.append("**best**")
    if comparison.sweet_spot is row:
        found.append("**sweet spot**")
    if not row.in_sweep:
        found.append("not in the current sweep")
    return ", ".join(found)


def markdown_rows(comparison: Comparison, rows: Sequence[Row],
                  link: Any = None) -> list[list[str]]:
    """Display cells per row, every string from MLflow or YAML escaped (``md_cell``);
    ``link(row) -> str | None`` (a URL we built) turns the trial into a link."""
    out = []
    for row in rows:
        url = link(row) if link is not None else None
        name = f"[{md_cell(row.label)}]({url})" if url else md_cell(row.label)
        out.append([
            name, *(md_cell(format_value(row.params.get(k, ""))) for k in comparison.varied),
            md_cell(row.status), _objective_cell(row), _pct(row.delta_objective_pct),
            _num(row.train_loss), _num(row.runtime), _pct(row.delta_runtime_pct),
            _num(row.samples_per_s), marks(comparison, row),
        ])
    return out


def markdown_headers(comparison: Comparison) -> list[str]:
    metric = md_cell(comparison.metric)
    return ["trial", *(md_cell(k) for k in comparison.varied), "status", metric,
            f"Δ {metric}", "train loss", "train_runtime (s)", "Δ runtime",
            "samples/s", "note"]


def markdown_table(comparison: Comparison, rows: Sequence[Row] | None = None,
                   link: Any = None) -> str:
    from tabulate import tabulate

    chosen = comparison.rows if rows is None else rows
    return str(tabulate(markdown_rows(comparison, chosen, link), markdown_headers(comparison),
                        tablefmt="github", disable_numparse=True))


def code_span(text: str) -> str:
    """Untrusted text (a run's tag) as a markdown code span: shown literally, never a
    link, markup or HTML; the fence is longer than any run of backticks inside."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)[:MAX_LITERAL]
    longest = max((len(run) for run in re.findall("`+", flat)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {flat} {fence}"


def adapter_lines(comparison: Comparison) -> list[str]:
    """Where the trained adapter of the best and the sweet-spot trial is."""
    shown: list[Row] = []
    for row in (comparison.best, comparison.sweet_spot):
        if row is not None and row not in shown:
            shown.append(row)
    return [f"**Adapter of {row.label}:** {code_span(row.adapter)}"
            for row in shown if row.adapter]


def summary_lines(comparison: Comparison) -> list[str]:
    """Markdown lines; the verdict, labels and the metric name are escaped (``md_cell``)."""
    c = comparison.counts
    metric = md_cell(comparison.metric)
    lines = [
        f"**Verdict:** {md_cell(comparison.verdict_text, limit=300)}",
        f"**Trials:** {c['finished']} finished, {c['failed']} failed, {c['running']} running, "
        + (f"{c['cancelled']} cancelled, " if c.get("cancelled") else "")
        + f"{c['missing']} not started, of {c['expected']}"
        + (f" (+{c['outside_sweep']} run(s) outside the current sweep)"
           if c.get("outside_sweep") else ""),
    ]
    if comparison.best is not None:
        b = comparison.best
        lines.append(f"**Best:** {md_cell(b.label)} ({metric} {_num(b.objective)}, "
                     f"{_pct(b.delta_objective_pct)} vs baseline)")
    if comparison.sweet_spot is not None:
        s = comparison.sweet_spot
        lines.append(f"**Sweet spot:** {md_cell(s.label)} ({metric} {_num(s.objective)}, "
                     f"train_runtime {_num(s.runtime)} s, {_pct(s.delta_runtime_pct)} vs "
                     f"baseline); {md_cell(comparison.tolerance_text(), limit=300)}")
    if comparison.runtime_note:
        lines.append(f"**Runtime:** {md_cell(comparison.runtime_note, limit=300)}")
    lines += adapter_lines(comparison)
    if comparison.baseline is None or comparison.baseline.objective is None:
        lines.append("Deltas need a finished baseline (trial 0); it has no result yet.")
    return lines


def render_markdown(comparison: Comparison) -> str:
    goal = "lower" if comparison.goal == "minimize" else "higher"
    head = (f"### {md_cell(comparison.experiment)}: {md_cell(comparison.metric)} "
            f"({goal} is better)")
    return "\n\n".join([head, markdown_table(comparison), "\n".join(
        f"- {line}" for line in summary_lines(comparison))]) + "\n"


def row_record(comparison: Comparison, row: Row) -> dict[str, Any]:
    record: dict[str, Any] = {"trial": row.label, "index": row.index}
    record.update({k: row.params.get(k) for k in comparison.varied})
    record.update({
        "status": row.status, "replicates": row.expected, "finished": row.finished,
        comparison.metric: row.objective, f"{comparison.metric}_std": row.objective_std,
        "train_loss": row.train_loss, "train_runtime": row.runtime,
        "train_samples_per_second": row.samples_per_s,
        f"delta_{comparison.metric}_pct": row.delta_objective_pct,
        "delta_runtime_pct": row.delta_runtime_pct,
        "baseline": row.is_baseline, "best": comparison.best is row,
        "sweet_spot": comparison.sweet_spot is row, "in_sweep": row.in_sweep,
        "trial_ids": " ".join(row.trial_ids), "run_ids": " ".join(row.run_ids),
        "adapter": row.adapter,
    })
    return record


def to_frame(comparison: Comparison) -> Any:
    """The comparison as a pandas DataFrame, one row per trial."""
    import pandas as pd

    return pd.DataFrame([row_record(comparison, row) for row in comparison.rows])


def render_csv(comparison: Comparison) -> str:
    return str(to_frame(comparison).to_csv(index=False, lineterminator="\n"))


def render_json(comparison: Comparison) -> str:
    data = {
        "experiment": comparison.experiment, "metric": comparison.metric,
        "goal": comparison.goal, "target": comparison.target,
        "tolerance": comparison.tolerance, "tolerance_meaning": comparison.tolerance_text(),
        "varied_parameters": list(comparison.varied), "counts": dict(comparison.counts),
        "verdict": comparison.verdict, "verdict_text": comparison.verdict_text,
        "best": None if comparison.best is None else comparison.best.label,
        "sweet_spot": None if comparison.sweet_spot is None else comparison.sweet_spot.label,
        "runtime_note": comparison.runtime_note,
        "rows": [row_record(comparison, row) for row in comparison.rows],
    }
    return json.dumps(data, indent=2, default=str) + "\n"


def render(comparison: Comparison, output_format: str) -> str:
    if output_format == "csv":
        return render_csv(comparison)
    if output_format == "json":
        return render_json(comparison)
    return render_markdown(comparison)


# -- several experiments, one table (`sweepctl compare EXP EXP...`) ----------------------

def _union_varied(comparisons: Sequence[Comparison]) -> list[str]:
    keys: dict[str, None] = {}
    for comparison in comparisons:
        keys.update((k, None) for k in comparison.varied)
    return list(keys)


def _many_records(comparisons: Sequence[Comparison]) -> list[dict[str, Any]]:
    """One record per row of every experiment; a key an experiment does not vary is empty.
    The objective gets its own ``metric`` column: experiments may optimise different ones."""
    varied = _union_varied(comparisons)
    records = []
    for comparison in comparisons:
        for row in comparison.rows:
            record: dict[str, Any] = {"experiment": comparison.experiment, "trial": row.label}
            record.update({k: row.params.get(k) for k in varied})
            record.update({
                "status": row.status, "metric": comparison.metric, "value": row.objective,
                "train_loss": row.train_loss, "train_runtime": row.runtime,
                "train_samples_per_second": row.samples_per_s,
                "marks": marks(comparison, row).replace("**", ""),
            })
            records.append(record)
    return records



def render_many(comparisons: Sequence[Comparison], output_format: str) -> str:
    """Every experiment's rows in one table, the experiment as the first column, then
    each experiment's verdict."""
    records = _many_records(comparisons)
    if output_format == "json":
        return json.dumps({"experiments": [c.experiment for c in comparisons],
                           "verdicts": {c.experiment: c.verdict_text for c in comparisons},
                           "rows": records}, indent=2, default=str) + "\n"
    if output_format == "csv":
        import pandas as pd

        return str(pd.DataFrame(records).to_csv(index=False, lineterminator="\n"))
    from tabulate import tabulate

    numeric = ("value", "train_loss", "train_runtime", "train_samples_per_second")
    headers = list(records[0]) if records else ["experiment", "trial"]
    # trial names and params of runs outside a sweep are whatever someone logged to MLflow
    cells = [[_num(v) if k in numeric else ("" if v is None else md_cell(format_value(v)))
              for k, v in record.items()] for record in records]
    verdicts = [f"- **{md_cell(c.experiment)}:** {md_cell(c.verdict_text, limit=300)}"
                for c in comparisons]
    table = str(tabulate(cells, [md_cell(h) for h in headers], tablefmt="github",
                         disable_numparse=True))
    return "\n\n".join([f"### {len(comparisons)} experiments", table,
                        "\n".join(verdicts)]) + "\n"
