"""Adaptive search end to end: each `launch` of a tpe sweep is one round of ask and tell,
rebuilt from the MLflow runs alone (the real trial runner; a fake quick LLaMA-Factory, and
the real one on the tiny model)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from sweepctl.backends import BackendSettings, Observed, Outcome
from sweepctl.clients.mlflow_store import RunRecord
from sweepctl.render.trainconfig import trial_tags
from sweepctl.runindex import RunIndex
from sweepctl.spec.model import Objective
from sweepctl.sweep.tpe import Told, propose
from sweepctl.usecases.adaptive import next_round, search_note, with_proposals
from sweepctl.usecases.compare import compare
from sweepctl.usecases.launch import LaunchOptions, LaunchReport, launch
from sweepctl.usecases.status import status
from sweepctl.workspace import Workspace
from test_backend_local import fake_site, local_options  # noqa: F401 (a fixture)
from test_launch import make_experiment

SPACE = {"learning_rate": {"distribution": "log_uniform", "low": 1.0e-4, "high": 1.0e-2},
         "lora_rank": {"choices": [8, 16]}}


def make_tpe(root: Path, mlflow_experiment: str, target: float, trials: int = 6,
             **defaults: Any) -> Path:
    """The demo experiment turned into a tpe search of 6 trials, 2 per launch."""
    folder = make_experiment(root, mlflow_experiment, **defaults)
    (folder / "sweep.yaml").write_text(yaml.safe_dump(
        {"strategy": "tpe", "parameters": SPACE, "derived": {"lora_alpha": "2 * lora_rank"},
         "trials": trials, "batch": 2, "max_parallel": 2, "seed": 3}, sort_keys=False))
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["objective"]["target"] = target
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    return folder


def outcomes(report: LaunchReport) -> dict[str, Outcome]:
    return {r.name: r.outcome for e in report.experiments for r in e.results}


def trial_runs(store: str, name: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment_id = client.get_experiment_by_name(name).experiment_id
    return list(client.search_runs([experiment_id], "tags.`sweepctl.role` = 'trial'"))


def rounds(runs: list[Any]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        if "sweepctl.round" in run.data.tags:
            found.setdefault(int(run.data.tags["sweepctl.round"]), []).append(
                json.loads(run.data.tags["sweepctl.proposal"]))
    return {k: sorted(v, key=json.dumps) for k, v in sorted(found.items())}


def note(folder: Path, store: str) -> str | None:
    workspace = Workspace(env_tracking_uri=store)
    resolved = workspace.resolve(workspace.load(folder))
    return search_note(resolved, workspace.run_index(store))


def three_rounds_then_nothing(folder: Path, store: str, name: str,
                              opts: LaunchOptions) -> list[Any]:
    """Launches until the budget is spent; asserts what each launch did."""
    seen: set[str] = set()
    for launched in (3, 2, 1):  # the baseline and round 1, then 2, then the last 1
        report = launch([folder], opts)
        assert report.ok, [(r.name, r.detail) for r in report.not_launched]
        now = outcomes(report)
        assert set(now) >= seen and {now[n] for n in seen} <= {Outcome.REUSED}
        assert sorted(n for n in now if n not in seen) == sorted(
            n for n, o in now.items() if o == Outcome.LAUNCHED)
        assert sum(1 for o in now.values() if o == Outcome.LAUNCHED) == launched
        seen = set(now)
    assert note(folder, store) == "budget spent"
    fourth = launch([folder], opts)
    assert fourth.ok and set(outcomes(fourth)) == seen
    assert set(outcomes(fourth).values()) == {Outcome.REUSED}
    runs = trial_runs(store, name)
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    return runs


def told_from(runs: list[Any], metric: str, flip: bool = False) -> list[Told]:
    """What the second launch told the study: the baseline and round 1."""
    out = []
    for run in runs:
        tags = run.data.tags
        if tags.get("sweepctl.round", "1") != "1":
            continue
        value = run.data.metrics[metric]
        out.append(Told(json.loads(tags.get("sweepctl.proposal", "{}")), "COMPLETE",
                        -value if flip else value, tags["sweepctl.trial_id"]))
    return out


def assert_round_two_learns(folder: Path, runs: list[Any]) -> None:
    """Round 2 is what TPE asks given round 1's results, and other results would have
    given other points."""
    doc = yaml.safe_load((folder / "sweep.yaml").read_text())
    baseline = yaml.safe_load((folder / "baseline.yaml").read_text())
    objective = Objective("eval_loss", "minimize", None)
    found = rounds(runs)
    assert set(found) == {1, 2, 3} and [len(v) for v in found.values()] == [2, 2, 1]
    assert not {json.dumps(p) for p in found[1]} & {json.dumps(p) for p in found[2]}
    told = told_from(runs, "eval_loss")
    asked = propose(doc, baseline, told, objective, n=2)
    assert sorted(asked, key=json.dumps) == found[2]
    assert propose(doc, baseline, told_from(runs, "eval_loss", flip=True), objective,
                   n=2) != asked


def test_three_launches_run_a_tpe_search_of_six_trials(tmp_path: Path,
                                                       fake_site: Path) -> None:  # noqa: F811
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = make_tpe(tmp_path, "tpe-fake", target=1.0)  # unreachable: the budget ends it
    opts = local_options(tmp_path, store, fake_site)
    runs = three_rounds_then_nothing(folder, store, "tpe-fake", opts)
    assert_round_two_learns(folder, runs)
    table = status(folder, backend="local", tracking_uri=store,
                   settings=BackendSettings(state_dir=opts.state_dir))
    assert len(table.rows) == 6 and table.count("FINISHED") == 6
    workspace = Workspace(env_tracking_uri=store)
    comparison = compare(workspace, workspace.resolve(workspace.load(folder)))
    assert comparison.counts["finished"] == 6
    assert comparison.verdict_text.endswith("; budget spent")


def test_a_met_target_stops_the_search(tmp_path: Path, fake_site: Path) -> None:  # noqa: F811
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = make_tpe(tmp_path, "tpe-met", target=4.99)  # the fake baseline reports 4.82
    opts = local_options(tmp_path, store, fake_site)
    first = launch([folder], opts)
    assert first.ok and len(outcomes(first)) == 3
    stopped = note(folder, store)
    assert stopped is not None and stopped.startswith("target met by tiny-lora-demo-")
    assert stopped.endswith("after 3 trials")
    again = launch([folder], opts)
    assert set(outcomes(again).values()) == {Outcome.REUSED} and len(outcomes(again)) == 3


def test_a_crash_before_create_proposes_the_same_round(tmp_path: Path,
                                                       fake_site: Path) -> None:  # noqa: F811
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = make_tpe(tmp_path, "tpe-dry", target=1.0)
    opts = local_options(tmp_path, store, fake_site)
    launch([folder], opts)
    dry = [dataclasses.replace(opts, dry_run=True) for _ in range(2)]
    asked = [sorted(n for n, o in outcomes(launch([folder], d)).items()
                    if o == Outcome.LAUNCHED) for d in dry]
    assert len(asked[0]) == 2 and asked[0] == asked[1]
    real = outcomes(launch([folder], opts))
    assert sorted(n for n, o in real.items() if o == Outcome.LAUNCHED) == asked[0]


def test_real_llamafactory_tpe_search_on_the_tiny_model(tmp_path: Path,
                                                        tiny_model: Path) -> None:
    from conftest import trainer_python

    python = trainer_python()
    assert python is not None
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # 4 real trainings, not the fake test's 6: the baseline and round 1, then round 2
    folder = make_tpe(tmp_path, "tpe-real", target=0.01, trials=4,
                      local={"python": str(python)})
    baseline = yaml.safe_load((folder / "baseline.yaml").read_text())
    baseline.update(model_name_or_path=str(tiny_model / "model"),
                    dataset_dir=str(tiny_model / "data"), max_steps=4, eval_strategy="epoch")
    (folder / "baseline.yaml").write_text(yaml.safe_dump(baseline))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    opts = LaunchOptions(backend="local", tracking_uri=store, state_dir=tmp_path / ".sweepctl",
                         env=env)
    for launched in (3, 1):
        report = launch([folder], opts)
        assert report.ok, [(r.name, r.detail) for r in report.not_launched]
        assert sum(1 for o in outcomes(report).values() if o == Outcome.LAUNCHED) == launched
    assert note(folder, store) == "budget spent"
    runs = trial_runs(store, "tpe-real")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert all("eval_loss" in r.data.metrics for r in runs)
    # round 2 is what TPE asks given round 1's real eval_loss
    found = rounds(runs)
    assert [len(found[1]), len(found[2])] == [2, 1]
    doc = yaml.safe_load((folder / "sweep.yaml").read_text())
    objective = Objective("eval_loss", "minimize", None)
    assert propose(doc, baseline, told_from(runs, "eval_loss"), objective, n=1) == found[2]


def finished_runs(resolved: Any, trials: Any, loss: dict[str, float]) -> list[RunRecord]:
    """FINISHED runs of ``trials`` with the tags a launch gives them."""
    return [RunRecord(f"run-{t.trial_id}", "FINISHED", t.trial_id, t.name,
                      metrics={"eval_loss": loss.get(t.trial_id, 4.0 - 0.1 * i)},
                      tags=trial_tags(resolved.experiment, t, None, None), start_time=i,
                      experiment_id="1")
            for i, t in enumerate(trials)]


def test_a_live_trial_without_a_run_holds_its_slot_and_rounds_are_deterministic(
        tmp_path: Path) -> None:
    folder = make_tpe(tmp_path, "tpe-slots", target=1.0)
    workspace = Workspace(env_tracking_uri="sqlite:///unused.db")
    resolved = workspace.resolve(workspace.load(folder))
    first = next_round(resolved, RunIndex("x"), {})
    assert [t.round_number for t in first.trials] == [0, 1, 1]
    runs = finished_runs(resolved, first.trials, {})
    index = RunIndex.from_runs("x", runs, experiment_ids={"tpe-slots": "1"})
    second = next_round(resolved, index, {})
    assert second.trials[:3] == first.trials
    fresh = second.trials[3:]
    assert [t.round_number for t in fresh] == [2, 2]
    # the same runs in another order, in another call: the same proposals
    shuffled = RunIndex.from_runs("x", runs[::-1], experiment_ids={"tpe-slots": "1"})
    assert next_round(resolved, shuffled, {}).trials == second.trials
    # a re-proposed trial the backend already runs is the same trial (the backend keeps it)
    running = {fresh[0].trial_id: Observed(fresh[0].trial_id, fresh[0].name, "running")}
    assert next_round(resolved, index, running).trials == second.trials
    # a pending Job MLflow knows nothing of takes one of the round's two slots
    pending = {"elsewhere1": Observed("elsewhere1", "tiny-lora-demo-x", "pending")}
    assert next_round(resolved, index, pending).trials == second.trials[:4]
    # other results, other proposals
    other = finished_runs(resolved, first.trials, {first.trials[1].trial_id: 9.0,
                                                   first.trials[2].trial_id: 0.5})
    changed = next_round(resolved, RunIndex.from_runs("x", other,
                                                      experiment_ids={"tpe-slots": "1"}), {})
    assert changed.trials[3:] != fresh


def test_the_plan_shows_round_one_and_counts_the_whole_search(tmp_path: Path) -> None:
    from sweepctl.renderers.plan import render_markdown
    from sweepctl.usecases.plan import build_plan

    folder = make_tpe(tmp_path, "tpe-plan", target=1.0)
    plan = build_plan(folder)
    assert len(plan.trials) == 3  # the baseline and round 1
    assert plan.gpu_hours == pytest.approx(6 * 0.01) and plan.ok
    comment = render_markdown(plan)
    assert "up to 3 more trial(s), proposed by TPE as results arrive (2 per launch" in comment
    assert "6 trial(s) (tpe)" not in comment and "3 trial(s) (tpe), 0.06 GPU-hours" in comment
    # the first launch runs exactly the trials the plan showed
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    dry = launch([folder], LaunchOptions(backend="local", tracking_uri=store, dry_run=True,
                                         state_dir=tmp_path / ".sweepctl"))
    assert sorted(outcomes(dry)) == sorted(t.trial.name for t in plan.trials)
    doc = yaml.safe_load((folder / "experiment.yaml").read_text())
    doc["budget"]["max_trials"] = 5
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc))
    over = build_plan(folder)
    assert over.over_max_trials and "OVER BUDGET: 6 trials exceed budget.max_trials 5" in (
        render_markdown(over))


def test_an_edited_space_keeps_only_the_proposals_that_still_fit(tmp_path: Path) -> None:
    folder = make_tpe(tmp_path, "tpe-edit", target=1.0)
    workspace = Workspace(env_tracking_uri="sqlite:///unused.db")
    resolved = workspace.resolve(workspace.load(folder))
    first = next_round(resolved, RunIndex("x"), {})
    index = RunIndex.from_runs("x", finished_runs(resolved, first.trials, {}),
                               experiment_ids={"tpe-edit": "1"})
    kept = {t.trial_id for t in with_proposals(resolved, index).trials}
    assert kept == {t.trial_id for t in first.trials}
    # a PR narrows the learning rate to a range no round-1 point lies in
    rates = [t.config["learning_rate"] for t in first.trials[1:]]
    sweep = yaml.safe_load((folder / "sweep.yaml").read_text())
    sweep["parameters"]["learning_rate"] = {"distribution": "log_uniform",
                                            "low": max(rates) * 1.01, "high": 2.0e-2}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    edited = Workspace(env_tracking_uri="sqlite:///unused.db")
    narrowed = edited.resolve(edited.load(folder))
    trials = next_round(narrowed, index, {}).trials
    assert trials[0].trial_id == first.trials[0].trial_id  # the baseline stays
    assert not {t.trial_id for t in trials[1:]} & kept
    assert all(t.config["learning_rate"] > max(rates) for t in trials[1:])
    assert [t.round_number for t in trials] == [0, 1, 1]  # a new study: its round 1


def test_launch_reads_again_what_a_kept_index_says_of_later_rounds(tmp_path: Path) -> None:
    """A kept snapshot's records are taken as they were unless launch decides on them;
    tpe's rounds past the first are known only once the index is read, so next_round asks
    the index to read them again (RunIndex.confirm) before the study is told and before a
    proposal is reused: a forged record is dropped."""
    folder = make_tpe(tmp_path, "tpe-confirm", target=1.0)
    workspace = Workspace(env_tracking_uri="sqlite:///unused.db")
    resolved = workspace.resolve(workspace.load(folder))
    first = next_round(resolved, RunIndex("x"), {})
    runs = finished_runs(resolved, first.trials, {})
    honest = next_round(resolved, RunIndex.from_runs(
        "x", runs, experiment_ids={"tpe-confirm": "1"}), {})
    fresh = honest.trials[3:]

    def forged(trial: Any, loss: float) -> RunRecord:
        return RunRecord(f"forged-{trial.trial_id}", "FINISHED", trial.trial_id, trial.name,
                         metrics={"eval_loss": loss}, tags={"sweepctl.trial_id": trial.trial_id,
                                                            "sweepctl.experiment": "elsewhere"},
                         start_time=99, experiment_id="2")

    lies = [forged(first.trials[1], 0.0001), forged(fresh[0], 0.0001)]
    index = RunIndex.from_runs("x", [*runs, *lies], experiment_ids={"tpe-confirm": "1"})
    asked: list[set[str]] = []

    def reread(wanted: Any) -> dict[str, RunRecord]:
        asked.append(set(wanted))
        return {}   # MLflow has neither

    index.unread, index.reread = {r.run_id for r in lies}, reread
    again = next_round(resolved, index, {})
    assert asked == [{lies[0].run_id}, {lies[1].run_id}]
    assert again.trials == honest.trials          # told and proposed what MLflow says
    assert index.finished(fresh[0].trial_id) is None
