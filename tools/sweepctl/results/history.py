"""The audit trail of one experiment as data: commits, key changes, trailers.

Read from git by ``usecases.history``; rendered by ``renderers.history``.

Every commit that touched the experiment's folder becomes an entry: who, when, which
PR, which files, and, for each YAML file that existed before and after, which keys
changed and how (nested keys dotted, lists compared whole). Commits made by sweepctl's
workflows carry trailers; they mark launches and results:

- ``Sweepctl-Experiment: <name>``: the commit is about this experiment (report.yml's
  notes.md commits carry it); such a commit is listed even if it touched no file of
  the folder (e.g. an empty commit recording a launch).
- ``Sweepctl-Launch: <what>``: a launch was recorded (e.g. ``6 trials, run <url>``).
- ``Sweepctl-Result: <what>``: results were written (e.g. ``notes.md``).

Any other ``Sweepctl-*`` trailer is kept and shown as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

TRAILER_EXPERIMENT = "Sweepctl-Experiment"
TRAILER_LAUNCH = "Sweepctl-Launch"
TRAILER_RESULT = "Sweepctl-Result"

# GitHub's squash merge puts "(#123)" at the end of the subject; its merge commit says
# "Merge pull request #123 from owner/branch".
_PR_PATTERNS = (re.compile(r"\(#(\d+)\)\s*$"), re.compile(r"^Merge pull request #(\d+)\b"))
_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s*(.*?)\s*$")
_MISSING = object()

ChangeKind = Literal["added", "removed", "changed"]
EntryKind = Literal["proposed", "edited", "removed", "merge", "launch", "results", "recorded"]


@dataclass(frozen=True)
class ParamChange:
    file: str            # e.g. "sweep.yaml"
    key: str             # dotted: "parameters.lora_rank"
    kind: ChangeKind
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class HistoryEntry:
    sha: str
    author: str
    email: str
    date: str            # ISO 8601 with the author's offset
    subject: str
    kind: EntryKind
    pr: int | None = None
    files: dict[str, str] = field(default_factory=dict)   # path -> added|modified|deleted
    changes: tuple[ParamChange, ...] = ()
    trailers: tuple[tuple[str, str], ...] = ()
    problems: tuple[str, ...] = ()                          # e.g. a file that did not parse


@dataclass(frozen=True)
class History:
    experiment: str
    path: str            # the folder, relative to the repository root
    entries: tuple[HistoryEntry, ...]   # oldest first: it reads as a story


def pr_number(message: str) -> int | None:
    subject = message.strip().splitlines()[0] if message.strip() else ""
    for pattern in _PR_PATTERNS:
        found = pattern.search(subject)
        if found:
            return int(found.group(1))
    return None


def parse_trailers(message: str) -> tuple[tuple[str, str], ...]:
    """Trailers of the message's last paragraph (the `git interpret-trailers` rule: every
    non-continuation line of it is `Key: value`)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return ()
    found: list[tuple[str, str]] = []
    for line in paragraphs[-1].splitlines():
        if line[:1].isspace() and found:      # a folded continuation line
            key, value = found[-1]
            found[-1] = (key, f"{value} {line.strip()}")
            continue
        match = _TRAILER.match(line)
        if match is None:
            return ()
        found.append((match.group(1), match.group(2)))
    return tuple(found)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys; lists and scalars are leaves."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def diff_params(file: str, old: Any, new: Any) -> list[ParamChange]:
    before, after = flatten(old), flatten(new)
    changes: list[ParamChange] = []
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key, _MISSING), after.get(key, _MISSING)
        if was is _MISSING:
            changes.append(ParamChange(file, key, "added", new=now))
        elif now is _MISSING:
            changes.append(ParamChange(file, key, "removed", old=was))
        elif was != now or type(was) is not type(now):   # 1 -> 1.0 or true -> 1 is a change
            changes.append(ParamChange(file, key, "changed", was, now))
    return changes
