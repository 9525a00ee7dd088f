"""The JSON Schemas shipped in the package, and schema findings with positions.

``schemas/`` at the repo root is the one source of truth; the package reads it
through ``importlib.resources`` (a symlink in a checkout, a copy in a wheel).
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from sweepctl.findings import Findings
from sweepctl.spec.known_keys import SUGGEST_CUTOFF
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


@cache
def _property_validator(kind: str, key: str) -> Any | None:
    # one small validator per described key: checking a sweep value is one subschema, not
    # the whole baseline with its required keys (so validate stays fast on big grids)
    from jsonschema import Draft202012Validator

    subschema = load_schema(kind).get("properties", {}).get(key)
    if not isinstance(subschema, dict):
        return None
    return Draft202012Validator(subschema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def property_type(kind: str, key: str) -> str | None:
    """The JSON type a described key of ``kind`` takes (``"integer"``...), or None."""
    value = load_schema(kind).get("properties", {}).get(key, {}).get("type")
    return value if isinstance(value, str) else None


def value_problems(kind: str, key: str, value: Any) -> list[str]:
    """Why ``value`` cannot be ``key`` in a ``kind`` document, in the schema findings' words;
    empty when it can or when the schema does not describe ``key``."""
    validator = _property_validator(kind, key)
    if validator is None:
        return []
    problems = []
    for error in validator.iter_errors(value):
        where = "/".join([key, *(str(p) for p in error.absolute_path)])
        problems.append(_message(error, where))
    return problems


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# an enum is a handful of words, so a looser match than for keys still only finds typos:
# `gird`/`grid` is 0.75, while `exploration`/`iteration` (0.7) is no typo
_ENUM_CUTOFF = 0.75
_BOUNDS = {"minimum": "is less than the minimum of", "maximum": "is more than the maximum of",
           "exclusiveMinimum": "must be greater than", "exclusiveMaximum": "must be less than"}


def _enum_message(where: str, value: Any, choices: list[str]) -> str:
    message = f"{where}: {_short(value)} is not one of: {', '.join(choices)}"
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=_ENUM_CUTOFF)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _message(error: Any, where: str | None = None) -> str:
    validator = error.validator
    if where is None:
        where = "/".join(str(p) for p in error.absolute_path) or "document"
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required key {missing!r}"
    if validator == "additionalProperties":
        return f"{where}: {error.message}"
    if validator == "type":
        return f"{where}: expected {error.validator_value}, got {_short(error.instance)}"
    if validator == "enum":
        return _enum_message(where, error.instance, [str(c) for c in error.validator_value])
    if validator in _BOUNDS:
        return f"{where}: {_short(error.instance)} {_BOUNDS[validator]} {error.validator_value}"
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


def _unknown_key(key: str, where: str, allowed: Any) -> str:
    message = f"unknown key {key!r} in {where}"
    names = sorted(str(name) for name in allowed)
    lowered = {name.lower().replace("-", "_"): name for name in names}
    guess = lowered.get(str(key).lower().replace("-", "_"))
    if guess is None:
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=SUGGEST_CUTOFF)
        guess = close[0] if close else None
    return f"{message}; did you mean {guess!r}?" if guess else message


def check_schema(doc: Document, kind: str, findings: Findings) -> bool:
    """Append a finding per schema violation; return True when the document is valid."""
    valid = True
    errors = sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(e.absolute_path))
    for error in errors:
        valid = False
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = error.schema.get("properties", {})
            for key in (k for k in error.instance if k not in allowed):
                mark = doc.key_mark((*path, key))
                findings.error(doc.path, mark.line, mark.col,
                               _unknown_key(key, "/".join(map(str, path)) or kind, allowed),
                               "schema-unknown-key")
            continue
        mark = doc.mark(path)
        findings.error(doc.path, mark.line, mark.col, _message(error), f"schema-{error.validator}")
    return valid
