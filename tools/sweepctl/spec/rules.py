"""Semantic rules (placeholder: filled in by the rules work)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweepctl.findings import Findings
from sweepctl.spec.yamlload import Document


def check_rules(folder: Path, docs: Mapping[str, Document], schema_ok: Mapping[str, bool],
                findings: Findings) -> None:
    return None


def check_unique_names(folders: Sequence[Path], findings: Findings) -> None:
    return None
