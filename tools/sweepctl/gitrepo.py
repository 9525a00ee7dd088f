"""The one module that talks to git (through gitpython, imported lazily)."""

from __future__ import annotations

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


def head_sha(path: Path) -> str | None:
    try:
        repo = open_repo(path)
        return str(repo.head.commit.hexsha)
    except (GitError, ValueError):
        return None
