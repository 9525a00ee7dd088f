"""The one module that talks to MLflow (and the only one that imports it).

Results are found by tag (``tags."sweepctl.experiment" = '...'``), never by run
name. ``import mlflow`` costs ~1.3 s, so it happens inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sweepctl.errors import MlflowError

TAG_EXPERIMENT = "sweepctl.experiment"
TAG_TRIAL = "sweepctl.trial"
TAG_TRIAL_ID = "sweepctl.trial_id"
TAG_ROLE = "sweepctl.role"          # "sweep" on the parent run, "trial" on children
TAG_GIT_SHA = "sweepctl.git_sha"
TAG_PR = "sweepctl.pr"
TAG_SPEC_HASH = "sweepctl.spec_hash"
PAGE_SIZE = 1000


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    status: str                       # RUNNING | SCHEDULED | FINISHED | FAILED | KILLED
    trial_id: str | None
    trial_name: str | None
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    start_time: int | None = None     # ms since epoch
    end_time: int | None = None
    experiment_id: str | None = None


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:  # pragma: no cover - the full extra is missing
        raise MlflowError("mlflow is not installed (pip install 'sweepctl[full]')") from exc
    try:
        return MlflowClient(tracking_uri=tracking_uri)
    except Exception as exc:  # e.g. a mistyped scheme in MLFLOW_TRACKING_URI
        raise _wrap("open the tracking store", tracking_uri, exc) from exc


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _record(run: Any) -> RunRecord:
    tags = dict(run.data.tags)
    return RunRecord(
        run_id=run.info.run_id,
        status=run.info.status,
        trial_id=tags.get(TAG_TRIAL_ID),
        trial_name=tags.get(TAG_TRIAL),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=tags,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        experiment_id=run.info.experiment_id,
    )


def _redact(text: str, tracking_uri: str) -> str:
    """``text`` without the URI's password: MLflow quotes the whole URL (basic auth
    credentials included) in its errors, and ours end up in CI logs."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(tracking_uri).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def safe_uri(tracking_uri: str) -> str:
    """The tracking URI as it may be printed (password masked)."""
    return _redact(tracking_uri, tracking_uri)


def _wrap(action: str, tracking_uri: str, exc: Exception) -> MlflowError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return MlflowError(_redact(f"cannot {action} at {tracking_uri}: {detail[:300]}",
                               tracking_uri))


def get_experiment_id(tracking_uri: str, mlflow_experiment: str) -> str | None:
    client = _client(tracking_uri)
    try:
        found = client.get_experiment_by_name(mlflow_experiment)
    except Exception as exc:
        raise _wrap("read experiments", tracking_uri, exc) from exc
    return None if found is None else str(found.experiment_id)


def ensure_experiment(tracking_uri: str, mlflow_experiment: str) -> str:
    """The MLflow experiment's id, creating it when missing."""
    existing = get_experiment_id(tracking_uri, mlflow_experiment)
    if existing is not None:
        return existing
    client = _client(tracking_uri)
    try:
        return str(client.create_experiment(mlflow_experiment))
    except Exception as exc:
        # two launches racing: the other one created it first
        again = get_experiment_id(tracking_uri, mlflow_experiment)
        if again is not None:
            return again
        raise _wrap("create experiment", tracking_uri, exc) from exc


def iter_runs(tracking_uri: str, mlflow_experiment: str, filter_string: str) -> Iterator[RunRecord]:
    """Every run matching the filter, page by page (10,000 runs must work)."""
    experiment_id = get_experiment_id(tracking_uri, mlflow_experiment)
    if experiment_id is None:
        return
    client = _client(tracking_uri)
    token: str | None = None
    while True:
        try:
            page = client.search_runs([experiment_id], filter_string=filter_string,
                                      max_results=PAGE_SIZE, page_token=token)
        except Exception as exc:
            raise _wrap("search runs", tracking_uri, exc) from exc
        for run in page:
            yield _record(run)
        token = page.token
        if not token:
            return


def trial_runs(tracking_uri: str, mlflow_experiment: str, experiment_name: str) -> list[RunRecord]:
    """All trial runs of one sweepctl experiment, newest first."""
    filter_string = (f"tags.`{TAG_EXPERIMENT}` = '{_quote(experiment_name)}' "
                     f"and tags.`{TAG_ROLE}` = 'trial'")
    runs = list(iter_runs(tracking_uri, mlflow_experiment, filter_string))
    runs.sort(key=lambda r: r.start_time or 0, reverse=True)
    return runs


def finished_trials(tracking_uri: str, mlflow_experiment: str,
                    trial_ids: set[str] | None = None) -> dict[str, RunRecord]:
    """trial_id -> its newest FINISHED run, across every sweepctl experiment (reuse by id)."""
    filter_string = f"attributes.status = 'FINISHED' and tags.`{TAG_ROLE}` = 'trial'"
    found: dict[str, RunRecord] = {}
    for run in iter_runs(tracking_uri, mlflow_experiment, filter_string):
        if run.trial_id is None or (trial_ids is not None and run.trial_id not in trial_ids):
            continue
        current = found.get(run.trial_id)
        if current is None or (run.start_time or 0) > (current.start_time or 0):
            found[run.trial_id] = run
    return found


def ensure_parent_run(tracking_uri: str, mlflow_experiment: str, experiment_name: str,
                      tags: Mapping[str, str]) -> str:
    """The sweep's parent run id: found by tag, created (and left RUNNING-free) when missing."""
    experiment_id = ensure_experiment(tracking_uri, mlflow_experiment)
    filter_string = (f"tags.`{TAG_EXPERIMENT}` = '{_quote(experiment_name)}' "
                     f"and tags.`{TAG_ROLE}` = 'sweep'")
    for run in iter_runs(tracking_uri, mlflow_experiment, filter_string):
        return run.run_id
    client = _client(tracking_uri)
    try:
        run = client.create_run(experiment_id, run_name=experiment_name,
                                tags={**tags, TAG_EXPERIMENT: experiment_name, TAG_ROLE: "sweep"})
        # the parent is a container, not work: mark it finished so it never looks stuck
        client.set_terminated(run.info.run_id, status="FINISHED")
    except Exception as exc:
        raise _wrap("create the sweep's parent run", tracking_uri, exc) from exc
    return str(run.info.run_id)
