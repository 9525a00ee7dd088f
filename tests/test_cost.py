"""Runtimes as costs: contention between trials on one host, and a sweet spot above noise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from sweepctl.clients.mlflow_store import RunRecord
from sweepctl.results.compare import Comparison, build_comparison
from sweepctl.results.cost import (
    TAG_HOST,
    contended_runs,
    contention_note,
    robust_sweet_spot,
)
from sweepctl.spec.model import Objective
from sweepctl.sweep.trial import Trial


def comparison(results: list[tuple[float, float, int, int]], host: str | None = None,
               default_host: str | None = None) -> tuple[Comparison, list[RunRecord]]:
    """One trial per (eval_loss, train_runtime, start s, end s)."""
    trials: list[Trial] = []
    runs: list[RunRecord] = []
    for index, (loss, runtime, start, end) in enumerate(results):
        tid = f"t{index}"
        point = {"lora_rank": 8 * (index + 1)} if index else {}
        trials.append(Trial(index, f"p{index}", point, {"lora_rank": 8, **point}, tid,
                            f"x-{tid}"))
        runs.append(RunRecord(f"run-{tid}", "FINISHED", tid, None,
                              metrics={"eval_loss": loss, "train_runtime": runtime},
                              tags={TAG_HOST: host} if host else {},
                              start_time=start * 1000, end_time=end * 1000))
    return build_comparison("demo", trials, runs, Objective("eval_loss", "minimize"),
                            default_host=default_host), runs


def issue_case(default_host: str | None = None) -> tuple[Comparison, list[RunRecord]]:
    # the demo of issue 13: the baseline and p1 ran paired on 2 cores (25 s, 32 s), p2
    # then ran alone in 0.2 s; p2's loss is within 2% of the best
    return comparison([(6.00, 25.0, 0, 26), (6.05, 32.0, 1, 34), (6.08, 0.2, 40, 41)],
                      default_host=default_host)


def test_the_issue_case_is_no_sweet_spot_and_the_table_says_why() -> None:
    from sweepctl.renderers.comparison import render_markdown

    # compare of a local experiment: every untagged run ran on this machine
    result, _ = issue_case(default_host="this machine")
    assert result.sweet_spot is result.best and result.best is not None
    assert result.best.label == "p0"  # was p2, "sweet spot, -99.2% runtime"
    out = render_markdown(result)
    assert "**Sweet spot:** p0 (eval_loss 6, train_runtime 25 s, +0.0% vs baseline)" in out
    assert ("- **Runtime:** runtimes measured under contention (2 of 3 trials ran beside "
            "another on the same host)") in out
    assert "saves more than 10% of its runtime, measured alone" in out
    assert "-99.2%" not in out.split("**Verdict")[1]


def test_paired_runtimes_call_no_sweet_spot_and_say_why() -> None:
    result, runs = issue_case()
    contended = contended_runs(runs, default_host="local")
    assert contended == {"run-t0", "run-t1"}
    spot = robust_sweet_spot(result.rows, result.best, result.tolerance, contended)
    assert spot.row is result.best and spot.row is not None and spot.row.label == "p0"
    assert spot.note == ("runtimes measured under contention (2 of 3 trials ran beside "
                         "another on the same host): runtime deltas are not costs; rerun "
                         "with max_parallel: 1")


def test_runs_on_other_hosts_do_not_contend() -> None:
    _, runs = issue_case()
    # no host tag and no default (Kubernetes: another pod, maybe another node)
    assert contended_runs(runs) == frozenset()
    tagged = [RunRecord(r.run_id, r.status, r.trial_id, None, tags={TAG_HOST: f"node-{i}"},
                        start_time=r.start_time, end_time=r.end_time)
              for i, r in enumerate(runs)]
    assert contended_runs(tagged, default_host="local") == frozenset()


def test_a_real_saving_measured_alone_is_the_sweet_spot() -> None:
    result, runs = comparison([(6.00, 30.0, 0, 31), (6.05, 12.0, 40, 53), (6.5, 5.0, 60, 66)],
                              host="laptop")
    contended = contended_runs(runs)
    assert contended == frozenset()
    spot = robust_sweet_spot(result.rows, result.best, result.tolerance, contended)
    assert spot.row is not None and spot.row.label == "p1" and spot.note is None
    assert spot.saving_pct == 60.0
    assert contention_note(result.rows, contended) is None


def test_a_saving_within_noise_is_no_sweet_spot() -> None:
    result, runs = comparison([(6.00, 20.0, 0, 21), (6.05, 19.0, 30, 50)], host="laptop")
    assert result.sweet_spot is result.best  # was p1: a 5% "saving"
    spot = robust_sweet_spot(result.rows, result.best, result.tolerance, contended_runs(runs))
    assert spot.row is result.best
    assert spot.note == ("the fastest close trial (p1) saves 5% of the best's runtime, within "
                         "the 10% noise: no sweet spot apart from the best")


def test_a_still_running_trial_contends_with_everything_after_it() -> None:
    runs = [RunRecord("a", "RUNNING", "ta", None, start_time=0),
            RunRecord("b", "FINISHED", "tb", None, start_time=10_000, end_time=20_000)]
    assert contended_runs(runs, default_host="local") == {"a", "b"}


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
       st.integers(min_value=0, max_value=30))
def test_sequential_runs_never_contend_and_one_spanning_run_touches_all(
        durations: list[int], gap: int) -> None:
    runs: list[RunRecord] = []
    clock = 0
    for index, duration in enumerate(durations):
        runs.append(RunRecord(f"r{index}", "FINISHED", f"t{index}", None,
                              start_time=clock, end_time=clock + duration))
        clock += duration + gap  # ends touching the next start are one after the other
    assert contended_runs(runs, default_host="local") == frozenset()
    spanning = RunRecord("all", "FINISHED", "tall", None, start_time=0, end_time=clock + 1)
    assert contended_runs([*runs, spanning], default_host="local") == {
        "all", *(r.run_id for r in runs)}
