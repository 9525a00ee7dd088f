"""The one spelling of a value in everything sweepctl shows or names: plans, status,
comparison tables, the PR comment, notes.md, findings and trial names. A plan and the
results comment that replaces it spell every value the same (``2e-4``, ``0.05``, ``16``,
``true``), the way trial names (``lr2e-4``) do.

``history`` is the exception on purpose: it diffs YAML data and shows each value as JSON,
so that ``"1"`` and ``1`` stay different.
"""

from __future__ import annotations

import json
from typing import Any


def format_number(value: bool | int | float) -> str:
    """2e-4, 0.05, 16, 1 (for 1.0), true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        if abs(value) < 1e-2 or abs(value) >= 1e5:
            mantissa, exponent = f"{value:.3e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exponent)}"
        return f"{value:.4g}"
    return str(value)


def format_value(value: Any) -> str:
    """Any YAML or MLflow value as shown: numbers as above, null, lists as JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return format_number(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
