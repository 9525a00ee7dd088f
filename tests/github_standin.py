"""A GitHub REST stand-in on pytest-httpserver that keeps issue comments in memory:
enough of the API for PyGithub's comment listing, create, edit and commit -> pulls."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

REPO = "octo/experiments"


@dataclass
class GitHubStandIn:
    server: HTTPServer
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, int]] = field(default_factory=list)   # (method, comment id)
    fail_next: list[tuple[str, int]] = field(default_factory=list)  # (method, status)
    pulls: dict[str, list[int]] = field(default_factory=dict)      # sha -> PR numbers
    list_requests: list[tuple[int, int]] = field(default_factory=list)  # (per_page, page)
    next_id: int = 1000
    bot_login: str = "github-actions[bot]"  # the author of what the token creates

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def install(self) -> GitHubStandIn:
        base = f"/repos/{REPO}"
        self.server.expect_request(re.compile(rf"^{base}/issues/\d+/comments$"),
                                   method="GET").respond_with_handler(self._list)
        self.server.expect_request(re.compile(rf"^{base}/issues/\d+/comments$"),
                                   method="POST").respond_with_handler(self._create)
        self.server.expect_request(re.compile(rf"^{base}/issues/comments/\d+$"),
                                   method="PATCH").respond_with_handler(self._edit)
        self.server.expect_request(re.compile(rf"^{base}/commits/\w+/pulls$"),
                                   method="GET").respond_with_handler(self._pulls)
        return self

    def add(self, issue: int, body: str, login: str = "other-bot[bot]") -> int:
        self.next_id += 1
        self.comments[self.next_id] = {
            "id": self.next_id, "body": body, "issue": issue,
            "user": {"login": login, "type": "Bot" if login.endswith("[bot]") else "User"},
            "url": f"{self.url}/repos/{REPO}/issues/comments/{self.next_id}",
            "html_url": f"https://github.example/{REPO}/pull/{issue}#issuecomment-{self.next_id}",
        }
        return self.next_id

    def on(self, issue: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["issue"] == issue]

    def _json(self, data: Any, status: int = 200) -> Response:
        return Response(json.dumps(data), status=status, content_type="application/json")

    def _fault(self, method: str) -> Response | None:
        for i, (m, status) in enumerate(self.fail_next):
            if m == method:
                del self.fail_next[i]
                return self._json({"message": "Bad Gateway"}, status)
        return None

    def _list(self, request: Request) -> Response:
        """Paginated like GitHub: per_page (default 30, at most 100), page, Link header."""
        issue = int(request.path.split("/")[-2])
        fault = self._fault("GET")
        if fault is not None:
            return fault
        per_page = min(int(request.args.get("per_page", 30)), 100)
        page = int(request.args.get("page", 1))
        self.list_requests.append((per_page, page))
        everything = self.on(issue)
        response = self._json(everything[(page - 1) * per_page:page * per_page])
        last = max(1, -(-len(everything) // per_page))
        url = f"{request.host_url.rstrip('/')}{request.path}?per_page={per_page}"
        links = [f'<{url}&page={page + 1}>; rel="next"', f'<{url}&page={last}>; rel="last"'] \
            if page < last else []
        if links:
            response.headers["Link"] = ", ".join(links)
        return response

    def _create(self, request: Request) -> Response:
        issue = int(request.path.split("/")[-2])
        comment_id = self.add(issue, json.loads(request.data)["body"], login=self.bot_login)
        self.writes.append(("POST", comment_id))
        # the fault comes after the store: a lost response, which must not make a duplicate
        return self._fault("POST") or self._json(self.comments[comment_id], 201)

    def _edit(self, request: Request) -> Response:
        fault = self._fault("PATCH")
        if fault is not None:
            return fault
        comment_id = int(request.path.split("/")[-1])
        self.comments[comment_id]["body"] = json.loads(request.data)["body"]
        self.writes.append(("PATCH", comment_id))
        return self._json(self.comments[comment_id])

    def _pulls(self, request: Request) -> Response:
        sha = request.path.split("/")[-2]
        return self._json([{"number": n, "merged_at": None, "state": "open",
                            "url": f"{self.url}/repos/{REPO}/pulls/{n}"}
                           for n in self.pulls.get(sha, [])])
