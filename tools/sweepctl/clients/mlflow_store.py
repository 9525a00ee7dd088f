"""The one module that talks to MLflow (and the only one that imports it).

Results are found by tag (``tags."sweepctl.experiment" = '...'``), never by run
name. ``import mlflow`` costs ~1.3 s, so it happens inside the functions.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweepctl.errors import MlflowError

TAG_EXPERIMENT = "sweepctl.experiment"
TAG_TRIAL = "sweepctl.trial"
TAG_TRIAL_ID = "sweepctl.trial_id"
TAG_ROLE = "sweepctl.role"          # "sweep" on the parent run, "trial" on children
TAG_GIT_SHA = "sweepctl.git_sha"
TAG_PR = "sweepctl.pr"
TAG_SPEC_HASH = "sweepctl.spec_hash"
TAG_ATTEMPT = "sweepctl.attempt"  # set by the runner: how many times this run was (re)started
TAG_CANCELLED = "sweepctl.cancelled"  # "true": `sweepctl cancel` stopped the trial
PAGE_SIZE = 1000
# experiment ids per search_runs call: the SQL store turns them into one IN (...)
EXPERIMENTS_PER_SEARCH = 500
# run ids per `attributes.run_id IN (...)` search: one page of results at most
RUN_IDS_PER_SEARCH = 500
# GetMetricHistoryBulkInterval: at most 100 runs per request (the server's cap) and, per
# run, at most HISTORY_POINTS points evenly sampled by the server (its own cap is 2,500)
HISTORY_ENDPOINT = "/api/2.0/mlflow/metrics/get-history-bulk-interval"
HISTORY_RUNS_PER_REQUEST = 100
HISTORY_POINTS = 500
# a request shared by several experiments asks for the server's cap, so that only a
# response with this many distinct steps can have been sampled across them
SHARED_HISTORY_POINTS = 2500
# A file sweepctl keeps in the tracking store itself (the run index, see keptindex): an
# artifact of one finished run, tagged ``sweepctl.role = kept``, in an MLflow experiment
# of its own (no trial run is ever there)
KEPT_EXPERIMENT = "sweepctl-kept"
KEPT_ROLE = "kept"


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
    # metric -> the step of its latest value (what status shows for a running trial)
    metric_steps: Mapping[str, int] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        return self.status == "KILLED" and self.tags.get(TAG_CANCELLED) == "true"


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:  # pragma: no cover - the full extra is missing
        raise MlflowError("mlflow is not installed (pip install 'sweepctl[full]')") from exc
    if tracking_uri.startswith("sqlite:///"):
        # a local store (sqlite:///<repo>/.sweepctl/mlflow.db) on a fresh clone: its folder
        # is git-ignored and may not exist yet; SQLite creates the file, not the folder
        Path(tracking_uri[len("sqlite:///") - 1:]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MlflowClient(tracking_uri=tracking_uri)
    except Exception as exc:  # e.g. a mistyped scheme in MLFLOW_TRACKING_URI
        raise _wrap("open the tracking store", tracking_uri, exc) from exc


# metric -> [(step, value)] of each run, by run id
RunHistories = dict[str, dict[str, list[tuple[int, float]]]]
# one experiment's runs and the metrics to read of them
HistoryGroup = tuple[Sequence[str], Sequence[str]]


def _batches(groups: Sequence[HistoryGroup]) -> list[list[int]]:
    """Group indexes packed in order into batches of at most 100 runs (a larger group is
    a batch of its own)."""
    batches: list[list[int]] = []
    size = HISTORY_RUNS_PER_REQUEST + 1
    for index, (run_ids, _) in enumerate(groups):
        count = len(set(run_ids))
        if size + count > HISTORY_RUNS_PER_REQUEST:
            batches.append([])
            size = 0
        batches[-1].append(index)
        size += count
    return batches


class _EndpointMissing(Exception):
    """The tracking server predates GetMetricHistoryBulkInterval."""


def _rest_store(client: Any) -> Any | None:
    """The client's REST store when the tracking URI is a server; None for a local one.
    MlflowClient exposes no bulk history read, so this is the one place that reaches
    for its store (pinned mlflow; tests/test_curves.py fails if the attribute moves)."""
    from mlflow.store.tracking.rest_store import RestStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if isinstance(store, RestStore) else None


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
        metric_steps=_metric_steps(run),
    )


def _metric_steps(run: Any) -> dict[str, int]:
    """The step of each metric's latest value: the search result's metric objects carry
    it (``run.data.metrics`` has the values only)."""
    steps: dict[str, int] = {}
    for metric in getattr(run.data, "_metric_objs", None) or ():
        try:
            steps[str(metric.key)] = int(metric.step)
        except (TypeError, ValueError):
            continue
    return steps


def _redact(text: str, tracking_uri: str) -> str:
    """``text`` without the URI's userinfo (and its password anywhere else): MLflow quotes
    the whole URL (basic auth credentials included) in its errors, and ours end up in CI
    logs."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(tracking_uri)
        password = parts.password
    except ValueError:
        return text
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and userinfo:  # "user:password@" or a token as the user: gone entirely
        text = text.replace(f"{userinfo}@", "")
    return text.replace(password, "***") if password else text


def safe_uri(tracking_uri: str) -> str:
    """The tracking URI as it may be printed: userinfo (user and password, or a token
    in the user part) removed entirely, the password masked anywhere else it appears."""
    return _redact(tracking_uri, tracking_uri)


def _wrap(action: str, tracking_uri: str, exc: Exception) -> MlflowError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return MlflowError(_redact(f"cannot {action} at {tracking_uri}: {detail[:300]}",
                               tracking_uri))


class MlflowStore:
    """One tracking store for one command: one client, every request counted.

    ``requests`` counts the calls sent (the benchmark and the tests read it): a command
    asks MLflow a constant number of times plus one per page of runs, never once per
    experiment or per run.
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.requests = 0
        self.runs_read = 0   # runs the searches returned (what grows with the store)
        self.calls: Counter[str] = Counter()   # per client method (search_runs, ...)
        self._client: Any = None
        self._bulk_history = True   # False once the server said it has no bulk endpoint
        self._kept_run_id: str | None = None   # the run holding the kept files, once found

    @property
    def safe_uri(self) -> str:
        return safe_uri(self.tracking_uri)

    def _mlflow(self) -> Any:
        """The MlflowClient, made on first use (``import mlflow`` costs ~1.3 s)."""
        if self._client is None:
            self._client = _client(self.tracking_uri)
        return self._client

    def _call(self, action: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        client = self._mlflow()
        self.requests += 1
        self.calls[fn_name] += 1
        try:
            return getattr(client, fn_name)(*args, **kwargs)
        except Exception as exc:
            raise _wrap(action, self.tracking_uri, exc) from exc

    def experiment_ids(self, names: Collection[str] | None = None) -> dict[str, str]:
        """name -> id of every experiment (``names``: only those; one by name is one
        request, the others one request per 1,000 experiments)."""
        wanted = None if names is None else set(names)
        if wanted is not None and len(wanted) <= 1:
            if not wanted:
                return {}
            name = next(iter(wanted))
            found = self._call("read experiments", "get_experiment_by_name", name)
            return {} if found is None else {name: str(found.experiment_id)}
        ids: dict[str, str] = {}
        token: str | None = None
        while True:
            page = self._call("read experiments", "search_experiments",
                              max_results=PAGE_SIZE, page_token=token)
            for experiment in page:
                if wanted is None or experiment.name in wanted:
                    ids[experiment.name] = str(experiment.experiment_id)
            token = page.token
            if not token:
                return ids

    def ensure_experiment(self, name: str, artifact_location: str | None = None) -> str:
        """The MLflow experiment's id, creating it when missing."""
        existing = self.experiment_ids([name]).get(name)
        if existing is not None:
            return existing
        try:
            return str(self._call("create experiment", "create_experiment", name,
                                  artifact_location=artifact_location))
        except MlflowError:
            # two launches racing: the other one created it first
            again = self.experiment_ids([name]).get(name)
            if again is not None:
                return again
            raise

    def search(self, experiment_ids: Collection[str], filter_string: str) -> Iterator[RunRecord]:
        """Every run matching the filter in these experiments, page by page."""
        ids = sorted(set(experiment_ids))
        for start in range(0, len(ids), EXPERIMENTS_PER_SEARCH):
            token: str | None = None
            while True:
                page = self._call("search runs", "search_runs",
                                  ids[start:start + EXPERIMENTS_PER_SEARCH],
                                  filter_string=filter_string, max_results=PAGE_SIZE,
                                  page_token=token)
                self.runs_read += len(page)
                for run in page:
                    yield _record(run)
                token = page.token
                if not token:
                    break

    def runs_by_id(self, wanted: Mapping[str, str]) -> dict[str, RunRecord]:
        """run id -> its run now, for those of ``wanted`` (run id -> its experiment id)
        that still exist (not deleted): one request per 500 runs, each asking only the
        experiments of its own runs."""
        ordered = sorted(wanted.items(), key=lambda item: (item[1], item[0]))
        found: dict[str, RunRecord] = {}
        for start in range(0, len(ordered), RUN_IDS_PER_SEARCH):
            chunk = ordered[start:start + RUN_IDS_PER_SEARCH]
            quoted = ", ".join(f"'{_quote(run_id)}'" for run_id, _ in chunk)
            for run in self.search({experiment for _, experiment in chunk},
                                   f"attributes.run_id IN ({quoted})"):
                found[run.run_id] = run
        return found

    def metric_histories(self, run_ids: Sequence[str], metrics: Sequence[str],
                         max_points: int = HISTORY_POINTS) -> RunHistories:
        """run id -> metric -> [(step, value)] of every run in ``run_ids``.

        From a tracking server: one request per 100 runs and metric (the REST API's
        GetMetricHistoryBulkInterval, which keeps at most ``max_points`` points of each
        run, evenly spaced, the first and last included). From a local store, or a
        server older than that endpoint: one get_metric_history per run and metric,
        every point."""
        ordered = list(dict.fromkeys(run_ids))
        histories: RunHistories = {run_id: {} for run_id in ordered}
        for metric in metrics:
            found = self._metric_history(ordered, metric, max_points)
            for run_id in ordered:
                histories[run_id][metric] = found.get(run_id, [])
        return histories

    def grouped_histories(self, groups: Sequence[HistoryGroup],
                          max_points: int = HISTORY_POINTS
                          ) -> list[RunHistories | MlflowError]:
        """``metric_histories`` of each group (one experiment's runs and metrics), or the
        error that stopped it: a failed read is its group's alone.

        From a tracking server, groups are read together, one request per metric and 100
        runs, asking for up to the server's cap of points (SHARED_HISTORY_POINTS). A
        file store behind a server samples one set of steps for the whole request once
        the runs have more distinct steps than that, so a short run next to a long one
        would come back as a few points (and its PNG, drawn once, would stay thin). Such
        a response (that many distinct steps), or a failed request, is asked again group
        by group. A SQL store samples each run on its own: its shared responses are
        always kept."""
        if not self._reads_in_bulk():
            return [self._group_histories(group, max_points) for group in groups]
        results: list[RunHistories | MlflowError] = []
        for batch in _batches(groups):
            results.extend(self._batch_histories([groups[i] for i in batch], max_points))
        return results

    def _batch_histories(self, groups: Sequence[HistoryGroup], max_points: int
                         ) -> list[RunHistories | MlflowError]:
        results: list[RunHistories | MlflowError] = [
            {run_id: {} for run_id in dict.fromkeys(run_ids)} for run_ids, _ in groups]
        for metric in dict.fromkeys(m for _, metrics in groups for m in metrics):
            members = [i for i, (run_ids, metrics) in enumerate(groups)
                       if metric in metrics and run_ids]
            shared = (self._shared_history([groups[i][0] for i in members], metric)
                      if len(members) > 1 else None)
            for i in members:
                into = results[i]
                if isinstance(into, MlflowError):
                    continue
                try:
                    found = (shared if shared is not None
                             else self._metric_history(groups[i][0], metric, max_points))
                except MlflowError as exc:
                    results[i] = exc
                    continue
                for run_id, by_metric in into.items():
                    by_metric[metric] = found.get(run_id, [])
        return results

    def _shared_history(self, run_id_lists: Sequence[Sequence[str]], metric: str
                        ) -> dict[str, list[tuple[int, float]]] | None:
        """One request for several groups' runs (100 at most); None when it failed or
        may have been sampled across them. Only the distinct steps tell: a run thinned
        on its own (a SQL store, or a file store's per-run cap) is thinned as a request
        of its group alone would thin it, at max_points <= the cap asked here."""
        asked = list(dict.fromkeys(run_id for run_ids in run_id_lists for run_id in run_ids))
        try:
            found = self._histories(asked, metric, SHARED_HISTORY_POINTS)
        except MlflowError:
            return None
        steps = {step for points in found.values() for step, _ in points}
        if self._bulk_history and len(steps) >= SHARED_HISTORY_POINTS:
            return None
        return found

    def _metric_history(self, run_ids: Sequence[str], metric: str, max_points: int
                        ) -> dict[str, list[tuple[int, float]]]:
        found: dict[str, list[tuple[int, float]]] = {}
        ordered = list(dict.fromkeys(run_ids))
        for start in range(0, len(ordered), HISTORY_RUNS_PER_REQUEST):
            chunk = ordered[start:start + HISTORY_RUNS_PER_REQUEST]
            found.update(self._histories(chunk, metric, max_points))
        return found

    def _group_histories(self, group: HistoryGroup, max_points: int
                         ) -> RunHistories | MlflowError:
        try:
            return self.metric_histories(group[0], group[1], max_points)
        except MlflowError as exc:
            return exc

    def _reads_in_bulk(self) -> bool:
        return self._bulk_history and _rest_store(self._mlflow()) is not None

    def _histories(self, run_ids: Sequence[str], metric: str, max_points: int
                   ) -> dict[str, list[tuple[int, float]]]:
        store = _rest_store(self._mlflow()) if self._bulk_history else None
        if store is not None:
            try:
                return self._bulk_histories(store, run_ids, metric, max_points)
            except _EndpointMissing:
                self._bulk_history = False   # an older server: ask per run from now on
        return {run_id: [(int(m.step), float(m.value)) for m in self._call(
                    "read a metric history", "get_metric_history", run_id, metric)]
                for run_id in run_ids}

    def _bulk_histories(self, store: Any, run_ids: Sequence[str], metric: str,
                        max_points: int) -> dict[str, list[tuple[int, float]]]:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.service_pb2 import GetMetricHistoryBulkInterval
        from mlflow.utils.proto_json_utils import message_to_json
        from mlflow.utils.rest_utils import call_endpoint

        self.requests += 1
        self.calls["get_metric_history_bulk_interval"] += 1
        body = message_to_json(GetMetricHistoryBulkInterval(
            run_ids=list(run_ids), metric_key=metric, max_results=max_points))
        try:
            response = call_endpoint(store.get_host_creds(), HISTORY_ENDPOINT, "GET", body,
                                     GetMetricHistoryBulkInterval.Response())
        except MlflowException as exc:
            if exc.error_code == "ENDPOINT_NOT_FOUND":
                raise _EndpointMissing from exc
            raise _wrap("read metric histories", self.tracking_uri, exc) from exc
        except Exception as exc:
            raise _wrap("read metric histories", self.tracking_uri, exc) from exc
        found: dict[str, list[tuple[int, float]]] = {}
        for point in response.metrics:
            found.setdefault(str(point.run_id), []).append((int(point.step), float(point.value)))
        return found

    def create_parent_run(self, experiment_id: str, experiment_name: str,
                          tags: Mapping[str, str]) -> str:
        """A new sweep parent run, marked finished: it is a container, not work."""
        return self._finished_run("make the sweep's parent run", experiment_id,
                                  experiment_name, {**tags, TAG_EXPERIMENT: experiment_name,
                                                    TAG_ROLE: "sweep"})

    def _finished_run(self, action: str, experiment_id: str, run_name: str,
                      tags: Mapping[str, str]) -> str:
        """A new run marked finished at once: a container, not work."""
        run = self._call(action, "create_run", experiment_id, run_name=run_name,
                         tags=dict(tags))
        self._call(action, "set_terminated", run.info.run_id, status="FINISHED")
        return str(run.info.run_id)

    @property
    def keeps_files(self) -> bool:
        """Whether ``keep`` may store files here: only a tracking server (a local store's
        artifacts would land in the working folder; its disk can hold a folder instead)."""
        return self.tracking_uri.startswith(("http://", "https://"))

    def kept(self, name: str, limit: int) -> bytes | None:
        """The file ``name`` kept in the store (``keep``); None when there is none, it is
        larger than ``limit`` bytes (or of no stated size), or it cannot be read: a kept
        file is a shortcut, never a reason to fail."""
        if not self.keeps_files:
            return None
        try:
            run_id = self._kept_run(create=False)
            if run_id is None:
                return None
            listed = {f.path: f for f in self._call("list the kept files", "list_artifacts",
                                                     run_id)}
            info = listed.get(name)
            if info is None or info.is_dir or info.file_size is None \
                    or not 0 <= int(info.file_size) <= limit:
                return None
            with tempfile.TemporaryDirectory(prefix="sweepctl-kept-") as scratch:
                path = self._call("read a kept file", "download_artifacts", run_id, name,
                                  scratch)
                with Path(path).open("rb") as handle:
                    data = handle.read(limit + 1)
            return data if len(data) <= limit else None
        except (MlflowError, OSError, ValueError, TypeError):
            return None

    def keep(self, name: str, data: bytes) -> bool:
        """Store ``data`` as the kept file ``name``, replacing the one kept before; False
        when the store refuses (no right to create the experiment, no artifact store) or
        is not a server."""
        if not self.keeps_files:
            return False
        try:
            run_id = self._kept_run(create=True)
            if run_id is None:
                return False
            with tempfile.TemporaryDirectory(prefix="sweepctl-kept-") as scratch:
                path = Path(scratch) / name
                path.write_bytes(data)
                self._call("keep a file", "log_artifact", run_id, str(path))
            return True
        except (MlflowError, OSError):
            return False

    def _kept_run(self, *, create: bool) -> str | None:
        """The run holding the kept files: the oldest active one of KEPT_EXPERIMENT (two
        commands racing to make it both find the same one next time). None when there is
        none (and ``create`` is false) or the experiment was deleted (restore it, or
        delete it for good, to keep files again). Found once per command: reading the
        kept file and keeping the new one share it."""
        if self._kept_run_id is not None:
            return self._kept_run_id
        found = self._call("find the kept files", "get_experiment_by_name", KEPT_EXPERIMENT)
        if found is not None and found.lifecycle_stage != "active":
            return None
        if found is None and not create:
            return None
        experiment_id = (str(found.experiment_id) if found is not None
                         else self.ensure_experiment(KEPT_EXPERIMENT))
        runs = self._call("find the kept files", "search_runs", [experiment_id],
                          filter_string=role_filter(KEPT_ROLE), max_results=1,
                          order_by=["attributes.start_time ASC"])
        if runs:
            self._kept_run_id = str(runs[0].info.run_id)
            return self._kept_run_id
        if not create:
            return None
        self._kept_run_id = self._finished_run("make the kept files' run", experiment_id,
                                               "sweepctl-kept", {TAG_ROLE: KEPT_ROLE})
        return self._kept_run_id

    def mark_cancelled(self, run_id: str, *, end: bool) -> None:
        """Tag the run as cancelled; ``end``: it is still RUNNING (its pod or process was
        killed before the runner could end it), so end it KILLED here."""
        self._call("tag the cancelled run", "set_tag", run_id, TAG_CANCELLED, "true")
        if end:
            self._call("end the cancelled run", "set_terminated", run_id, status="KILLED")


def role_filter(role: str) -> str:
    return f"tags.`{TAG_ROLE}` = '{_quote(role)}'"


def experiment_filter(experiment_name: str, role: str = "trial") -> str:
    return f"tags.`{TAG_EXPERIMENT}` = '{_quote(experiment_name)}' and {role_filter(role)}"


def iter_runs(tracking_uri: str, mlflow_experiment: str, filter_string: str) -> Iterator[RunRecord]:
    """Every run of one MLflow experiment matching the filter (tests and tools)."""
    store = MlflowStore(tracking_uri)
    experiment_id = store.experiment_ids([mlflow_experiment]).get(mlflow_experiment)
    if experiment_id is not None:
        yield from store.search([experiment_id], filter_string)


def trial_runs(tracking_uri: str, mlflow_experiment: str, experiment_name: str) -> list[RunRecord]:
    """All trial runs of one sweepctl experiment, newest first."""
    runs = list(iter_runs(tracking_uri, mlflow_experiment, experiment_filter(experiment_name)))
    runs.sort(key=lambda r: r.start_time or 0, reverse=True)
    return runs


def ensure_parent_run(tracking_uri: str, mlflow_experiment: str, experiment_name: str,
                      tags: Mapping[str, str]) -> str:
    """The sweep's parent run id: found by tag, created when missing."""
    store = MlflowStore(tracking_uri)
    experiment_id = store.ensure_experiment(mlflow_experiment)
    for run in store.search([experiment_id], experiment_filter(experiment_name, "sweep")):
        return run.run_id
    return store.create_parent_run(experiment_id, experiment_name, tags)
