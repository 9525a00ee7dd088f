"""The one comment-size limiter: GitHub refuses a comment body over 65,536 characters."""

from __future__ import annotations

from collections.abc import Callable

GITHUB_COMMENT_LIMIT = 65_536


def fit(build: Callable[[int], str], total: int, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """``build(k)`` with the largest ``k <= total`` rows whose text stays within ``limit``
    characters (``build`` must grow with ``k``); ``build(0)`` when even that is too long."""
    body = build(total)
    if len(body) <= limit:
        return body
    low, high = 0, total - 1
    while low < high:  # binary search over the row count
        middle = (low + high + 1) // 2
        if len(build(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return build(low)
