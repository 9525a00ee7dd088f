"""Secrets that must never be committed: keys that carry one, values that look like one.

An experiment folder is public to everyone who can read the repository, and every
baseline key becomes an MLflow param and a ConfigMap entry (issue 10), so a secret
written there is leaked three times. Findings name the key and the kind of secret,
never the value: the finding itself is printed in CI logs and PR annotations.

Decisions:
- Known token formats (Hugging Face, GitHub, OpenAI-style, AWS, Slack, JWT, private
  keys, passwords in URLs) are matched anywhere in a string.
- Anything else is caught as a "high-entropy string": a run of >= 24 letters and
  digits with upper case, lower case and digits mixed and near-random character
  statistics. Pure hex (sha256 of a dataset, commit SHAs, image digests) has one
  letter case, so it never counts: hashes are everywhere in configs, and a hex secret
  is still caught by its key name.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sweepctl.findings import Findings
from sweepctl.spec.yamlload import Document, Key

_EDGE = r"(?<![A-Za-z0-9])"
TOKEN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Hugging Face token", re.compile(_EDGE + r"hf_[A-Za-z0-9]{30,}")),
    ("a GitHub token", re.compile(_EDGE + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|"
                                          r"github_pat_[A-Za-z0-9_]{50,})")),
    ("an API key (sk-...)", re.compile(_EDGE + r"sk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}")),
    ("an AWS access key id", re.compile(_EDGE + r"(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")),
    ("a Slack token", re.compile(_EDGE + r"xox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a JSON Web Token", re.compile(_EDGE + r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a password in a URL", re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
)
_RUN = re.compile(r"[A-Za-z0-9]{24,}")
# one search that every token matches: most strings are short words and stop here
_ANY = re.compile("|".join(pattern.pattern for _, pattern in TOKEN_FORMATS) + "|" + _RUN.pattern)
MIN_ENTROPY = 4.0  # bits per character; random base62 of 24+ chars is ~4.3, words ~3.5
# Words joined without separators (``llamaMixtral70Bcheckpoint``) can reach that entropy;
# cut into CamelCase pieces and digit runs they are long (~5 characters a piece), random
# base62 is not (~1.6; at most 2.6 for 98% of 40-character tokens)
_PIECE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
MAX_PIECE = 2.6

# Key names that carry a secret (matched on the last part of the key, case-insensitive):
# LLaMA-Factory's hf_hub_token / ms_hub_token / om_hub_token / swanlab_api_key /
# swanlab_lark_secret and the usual spellings elsewhere.
_SECRET_KEY = re.compile(r"(?:^|_)(?:token|secret|api_?key|access_?key|secret_?key|private_?key|"
                         r"credentials?)$|passw(?:or)?d", re.IGNORECASE)
# A tokenizer's special tokens are strings like "<pad>", not credentials.
_SPECIAL_TOKEN = re.compile(r"^(?:pad|eos|bos|unk|sep|cls|mask)_token$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """True when a key by its name carries a secret (``hf_hub_token``, ``db_password``)."""
    return bool(_SECRET_KEY.search(key)) and not _SPECIAL_TOKEN.match(key)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _random_looking(run: str) -> bool:
    mixed = (any(c.isupper() for c in run) and any(c.islower() for c in run)
             and sum(c.isdigit() for c in run) >= 2)
    return (mixed and _entropy(run) >= MIN_ENTROPY
            and len(run) <= MAX_PIECE * len(_PIECE.findall(run)))


def token_kind(value: str) -> str | None:
    """What secret ``value`` looks like ("a Hugging Face token"), or None."""
    for kind, pattern in TOKEN_FORMATS:
        if pattern.search(value):
            return kind
    if any(_random_looking(run) for run in _RUN.findall(value)):
        return "a high-entropy string (an access token or key)"
    return None


def _where(key: Key) -> str:
    # a key may itself be the token (`hf_abc...: x`): name its place, never its text
    return ".".join("<hidden>" if isinstance(part, str) and token_kind(part) else str(part)
                    for part in key)


# Secret *references* (a Secret's name) are governed by the policy, not secrets themselves.
_REFERENCES: tuple[Key, ...] = (("runtime", "kubernetes", "secret_env"),
                                ("kubernetes", "secret_env"))


def _secret_key_finding(doc: Document, key: Key, findings: Findings) -> None:
    mark = doc.key_mark(key)
    findings.error(doc.path, mark.line, mark.col,
                   f"{_where(key)} carries a secret; secrets never go into {doc.path.name} "
                   "(they would be logged as MLflow params and stored in ConfigMaps): "
                   "reference a Kubernetes Secret via kubernetes.secret_env in defaults.yaml",
                   "secret-key")


def _token_finding(doc: Document, key: Key, kind: str, in_key: bool, findings: Findings) -> None:
    if in_key:
        mark, what = doc.key_mark(key), f"a key in {_where(key[:-1]) or 'the document'}"
    else:
        mark, what = doc.mark(key), f"the value of {_where(key) or 'the document'}"
    findings.error(doc.path, mark.line, mark.col, f"{what} looks like {kind}; remove it from "
                   "the repository and revoke it", "secret-value")


def check_secrets(doc: Document, findings: Findings) -> None:
    """One finding per secret-bearing key and per token-like key or value; never the value.

    An explicit stack, not recursion: this runs on every node of every file validate reads.
    """
    stack: list[tuple[Key, Any, bool]] = [((), doc.data, True)]
    while stack:
        key, value, check_value = stack.pop()
        if isinstance(value, str):
            if check_value and _ANY.search(value) and (kind := token_kind(value)) is not None:
                _token_finding(doc, key, kind, False, findings)
        elif isinstance(value, Mapping):
            for name, child in value.items():
                where = (*key, name)
                secret = is_secret_key(name) and not any(
                    where[:len(ref)] == ref for ref in _REFERENCES)
                if secret:
                    # the value under a secret key is not reported a second time
                    _secret_key_finding(doc, where, findings)
                elif _ANY.search(name) and (kind := token_kind(name)) is not None:
                    _token_finding(doc, where, kind, True, findings)
                stack.append((where, child, not secret))
        elif isinstance(value, list):
            stack.extend(((*key, index), child, check_value) for index, child in enumerate(value))
