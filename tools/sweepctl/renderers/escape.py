"""THE escaper for untrusted text in GitHub markdown (the PR comment, notes.md).

Trial names, params, tags, statuses and metric names come from MLflow runs (anyone who
can log to the tracking server) or from a PR's YAML. Each becomes inert text here: no
link, image, HTML tag, @-mention, issue reference, autolink or table break survives.

GitHub resolves mentions, issue references and extended autolinks on the *rendered*
text, after backslash escapes and HTML entities are decoded, so escaping ``@`` or ``#``
would not stop them: a WORD JOINER (U+2060, invisible) after the ``@``, the ``#``, the
``:`` of ``://`` and the ``www`` breaks the pattern GitHub looks for instead.
"""

from __future__ import annotations

import re
from typing import Any

MAX_CELL = 120          # characters of one untrusted value shown in a table cell or line
ELLIPSIS = "…"
JOINER = "\u2060"

_ALWAYS = {"\\": "\\\\", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]", "~": "\\~",
           "$": "\\$", "|": "\\|"}
# `<` starts a tag or an autolink only before a letter, / ! or ?; `&` an entity only before
# a letter or #; each is escaped before another `<` or `&` too, so no run of them can
# regroup into one once the other is an entity. `>` quotes only at a line's start.
_OPENS_MARKUP = {"<": re.compile(r"[A-Za-z/!?&<]"), "&": re.compile(r"[A-Za-z#&<]")}
_ENTITY = {"<": "&lt;", "&": "&amp;", ">": "&gt;"}
# C0/C1 controls, line and paragraph separators, bidirectional overrides (Trojan Source)
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# where a joiner goes: @user, #12, owner/repo#12, GH-12, https://, www.
_BREAK = re.compile(r"(?i)(?<=[@#])(?=\w)|(?<=:)(?=//)|(?<=\bwww)(?=\.)|(?<=\bgh)(?=-\d)")


# what starts a block when it opens a line (or a list item: the plan's notes are bullets):
# an ATX heading, a bullet list or thematic break, an ordered list ("1." / "1)")
_BLOCK_START = re.compile(r"[ \t]*(?:#|[-+](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$))")


def _block_marker(text: str) -> int:
    """The index of the character that would open a block (escaped), or -1."""
    found = _BLOCK_START.match(text)
    return -1 if found is None else found.end() - 1


def _escape_char(text: str, at: int, marker: int) -> str:
    char = text[at]
    if at == marker:
        return "\\" + char
    if char == "_":
        # intraword underscores (eval_loss, lora_rank) never emphasize in GitHub markdown
        inner = 0 < at < len(text) - 1 and text[at - 1].isalnum() and text[at + 1].isalnum()
        return "_" if inner else "\\_"
    if char in _OPENS_MARKUP:
        after = text[at + 1:at + 2]
        return _ENTITY[char] if not after or _OPENS_MARKUP[char].match(after) else char
    if char == ">":
        return _ENTITY[char] if not text[:at].strip() else char
    return _ALWAYS.get(char, char)


def md_cell(value: Any, limit: int | None = MAX_CELL) -> str:
    """``value`` as inert, one-line markdown text of at most ``limit`` source characters."""
    text = _INVISIBLE.sub(" ", value if isinstance(value, str) else str(value))
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + ELLIPSIS
    marker = _block_marker(text)
    escaped = "".join(_escape_char(text, at, marker) for at in range(len(text)))
    return _BREAK.sub(JOINER, escaped)


_SAFE_URL = re.compile(r"https?://[A-Za-z0-9.:_~%/-]+")
_ID = re.compile(r"[0-9a-f]{1,64}")


def safe_base_url(uri: str | None) -> str | None:
    """``uri`` (credentials already removed) when it may stand in a link: http(s), and only
    characters that cannot close the link or start markup; else None."""
    if uri is None:
        return None
    base = uri.rstrip("/")
    return base if _SAFE_URL.fullmatch(base) else None


def is_id(value: str | None) -> bool:
    """An MLflow experiment or run id as the server makes them (digits, hex)."""
    return value is not None and _ID.fullmatch(value) is not None
