from __future__ import annotations

import json

from sweepctl.findings import Findings, render_json, render_text


def test_text_is_compiler_style_sorted_and_deduplicated() -> None:
    findings = Findings()
    findings.warning("b/sweep.yaml", 3, 1, "odd", "rule-b")
    findings.error("a/experiment.yaml", 2, 7, "bad name", "name-mismatch")
    findings.error("a/experiment.yaml", 2, 7, "bad name", "name-mismatch")
    assert render_text(findings).splitlines() == [
        "a/experiment.yaml:2:7: error: bad name [name-mismatch]",
        "b/sweep.yaml:3:1: warning: odd [rule-b]",
        "1 error(s), 1 warning(s)",
    ]


def test_json_carries_the_same_findings() -> None:
    findings = Findings()
    findings.error("a.yaml", 1, 2, "m", "r")
    data = json.loads(render_json(findings, checked=3))
    assert data["checked"] == 3
    assert data["errors"] == 1
    assert data["findings"] == [
        {"path": "a.yaml", "line": 1, "col": 2, "severity": "error", "message": "m", "rule": "r"}
    ]
