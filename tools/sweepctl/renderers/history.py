"""`sweepctl history` as text (one block per commit, oldest first) and as JSON.

Values are shown as JSON on purpose: a history diffs YAML data, so ``"1"`` and ``1`` (or
``true``) must stay different; every other output spells values with ``values``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from sweepctl.results.history import History, ParamChange


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def describe_change(change: ParamChange) -> str:
    if change.kind == "added":
        return f"{change.file}: + {change.key} = {_value(change.new)}"
    if change.kind == "removed":
        return f"{change.file}: - {change.key} (was {_value(change.old)})"
    return f"{change.file}: {change.key}: {_value(change.old)} -> {_value(change.new)}"


def render_text(history: History) -> str:
    count = len(history.entries)
    lines = [f"{history.experiment} ({history.path}): {count} commit{'s' * (count != 1)}, "
             "oldest first", ""]
    for entry in history.entries:
        pr = f" (#{entry.pr})" if entry.pr is not None else ""
        lines.append(f"{entry.sha[:7]} {entry.date[:10]} {entry.author} <{entry.email}>{pr} "
                     f"[{entry.kind}]")
        lines.append(f"    {entry.subject}")
        if entry.kind == "proposed":
            lines.append(f"    proposed: {', '.join(entry.files)}")
        else:
            changed_files = {c.file for c in entry.changes}
            for path, status in entry.files.items():
                if status != "modified" or not path.endswith((".yaml", ".yml")):
                    lines.append(f"    {status}: {path}")
                elif path not in changed_files and not any(path in p for p in entry.problems):
                    lines.append(f"    modified: {path} (no key changed: comments or layout)")
        lines += [f"    {describe_change(c)}" for c in entry.changes]
        lines += [f"    {key}: {value}" for key, value in entry.trailers
                  if key.startswith("Sweepctl-")]
        lines += [f"    warning: {p}" for p in entry.problems]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def render_json(history: History) -> str:
    return json.dumps(asdict(history), indent=2, ensure_ascii=False, default=str)
