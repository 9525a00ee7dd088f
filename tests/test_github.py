"""The sticky comment through PyGithub against a GitHub REST stand-in (pytest-httpserver)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from github_standin import REPO, GitHubStandIn
from pytest_httpserver import HTTPServer
from sweepctl.clients.github_api import GitHubTarget, StickyComment, pull_request_for_commit
from sweepctl.clients.mlflow_store import RunRecord
from sweepctl.errors import GitHubError
from sweepctl.renderers.markdown import GITHUB_COMMENT_LIMIT, comment_body, comment_marker
from sweepctl.results.compare import build_comparison
from sweepctl.spec.model import Objective
from sweepctl.sweep.trial import Trial

MARKER = comment_marker("lora-rank-sweep")


@pytest.fixture
def github(httpserver: HTTPServer) -> Iterator[GitHubStandIn]:
    yield GitHubStandIn(httpserver).install()
    httpserver.clear()


def target(standin: GitHubStandIn) -> GitHubTarget:
    return GitHubTarget(repository=REPO, token="t0ken", api_url=standin.url, throttle=False)


def sticky(standin: GitHubStandIn, pr: int = 7) -> StickyComment:
    return StickyComment(target(standin), pr, MARKER, sleep=lambda _: None)


def test_created_once_then_edited_over_five_reports(github: GitHubStandIn) -> None:
    other = github.add(7, "LGTM, but see the other bot's notes")
    actions = [sticky(github).upsert(f"{MARKER}\nreport {i}\n").action for i in range(5)]

    assert actions == ["created", "updated", "updated", "updated", "updated"]
    ours = [c for c in github.on(7) if c["body"].startswith(MARKER)]
    assert len(ours) == 1 and ours[0]["body"] == f"{MARKER}\nreport 4\n"
    assert github.comments[other]["body"] == "LGTM, but see the other bot's notes"
    assert all(comment_id != other for _, comment_id in github.writes)
    assert sticky(github).upsert(f"{MARKER}\nreport 4\n").action == "unchanged"


def test_a_comment_quoting_the_marker_is_not_ours(github: GitHubStandIn) -> None:
    quoted = github.add(7, f"> {MARKER}\n> the old table")
    assert sticky(github).upsert(f"{MARKER}\nnew\n").action == "created"
    assert github.comments[quoted]["body"].startswith("> ")


def test_a_marker_comment_by_another_author_is_never_edited(github: GitHubStandIn) -> None:
    """Whoever posts the marker first must not own the report: only the bot's login is
    ours, a user's or another bot's comment with the marker is left as it is."""
    squatters = [github.add(7, f"{MARKER}\nforged: ship it", login=login)
                 for login in ("mallory", "github-actions", "other-bot[bot]")]
    assert sticky(github).upsert(f"{MARKER}\nreal\n").action == "created"
    assert sticky(github).upsert(f"{MARKER}\nreal 2\n").action == "updated"
    assert all(github.comments[s]["body"] == f"{MARKER}\nforged: ship it" for s in squatters)
    ours = [c for c in github.on(7) if c["user"]["login"] == "github-actions[bot]"]
    assert [c["body"] for c in ours] == [f"{MARKER}\nreal 2\n"]
    assert {comment_id for _, comment_id in github.writes}.isdisjoint(squatters)


def test_a_502_after_the_create_is_retried_without_a_duplicate(github: GitHubStandIn) -> None:
    github.fail_next += [("GET", 502), ("POST", 502)]
    waits: list[float] = []
    result = StickyComment(target(github), 7, MARKER, sleep=waits.append).upsert(f"{MARKER}\nx\n")
    assert len(waits) == 2
    assert len(github.on(7)) == 1 and result.action == "unchanged"  # found on retry


def test_rate_limit_is_waited_out_and_4xx_is_not_retried(github: GitHubStandIn) -> None:
    github.fail_next.append(("PATCH", 429))
    sticky(github).upsert(f"{MARKER}\na\n")
    assert sticky(github).upsert(f"{MARKER}\nb\n").action == "updated"
    github.fail_next.append(("PATCH", 422))
    with pytest.raises(GitHubError, match="HTTP 422"):
        sticky(github).upsert(f"{MARKER}\nc\n")


def test_never_posts_a_body_without_its_marker(github: GitHubStandIn) -> None:
    with pytest.raises(GitHubError, match="without its marker"):
        sticky(github).upsert("half a report")
    assert github.writes == []


def test_pull_request_of_a_commit(github: GitHubStandIn) -> None:
    github.pulls["abc123"] = [12]
    assert pull_request_for_commit(target(github), "abc123", sleep=lambda _: None) == 12
    assert pull_request_for_commit(target(github), "def456", sleep=lambda _: None) is None


def test_an_oversize_table_keeps_top_rows_under_the_limit(github: GitHubStandIn) -> None:
    base = {"lora_rank": 8, "learning_rate": 1e-4}
    trials = [Trial(0, "baseline", {}, base, "t0", "x-baseline-t0")]
    runs = [RunRecord("r0", "FINISHED", "t0", "x", metrics={"eval_loss": 0.5,
                                                          "train_runtime": 100.0})]
    for i in range(1, 3000):
        params = {"lora_rank": 8 + i, "learning_rate": 1e-4 * (1 + i % 7)}
        trials.append(Trial(i, f"r{8 + i}-lr{i % 7}", params, {**base, **params}, f"t{i}",
                            f"x-r{i}-t{i}"))
        runs.append(RunRecord(f"r{i}", "FINISHED", f"t{i}", "x",
                              metrics={"eval_loss": 0.3 + (i % 97) / 1000,
                                       "train_runtime": 100.0 + i}))
    comparison = build_comparison("lora-rank-sweep", trials, runs,
                                  Objective("eval_loss", "minimize", 0.4))
    body = comment_body(comparison, "https://github.example/octo/experiments/blob/HEAD/n.md")

    assert len(body) < GITHUB_COMMENT_LIMIT
    assert "more row(s) not shown here: [full table in notes.md](https://github.example" in body
    assert "| baseline " in body and f"| {comparison.best.label if comparison.best else ''} " \
        in body
    assert sticky(github).upsert(body).action == "created"
    assert github.on(7)[0]["body"] == body


def test_our_comment_is_found_past_the_first_page(github: GitHubStandIn) -> None:
    """GitHub lists at most 100 comments a page: a busy PR's sticky comment sits on a
    later page and must be edited there, not duplicated."""
    for i in range(130):
        github.add(7, f"review comment {i}")
    assert sticky(github).upsert(f"{MARKER}\nfirst\n").action == "created"
    assert sticky(github).upsert(f"{MARKER}\nsecond\n").action == "updated"
    ours = [c for c in github.on(7) if c["body"].startswith(MARKER)]
    assert len(ours) == 1 and ours[0]["body"] == f"{MARKER}\nsecond\n"
    assert (100, 2) in github.list_requests  # it really paged
