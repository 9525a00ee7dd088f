"""The audit trail of one experiment, read from git (`sweepctl history`).

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

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sweepctl import gitrepo
from sweepctl.errors import GitError, SpecError, UsageError
from sweepctl.spec.yamlload import parse_document

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


def _parse_at(repo: Any, ref: str, relative: str, name: str) -> tuple[Any, str | None]:
    raw = gitrepo.read_file_at(repo, ref, relative)
    try:
        return parse_document(raw or b"", Path(name)).data, None
    except SpecError as exc:
        return None, f"{name} did not parse at {ref[:7]} (line {exc.line}: {exc.args[0]})"


def _entry(repo: Any, record: gitrepo.CommitRecord, folder: str,
           pr_by_sha: dict[str, int]) -> HistoryEntry:
    subject = record.message.strip().splitlines()[0] if record.message.strip() else ""
    trailers = parse_trailers(record.message)
    keys = {k for k, _ in trailers}
    merge = HistoryEntry(sha=record.sha, author=record.author_name, email=record.author_email,
                         date=record.authored_at.isoformat(), subject=subject, kind="merge",
                         pr=pr_number(record.message) or pr_by_sha.get(record.sha),
                         trailers=trailers)
    if len(record.parents) > 1:
        # A merge's diff against its first parent repeats the branch's commits, which
        # are listed themselves: show the merge, not its changes again.
        return merge
    parent = record.parents[0] if record.parents else None
    before = gitrepo.folder_blobs(repo, parent, folder) if parent else {}
    after = gitrepo.folder_blobs(repo, record.sha, folder)
    files = {path: ("added" if path not in before else "deleted" if path not in after
                    else "modified")
             for path in sorted(before.keys() | after.keys())
             if before.get(path) != after.get(path)}
    changes: list[ParamChange] = []
    problems: list[str] = []
    for path, status in files.items():
        if status != "modified" or "/" in path or not path.endswith((".yaml", ".yml")):
            continue
        assert parent is not None  # "modified" implies a parent
        old, old_problem = _parse_at(repo, parent, f"{folder}/{path}", path)
        new, new_problem = _parse_at(repo, record.sha, f"{folder}/{path}", path)
        problems += [p for p in (old_problem, new_problem) if p]
        if old_problem is None and new_problem is None:
            changes += diff_params(path, old, new)
    for path, status in files.items():
        if status == "added" and path.endswith((".yaml", ".yml")) and "/" not in path:
            _, problem = _parse_at(repo, record.sha, f"{folder}/{path}", path)
            problems += [problem] if problem else []
    kind: EntryKind
    if TRAILER_RESULT in keys:
        kind = "results"
    elif TRAILER_LAUNCH in keys:
        kind = "launch"
    elif not files:
        kind = "recorded"
    elif not before:
        kind = "proposed"
    elif not after:
        kind = "removed"
    else:
        kind = "edited"
    return replace(merge, kind=kind, files=files, changes=tuple(changes),
                   problems=tuple(problems))


def experiment_history(folder: Path, rev: str = "HEAD") -> History:
    """The history of the experiment folder ``folder``, oldest commit first."""
    # A deleted experiment's folder is gone from the work tree: open the repo from the
    # nearest ancestor that exists.
    anchor = next((p for p in (folder, *folder.parents) if p.exists()), Path.cwd())
    repo = gitrepo.open_repo(anchor)
    try:
        relative = gitrepo.repo_relative(repo, folder)
    except ValueError as exc:
        raise UsageError(f"{folder} is outside the git repository") from exc
    if relative in ("", "."):
        raise UsageError(f"{folder} is the repository root; name an experiment folder")
    name = Path(relative).name
    records = gitrepo.folder_commits(repo, relative, rev, f"{TRAILER_EXPERIMENT}: {name}")
    # In a shallow clone (CI's default fetch-depth: 1) the oldest fetched commit looks
    # like it added the whole folder and its parent cannot be read: refuse to tell a
    # truncated story as if it were the whole one.
    boundary = gitrepo.shallow_commits(repo)
    cut = next((r for r in records if r.sha in boundary), None)
    if cut is not None:
        raise GitError(f"this clone is shallow: the history of {relative} goes back past "
                       f"{cut.sha[:7]}, whose parents were not fetched; run `git fetch "
                       "--unshallow` (in GitHub Actions: actions/checkout with fetch-depth: 0)")
    records = [r for r in records if _touches_or_names(repo, r, relative, name)]
    if not records:
        raise UsageError(f"no commit in {rev} touched {relative} (is it committed?)")
    pr_by_sha: dict[str, int] = {}
    for record in records:
        number = pr_number(record.message)
        if len(record.parents) > 1 and number is not None:
            for sha in gitrepo.commits_between(repo, record.parents[0], record.parents[1],
                                               relative):
                pr_by_sha.setdefault(sha, number)
    entries = [_entry(repo, r, relative, pr_by_sha) for r in reversed(records)]
    return History(experiment=name, path=relative, entries=tuple(entries))


def _touches_or_names(repo: Any, record: gitrepo.CommitRecord, relative: str, name: str) -> bool:
    """The trailer search is a substring match: keep only exact trailer values."""
    if (TRAILER_EXPERIMENT, name) in parse_trailers(record.message):
        return True
    parent = record.parents[0] if record.parents else None
    before = gitrepo.folder_blobs(repo, parent, relative) if parent else {}
    return before != gitrepo.folder_blobs(repo, record.sha, relative)


# --- renderers -------------------------------------------------------------------------


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def describe_change(change: ParamChange) -> str:
    if change.kind == "added":
        return f"{change.file}: + {change.key} = {_value(change.new)}"
    if change.kind == "removed":
        return f"{change.file}: - {change.key} (was {_value(change.old)})"
    return f"{change.file}: {change.key}: {_value(change.old)} -> {_value(change.new)}"


def render_text(history: History) -> str:
    count = len(history.entries)
    lines = [f"{history.experiment} ({history.path}): {count} commit{'s' * (count != 1)}, "
             "oldest first", ""]
    for entry in history.entries:
        pr = f" (#{entry.pr})" if entry.pr is not None else ""
        lines.append(f"{entry.sha[:7]} {entry.date[:10]} {entry.author} <{entry.email}>{pr} "
                     f"[{entry.kind}]")
        lines.append(f"    {entry.subject}")
        if entry.kind == "proposed":
            lines.append(f"    proposed: {', '.join(entry.files)}")
        else:
            changed_files = {c.file for c in entry.changes}
            for path, status in entry.files.items():
                if status != "modified" or not path.endswith((".yaml", ".yml")):
                    lines.append(f"    {status}: {path}")
                elif path not in changed_files and not any(path in p for p in entry.problems):
                    lines.append(f"    modified: {path} (no key changed: comments or layout)")
        lines += [f"    {describe_change(c)}" for c in entry.changes]
        lines += [f"    {key}: {value}" for key, value in entry.trailers
                  if key.startswith("Sweepctl-")]
        lines += [f"    warning: {p}" for p in entry.problems]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def render_json(history: History) -> str:
    return json.dumps(asdict(history), indent=2, ensure_ascii=False, default=str)
