"""Checks that runtime values are valid Kubernetes identifiers, quantities and env text.

A value Kubernetes treats as an identifier is checked and refused when invalid, never
rewritten: a silently "fixed" namespace, secret or queue name points at another object.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from sweepctl.errors import SweepctlError

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # Service names
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,510}$")  # registries cap names near 255
ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_TOLERATION_KEYS = {"key": str, "operator": str, "value": str, "effect": str,
                    "tolerationSeconds": int}


class RenderError(SweepctlError):
    """A runtime setting cannot become a valid Kubernetes object."""


def label_value(value: str) -> str:
    """A valid label value for ``value``: itself when valid, else a readable prefix + hash."""
    if LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:50].strip("-_.")
    return f"{readable}-{digest}" if readable else digest


def check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise RenderError(f"{what} {str(value)[:80]!r} is not valid for Kubernetes")
    return value


def label_key(key: object) -> str:
    text = str(key)
    prefix, _, name = text.rpartition("/")
    if (prefix and not DNS_SUBDOMAIN.match(prefix)) or not _LABEL_NAME.match(name):
        raise RenderError(f"label key {text[:80]!r} is not valid for Kubernetes")
    return text


def tolerations(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for item in items:
        if not isinstance(item, Mapping):
            raise RenderError("each kubernetes.tolerations entry must be a mapping")
        toleration: dict[str, Any] = {}
        for key, value in item.items():
            kind = _TOLERATION_KEYS.get(key)
            if kind is None or isinstance(value, bool) or not isinstance(value, kind):
                raise RenderError(f"toleration field {str(key)[:40]!r} is unknown or mistyped")
            toleration[key] = value
        # the API server checks these as a label key and value; fail here, at render time
        if "key" in toleration:
            label_key(toleration["key"])
        if "value" in toleration:
            check(LABEL_VALUE, toleration["value"], "toleration value")
        result.append(toleration)
    return result


def env_literal(value: str) -> str:
    """An env value Kubernetes passes as is: it expands ``$(VAR)`` (which could copy a
    secret into another variable) and reads ``$$`` as ``$``."""
    return value.replace("$", "$$")


def plain_tracking_uri(uri: str) -> str:
    # a password in the URI would land in the Job's spec for anyone who can read Jobs
    try:
        password = urlsplit(uri).password
    except ValueError as exc:
        raise RenderError(f"the MLflow tracking URI {uri[:80]!r} is not a valid URI") from exc
    if password is not None:
        raise RenderError("the MLflow tracking URI must not carry credentials; reference "
                          "MLFLOW_TRACKING_PASSWORD or a token through kubernetes.secret_env")
    return uri


def whole_number(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RenderError(f"{what} must be a whole number >= {minimum}")
    return value
