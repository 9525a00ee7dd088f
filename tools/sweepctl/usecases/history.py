"""`sweepctl history`: walk git for one experiment's commits and build its ``History``
(the entries, trailers and key changes are described in ``results.history``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sweepctl.clients import gitrepo
from sweepctl.errors import GitError, SpecError, UsageError
from sweepctl.results.history import (
    TRAILER_EXPERIMENT,
    TRAILER_LAUNCH,
    TRAILER_RESULT,
    EntryKind,
    History,
    HistoryEntry,
    ParamChange,
    diff_params,
    parse_trailers,
    pr_number,
)
from sweepctl.spec.yamlload import parse_document

__all__ = ["experiment_history"]

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


