"""THE GitHub module (PyGithub, imported lazily): the sticky PR comment and the PR of a
commit. Nothing else in sweepctl imports ``github``.

The comment is found by its hidden marker at the start of the body AND its author: the
bot's own login (``GitHubTarget.bot_login``). Anyone can post a comment that starts with
the marker; such a comment is never edited (it would let its author own the "official"
report), and the bot creates its own next to it.
Every attempt re-reads the comments before writing, so a create whose response was
lost (a 502 after GitHub stored it) is found and edited on retry instead of duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sweepctl.errors import GitHubError

DEFAULT_API_URL = "https://api.github.com"
# the login GITHUB_TOKEN's comments carry; a GitHub App posts as "<app-slug>[bot]"
DEFAULT_BOT_LOGIN = "github-actions[bot]"
MAX_ATTEMPTS = 5
MAX_WAIT_SECONDS = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class GitHubTarget:
    repository: str                       # owner/name (GITHUB_REPOSITORY)
    token: str | None = None              # GITHUB_TOKEN
    api_url: str = DEFAULT_API_URL        # GITHUB_API_URL (GitHub Enterprise, a stand-in)
    # GitHub asks integrations to space writes ~1 s apart; tests turn it off
    throttle: bool = True
    bot_login: str = DEFAULT_BOT_LOGIN    # github.bot_login / SWEEPCTL_BOT_LOGIN


@dataclass(frozen=True)
class CommentResult:
    action: str          # created | updated | unchanged
    comment_id: int
    url: str | None


def _client(target: GitHubTarget) -> Any:
    try:
        from github import Auth, Github
    except ImportError as exc:  # pragma: no cover
        raise GitHubError("PyGithub is not installed (pip install 'sweepctl[full]')") from exc
    auth = Auth.Token(target.token) if target.token else None
    # retries are ours (below): PyGithub's would re-POST a comment blindly
    return Github(base_url=target.api_url.rstrip("/"), auth=auth, retry=None, timeout=30,
                  per_page=100, lazy=True,  # no GET of the repo or issue before use
                  seconds_between_requests=0.25 if target.throttle else None,
                  seconds_between_writes=1.0 if target.throttle else None)


def _wait(exc: Exception, attempt: int) -> float | None:
    """Seconds to wait before retrying ``exc``, or None when it is not worth retrying."""
    import requests
    from github import GithubException, RateLimitExceededException

    if isinstance(exc, requests.exceptions.RequestException):
        return min(2.0 ** attempt, MAX_WAIT_SECONDS)
    if not isinstance(exc, GithubException):
        return None
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    limited = isinstance(exc, RateLimitExceededException) or exc.status == 429 or (
        exc.status == 403 and (headers.get("x-ratelimit-remaining") == "0"
                               or "retry-after" in headers))
    if limited:
        if "retry-after" in headers and headers["retry-after"].isdigit():
            return min(float(headers["retry-after"]), MAX_WAIT_SECONDS)
        reset = headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return min(max(float(reset) - time.time(), 1.0), MAX_WAIT_SECONDS)
        return min(2.0 ** attempt * 5, MAX_WAIT_SECONDS)
    if exc.status >= 500:
        return min(2.0 ** attempt, MAX_WAIT_SECONDS)
    return None


def _describe(exc: Exception) -> str:
    from github import GithubException

    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else None
        return f"HTTP {exc.status}: {message or exc.data or type(exc).__name__}"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def with_retries(action: str, call: Callable[[], T],
                 sleep: Callable[[float], None] = time.sleep,
                 attempts: int = MAX_ATTEMPTS) -> T:
    """Run ``call``; on 5xx, rate limits and connection errors wait and run it again."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            wait = _wait(exc, attempt)
            if wait is None or attempt == attempts - 1:
                raise GitHubError(f"cannot {action}: {_describe(exc)}") from exc
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


class StickyComment:
    """The one comment per PR and experiment: written by ``target.bot_login`` and starting
    with ``marker``."""

    def __init__(self, target: GitHubTarget, pr_number: int, marker: str,
                 sleep: Callable[[float], None] = time.sleep, client: Any = None) -> None:
        self.target = target
        self.pr_number = pr_number
        self.marker = marker
        self._sleep = sleep
        self._gh = client if client is not None else _client(target)

    def _issue(self) -> Any:
        return self._gh.get_repo(self.target.repository).get_issue(self.pr_number)

    def find(self) -> Any | None:
        """Our comment (the oldest, should duplicates ever exist), or None."""
        for comment in self._issue().get_comments():
            user = comment.user
            author = user.login if user is not None else None
            if author == self.target.bot_login and (comment.body or "").startswith(self.marker):
                return comment
        return None

    def upsert(self, body: str) -> CommentResult:
        """Create the comment once, then edit it; ``body`` is complete before any write."""
        if not body.startswith(self.marker):
            raise GitHubError("refusing to post a report without its marker")

        def attempt() -> CommentResult:
            existing = self.find()
            if existing is None:
                created = self._issue().create_comment(body)
                return CommentResult("created", created.id, created.html_url)
            if existing.body == body:
                return CommentResult("unchanged", existing.id, existing.html_url)
            existing.edit(body)
            return CommentResult("updated", existing.id, existing.html_url)

        where = f"{self.target.repository}#{self.pr_number}"
        return with_retries(f"update the sweepctl comment on {where}", attempt, self._sleep)


class GitHub:
    """One client for a whole command (``report`` of every experiment shares it)."""

    def __init__(self, target: GitHubTarget, sleep: Callable[[float], None] = time.sleep) -> None:
        self.target = target
        self._sleep = sleep
        self._gh = _client(target)

    def comment(self, pr_number: int, marker: str) -> StickyComment:
        return StickyComment(self.target, pr_number, marker, self._sleep, client=self._gh)

    def pull_request_for_commit(self, sha: str) -> int | None:
        return pull_request_for_commit(self.target, sha, self._sleep, client=self._gh)


def pull_request_for_commit(target: GitHubTarget, sha: str,
                            sleep: Callable[[float], None] = time.sleep,
                            client: Any = None) -> int | None:
    """The PR that brought ``sha`` (GET /repos/{o}/{r}/commits/{sha}/pulls), or None."""
    gh = client if client is not None else _client(target)

    def attempt() -> int | None:
        pulls = list(gh.get_repo(target.repository).get_commit(sha).get_pulls())
        merged = [p for p in pulls if getattr(p, "merged_at", None)]
        chosen = (merged or pulls or [None])[0]
        return None if chosen is None else int(chosen.number)

    return with_retries(f"find the pull request of commit {sha[:12]} in {target.repository}",
                        attempt, sleep)
