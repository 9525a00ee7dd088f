"""The one module that talks to git (through gitpython, imported lazily)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sweepctl.errors import GitError


def open_repo(path: Path) -> Any:
    try:
        import git
    except ImportError as exc:  # pragma: no cover
        raise GitError("gitpython is not installed (pip install 'sweepctl[full]')") from exc
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise GitError(f"{path} is not inside a git repository") from exc


def repo_relative(repo: Any, path: Path) -> str:
    return Path(path).resolve().relative_to(Path(repo.working_tree_dir).resolve()).as_posix()


def read_file_at(repo: Any, ref: str, relative_path: str) -> bytes | None:
    """The file's bytes at ``ref``, or None when it did not exist there."""
    import git

    try:
        commit = repo.commit(ref)
    except (git.BadName, ValueError) as exc:
        raise GitError(f"unknown revision {ref!r}") from exc
    try:
        blob = commit.tree / relative_path
    except KeyError:
        return None
    data: bytes = blob.data_stream.read()
    return data


def tracked(root: Path, relative: Path) -> bool:
    """Whether git tracks anything at or under ``root/relative`` (outside a repository,
    or when git cannot tell: no)."""
    import git

    try:
        return bool(open_repo(root).git.ls_files("--", str(root / relative)).strip())
    except (GitError, git.GitCommandError):
        return False


def head_sha(path: Path) -> str | None:
    try:
        repo = open_repo(path)
        return str(repo.head.commit.hexsha)
    except (GitError, ValueError):
        return None


# --- history (sweepctl history): commits of one folder, read in-process -------------------


@dataclass(frozen=True)
class CommitRecord:
    """One commit as history needs it; plain data, so history.py never touches gitpython."""

    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored_at: datetime
    message: str


def _record(commit: Any) -> CommitRecord:
    return CommitRecord(
        sha=str(commit.hexsha),
        parents=tuple(str(p.hexsha) for p in commit.parents),
        author_name=str(commit.author.name or ""),
        author_email=str(commit.author.email or ""),
        authored_at=commit.authored_datetime,
        message=str(commit.message),
    )


def folder_commits(repo: Any, relative_dir: str, rev: str = "HEAD",
                   trailer: str | None = None) -> list[CommitRecord]:
    """Commits that touched ``relative_dir`` (newest first), plus those whose message
    contains ``trailer`` (e.g. ``Sweepctl-Experiment: name``) even if they did not.

    ``--full-history`` keeps the merge commits that brought a branch's changes in: they
    carry "Merge pull request #N", which the branch's own commits usually do not.
    """
    import git

    try:
        repo.commit(rev)
    except (git.BadName, ValueError) as exc:
        raise GitError(f"unknown revision {rev!r}") from exc
    try:
        # Topological order: commits made in the same second (scripts, rebases) would
        # come out in any order if sorted by date.
        commits = list(repo.iter_commits(rev, paths=relative_dir, full_history=True,
                                         topo_order=True))
        extra = {}
        if trailer:
            seen = {c.hexsha for c in commits}
            extra = {c.hexsha: c for c in repo.iter_commits(rev, grep=trailer,
                                                             fixed_strings=True)
                     if c.hexsha not in seen}
        if extra:  # rare (commits that only record something): merge by the full order
            wanted = {c.hexsha: c for c in commits} | extra
            order = repo.git.rev_list("--topo-order", rev).split()
            commits = [wanted[sha] for sha in order if sha in wanted]
    except git.GitCommandError as exc:
        raise GitError(f"git log failed: {exc.stderr.strip() or exc}") from exc
    return [_record(c) for c in commits]


def commits_between(repo: Any, base: str, tip: str, relative_dir: str) -> list[str]:
    """Shas reachable from ``tip`` but not ``base`` that touched ``relative_dir``
    (the commits a merge brought in)."""
    import git

    try:
        return [str(c.hexsha) for c in repo.iter_commits(f"{base}..{tip}", paths=relative_dir)]
    except git.GitCommandError as exc:
        raise GitError(f"git log failed: {exc.stderr.strip() or exc}") from exc


def folder_blobs(repo: Any, ref: str, relative_dir: str) -> dict[str, str]:
    """Every file under ``relative_dir`` at ``ref``: path relative to it -> blob sha.

    Empty when the folder did not exist there. Comparing blob shas finds changed files
    without spawning a `git diff` per commit.
    """
    import git

    try:
        tree = repo.commit(ref).tree / relative_dir
    except KeyError:
        return {}
    except (git.BadName, ValueError) as exc:
        raise GitError(f"unknown revision {ref!r}") from exc
    if tree.type != "tree":
        return {}
    prefix = len(relative_dir.rstrip("/")) + 1
    return {str(item.path)[prefix:]: str(item.hexsha)
            for item in tree.traverse() if item.type == "blob"}


# --- report: the commit that added an experiment (to find its PR) ----------------------


def commit_adding(path: Path) -> str | None:
    """The sha of the commit that first added ``path`` (the oldest `--diff-filter=A`),
    or None when it is not in the history (uncommitted) or not in a repository."""
    import git

    try:
        repo = open_repo(path)
        relative = repo_relative(repo, path)
        out = repo.git.log("--diff-filter=A", "--format=%H", "--", relative)
    except (GitError, ValueError):
        return None
    except git.GitCommandError as exc:
        raise GitError(f"git log failed: {exc.stderr.strip() or exc}") from exc
    shas = str(out).split()
    if shas and shas[-1] in shallow_commits(repo):
        # the oldest fetched commit "adds" everything: its PR is most likely not this one
        raise GitError(f"this clone is shallow, so the commit that added {relative} may "
                       "not be fetched; run `git fetch --unshallow` (in GitHub Actions: "
                       "actions/checkout with fetch-depth: 0) or pass --pr N")
    return shas[-1] if shas else None


def shallow_commits(repo: Any) -> set[str]:
    """The commits of a shallow clone whose parents were not fetched (``.git/shallow``);
    empty for a full clone. Their parents are named in the commit but absent."""
    try:
        text = (Path(repo.common_dir) / "shallow").read_text()
    except OSError:
        return set()
    return set(text.split())
