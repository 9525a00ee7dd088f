"""The JSON Schemas shipped in the package, and schema findings with positions.

``schemas/`` at the repo root is the one source of truth; the package reads it
through ``importlib.resources`` (a symlink in a checkout, a copy in a wheel).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from sweepctl.findings import Findings
from sweepctl.spec.yamlload import Document

SCHEMA_KINDS = ("experiment", "baseline", "sweep", "checklist", "defaults")


@cache
def load_schema(kind: str) -> dict[str, Any]:
    text = resources.files("sweepctl").joinpath("schemas", f"{kind}.schema.json").read_text(
        encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(kind: str) -> Any:
    # jsonschema is imported here, not at module level, so `--help` stays instant
    from jsonschema import Draft202012Validator

    schema = load_schema(kind)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(error: Any) -> str:
    validator = error.validator
    where = "/".join(str(p) for p in error.absolute_path) or "document"
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required key {missing!r}"
    if validator == "additionalProperties":
        return f"{where}: {error.message}"
    if validator == "type":
        return f"{where}: expected {error.validator_value}, got {_short(error.instance)}"
    if validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"{where}: {_short(error.instance)} is not one of: {choices}"
    if validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return f"{where}: {_short(error.instance)} violates {validator} {error.validator_value}"
    if validator == "pattern":
        return f"{where}: {_short(error.instance)} does not match {error.validator_value}"
    if validator in ("oneOf", "anyOf"):
        title = error.schema.get("description", "")
        hint = f" ({title.rstrip('.')})" if title and len(title) < 120 else ""
        return f"{where}: {_short(error.instance)} matches none of the allowed forms{hint}"
    message: str = error.message
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{where}: {message}"


def check_schema(doc: Document, kind: str, findings: Findings) -> bool:
    """Append a finding per schema violation; return True when the document is valid."""
    valid = True
    errors = sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(e.absolute_path))
    for error in errors:
        valid = False
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
            for key in extra:
                mark = doc.key_mark((*path, key))
                findings.error(doc.path, mark.line, mark.col,
                               f"unknown key {key!r} in {'/'.join(map(str, path)) or kind}",
                               "schema-unknown-key")
            continue
        mark = doc.mark(path)
        findings.error(doc.path, mark.line, mark.col, _message(error), f"schema-{error.validator}")
    return valid
