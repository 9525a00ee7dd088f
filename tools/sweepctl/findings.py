"""Findings: what validation reports, collected first, rendered after.

Every checker appends to one ``Findings`` list; the text and JSON reporters
render it. A finding always carries a file position so editors and CI
annotations can jump to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    col: int
    severity: Severity
    message: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.severity}: {self.message} [{self.rule}]"


@dataclass
class Findings:
    """An ordered, de-duplicated collection of findings."""

    items: list[Finding] = field(default_factory=list)
    _seen: set[Finding] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._seen.update(self.items)

    def _append(self, finding: Finding) -> None:
        # a set beside the list: dedupe stays O(1) when a bad repo yields thousands
        if finding not in self._seen:
            self._seen.add(finding)
            self.items.append(finding)

    def add(self, path: Path | str, line: int, col: int, severity: Severity, message: str,
            rule: str) -> None:
        self._append(Finding(str(path), line, col, severity, message, rule))

    def error(self, path: Path | str, line: int, col: int, message: str, rule: str) -> None:
        self.add(path, line, col, "error", message, rule)

    def warning(self, path: Path | str, line: int, col: int, message: str, rule: str) -> None:
        self.add(path, line, col, "warning", message, rule)

    def extend(self, other: Iterable[Finding]) -> None:
        for finding in other:
            self._append(finding)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.items if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.items if f.severity == "warning"]

    def sorted(self) -> list[Finding]:
        return sorted(self.items, key=lambda f: (f.path, f.line, f.col, f.rule, f.message))


def render_text(findings: Findings) -> str:
    lines = [str(f) for f in findings.sorted()]
    n_err, n_warn = len(findings.errors), len(findings.warnings)
    if n_err or n_warn:
        lines.append(f"{n_err} error(s), {n_warn} warning(s)")
    return "\n".join(lines)


def render_json(findings: Findings, checked: int) -> str:
    return json.dumps(
        {
            "checked": checked,
            "errors": len(findings.errors),
            "warnings": len(findings.warnings),
            "findings": [asdict(f) for f in findings.sorted()],
        },
        indent=2,
    )
