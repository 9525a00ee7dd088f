"""The one spelling of a value in everything sweepctl shows: plans, status, comparison
tables, the PR comment and notes.md. A plan and the results comment that replaces it
spell every value the same (``2e-4``, ``0.05``, ``16``, ``true``), the way trial names
(``lr2e-4``) do.

``history`` is the exception on purpose: it diffs YAML data and shows each value as JSON,
so that ``"1"`` and ``1`` stay different.
"""

from __future__ import annotations

import json
from typing import Any

from sweepctl.sweep.identity import format_value as _number


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
