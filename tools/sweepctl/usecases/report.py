"""`sweepctl report [EXP...]`: results into each PR's sticky comment and, with notes, into
notes.md's generated block (plus the sensitivity plots).

Every experiment of the command shares one workspace, one run index and one GitHub
client. Per experiment, everything is read and built first; only then is anything
written or posted, so an unreachable MLflow or malformed notes.md markers leave both the
file and the PR as they were. An experiment whose results did not change since its last
report writes nothing: notes.md is compared byte for byte before any write, and the
comment is edited only when its body differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sweepctl.errors import GitHubError, SweepctlError
from sweepctl.results.compare import DEFAULT_TOLERANCE, Comparison
from sweepctl.sweep.plan import Plan
from sweepctl.usecases.compare import compare
from sweepctl.workspace import ResolvedExperiment, Workspace

if TYPE_CHECKING:
    from sweepctl.clients.github_api import GitHub


class NoPullRequest(GitHubError):
    """The experiment reached main without a PR (or before sweepctl knew of it)."""


@dataclass(frozen=True)
class ReportRequest:
    pr: int | None = None            # --pr; else found from git
    notes: bool = False              # write notes.md's block and the plots
    tolerance: float = DEFAULT_TOLERANCE
    notes_url: Callable[[ResolvedExperiment], str | None] = lambda resolved: None


@dataclass
class ExperimentReport:
    experiment: str
    body: str = ""
    state: str = ""
    notes: str | None = None         # updated | unchanged, when notes were written
    notes_path: str = ""
    plots: int = 0
    comment: str | None = None       # "<repo>#<n>: comment created (url)"
    skipped: str | None = None       # why no comment was posted
    error: str | None = None         # this experiment failed; the others went on


@dataclass
class ReportSummary:
    reports: list[ExperimentReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(r.error for r in self.reports)


def _find_pr(resolved: ResolvedExperiment, github: GitHub) -> int:
    """The PR of the commit that added the experiment. Never a run's ``sweepctl.pr`` tag:
    anyone who can log a run could steer the report to another PR with it."""
    from sweepctl.clients.gitrepo import commit_adding

    sha = commit_adding(resolved.path / "experiment.yaml")
    if sha is None:
        raise NoPullRequest(f"{resolved.path}/experiment.yaml is not committed yet, so its "
                            "pull request cannot be found; pass --pr N")
    number = github.pull_request_for_commit(sha)
    if number is None:
        raise NoPullRequest(f"no pull request contains commit {sha[:12]} that added "
                            f"{resolved.name}; pass --pr N")
    return number


@dataclass(frozen=True)
class CurveSource:
    """What one experiment's plots/learning-curves.png is drawn from: each trial's first
    FINISHED run (at most ``curves.MAX_RUNS``) and the metrics, named by ``key``."""
    uri: str
    folder: Path
    run_ids: dict[str, str]          # trial label -> run id
    metrics: tuple[str, ...]
    key: str
    drawn: bool                      # the PNG in folder is already drawn from this key


# (tracking URI, run id) -> metric -> [(step, value)]
Histories = dict[tuple[str, str], dict[str, list[tuple[int, float]]]]


def curve_source(resolved: ResolvedExperiment, comparison: Comparison) -> CurveSource | None:
    from sweepctl.results import curves

    run_ids = dict(list({row.label: row.finished_run_ids[0] for row in comparison.rows
                         if row.in_sweep and row.finished_run_ids}.items())[:curves.MAX_RUNS])
    if not run_ids or not comparison.tracking_uri:
        return None
    folder = resolved.path / "plots"
    metrics = tuple(sorted({curves.LOSS_KEY, comparison.metric}))
    key = curves.source_key(run_ids, metrics)
    return CurveSource(comparison.tracking_uri, folder, run_ids, metrics, key,
                       drawn=curves.drawn_from(folder) == key)


def fetch_histories(workspace: Workspace, sources: Sequence[CurveSource]) -> Histories:
    """The histories of every curve in ``sources``, across experiments: one bulk request
    per metric and 100 runs of the whole command (per run and metric from a local store),
    so a first report of 1,000 experiments asks MLflow ~runs/50 times, not runs x 2."""
    from sweepctl.results import curves

    wanted: dict[tuple[str, str], list[str]] = {}
    for source in sources:
        for metric in source.metrics:
            wanted.setdefault((source.uri, metric), []).extend(source.run_ids.values())
    fetched: Histories = {}
    for (uri, metric), run_ids in wanted.items():
        found = workspace.store(uri).metric_histories(run_ids, [metric],
                                                      max_points=curves.MAX_POINTS)
        for run_id, by_metric in found.items():
            fetched.setdefault((uri, run_id), {}).update(by_metric)
    return fetched


def _write_curves(resolved: ResolvedExperiment, comparison: Comparison,
                  source: CurveSource | None, fetched: Histories) -> list[Path]:
    """plots/learning-curves.png (no finished run: no file), drawn again only when its
    source changed: the hourly report of 1,000 experiments must not draw them again."""
    from sweepctl.results import curves

    if source is None:
        return []
    if source.drawn:
        return [source.folder / curves.CURVES_FILE]
    histories = {label: fetched[(source.uri, run_id)]
                 for label, run_id in source.run_ids.items()}
    path = curves.write_curves(resolved.name, histories, comparison.metric,
                               source.folder, key=source.key)
    return [] if path is None else [path]


def _write_notes(prepared: Prepared, fetched: Histories, entry: ExperimentReport) -> None:
    from sweepctl.clients import notes_file
    from sweepctl.renderers import markdown
    from sweepctl.results import sensitivity

    resolved, comparison = prepared.resolved, prepared.comparison
    table = sensitivity.sensitivity(comparison)
    folder = resolved.path / "plots"
    for parameter, points in table.items():
        if points:  # a plot (or plots/) that is a symlink would write outside the repo
            notes_file.refuse_links(folder / sensitivity.plot_name(parameter))
    plots = sensitivity.write_plots(comparison, table, folder)
    plots += _write_curves(resolved, comparison, prepared.curves, fetched)
    block = markdown.notes_block(comparison, table, plots, resolved.path)
    changed = notes_file.write_block(resolved.experiment.notes_path, block)
    entry.notes = "updated" if changed else "unchanged"
    entry.notes_path = str(resolved.experiment.notes_path)
    entry.plots = len(plots)


def _post(resolved: ResolvedExperiment, request: ReportRequest, github: GitHub,
          entry: ExperimentReport) -> None:
    from sweepctl.renderers import markdown

    try:
        number = request.pr or _find_pr(resolved, github)
    except NoPullRequest as exc:
        if not request.notes:
            raise
        # the scheduled report covers every experiment, some merged without a PR: their
        # notes.md is the report, so that is not a failure (a GitHub error still is)
        entry.skipped = str(exc)
        return
    result = github.comment(number, markdown.comment_marker(resolved.name)).upsert(entry.body)
    entry.comment = (f"{github.target.repository}#{number}: comment {result.action}"
                     f"{f' ({result.url})' if result.url else ''}")


@dataclass(frozen=True)
class Prepared:
    """One experiment read and compared, nothing written yet."""
    resolved: ResolvedExperiment
    comparison: Comparison
    curves: CurveSource | None       # with notes: what its learning curves are drawn from


def prepare(workspace: Workspace, resolved: ResolvedExperiment,
            request: ReportRequest) -> Prepared:
    from sweepctl.clients import notes_file

    if request.notes:
        notes_file.check_markers(resolved.experiment.notes_path)  # fail before other work
    comparison = compare(workspace, resolved, tolerance=request.tolerance)
    source = curve_source(resolved, comparison) if request.notes else None
    return Prepared(resolved, comparison, source)


def report_one(prepared: Prepared, request: ReportRequest, github: GitHub | None,
               fetched: Histories) -> ExperimentReport:
    """Write and post one prepared experiment; ``fetched`` holds its curves' histories."""
    from sweepctl.renderers import markdown

    resolved = prepared.resolved
    entry = ExperimentReport(resolved.name)
    entry.body = markdown.comment_body(prepared.comparison, request.notes_url(resolved))
    entry.state = markdown.state(prepared.comparison)
    if request.notes:
        _write_notes(prepared, fetched, entry)
    if github is not None:
        _post(resolved, request, github, entry)
    return entry


def _to_draw(prepared: Prepared) -> CurveSource | None:
    return None if prepared.curves is None or prepared.curves.drawn else prepared.curves


def _read_all(workspace: Workspace, folders: Sequence[Path], request: ReportRequest
              ) -> list[ExperimentReport | Prepared]:
    """Each experiment prepared, or its error, in the order given. All are resolved
    before any is compared: the run index scopes its scan by every one of them."""
    single = len(folders) == 1
    slots: list[ExperimentReport | ResolvedExperiment] = []
    for folder in folders:
        try:
            slots.append(workspace.resolve(workspace.load(folder)))
        except SweepctlError as exc:
            if single:
                raise
            slots.append(ExperimentReport(folder.name, error=str(exc)))
    prepared: list[ExperimentReport | Prepared] = []
    for slot in slots:
        if isinstance(slot, ExperimentReport):
            prepared.append(slot)
            continue
        try:
            prepared.append(prepare(workspace, slot, request))
        except SweepctlError as exc:
            if single:
                raise
            prepared.append(ExperimentReport(slot.name, error=str(exc)))
    return prepared


def report(workspace: Workspace, folders: Sequence[Path], request: ReportRequest,
           github: GitHub | None) -> ReportSummary:
    """Report every experiment; one that fails is recorded and the others go on (with a
    single experiment, its error is raised as it is). Every experiment is read first,
    then the histories of every curve to draw are fetched together, then each is written."""
    single = len(folders) == 1
    slots = _read_all(workspace, folders, request)
    fetched: Histories = {}
    fetch_error: SweepctlError | None = None
    try:
        fetched = fetch_histories(workspace, [source for slot in slots if isinstance(
            slot, Prepared) and (source := _to_draw(slot)) is not None])
    except SweepctlError as exc:
        if single:
            raise
        fetch_error = exc   # the experiments with curves to draw fail; the others go on
    summary = ReportSummary()
    for slot in slots:
        if isinstance(slot, ExperimentReport):
            summary.reports.append(slot)
            continue
        try:
            if fetch_error is not None and _to_draw(slot) is not None:
                raise fetch_error
            summary.reports.append(report_one(slot, request, github, fetched))
        except SweepctlError as exc:
            if single:
                raise
            summary.reports.append(ExperimentReport(slot.resolved.name, error=str(exc)))
    return summary


# a plan comment is at most 65,536 characters; its JSON is larger (ids, every field)
MAX_PLAN_JSON_BYTES = 4 * 1024 * 1024


def read_plan_json(path: Path) -> Plan:
    """The one plan in ``path`` (``sweepctl plan --format json`` output from a PR's
    artifact): bounded size, UTF-8 JSON, exactly one plan of the shape plan_data writes."""
    import json

    from sweepctl.renderers.plan import plan_from_data

    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PLAN_JSON_BYTES + 1)
    except OSError as exc:
        raise SweepctlError(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_PLAN_JSON_BYTES:
        raise SweepctlError(f"{path}: over {MAX_PLAN_JSON_BYTES} bytes; not a sweepctl plan")
    def non_finite(constant: str) -> float:
        # Python's json reads NaN and Infinity, which no plan holds (validate refuses
        # them in YAML); as a trial's value one would crash the renderer
        raise ValueError(f"{constant} is not a JSON number")

    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=non_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SweepctlError(f"{path}: not JSON ({type(exc).__name__}); not a sweepctl "
                            "plan") from exc
    plans = data.get("plans") if isinstance(data, dict) else None
    if not isinstance(plans, list) or len(plans) != 1:
        raise SweepctlError(f"{path}: must hold exactly one plan (`sweepctl plan --format "
                            "json` of one experiment)")
    return plan_from_data(plans[0], str(path))


def post_plan(path: Path, pr: int, github: GitHub) -> tuple[str, str]:
    """Render the plan of ``path`` with sweepctl's own renderer (never the PR's markdown)
    and put it in the experiment's sticky comment; (experiment, "<repo>#<n>: ...")."""
    from sweepctl.renderers.plan import marker, render_markdown

    plan = read_plan_json(path)
    result = github.comment(pr, marker(plan.experiment)).upsert(render_markdown(plan))
    return plan.experiment, (f"{github.target.repository}#{pr}: comment {result.action}"
                             f"{f' ({result.url})' if result.url else ''}")
