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
from sweepctl.usecases import plots
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
    # processes that draw the plots (usecases.plots); > 1 spawns workers, which import
    # the caller's main module: a script passing it needs an `if __name__ == "__main__"`
    jobs: int = 1
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


def _write_notes(prepared: Prepared, paths: list[Path], entry: ExperimentReport) -> None:
    from sweepctl.clients import notes_file
    from sweepctl.renderers import markdown
    from sweepctl.results import sensitivity

    resolved, comparison = prepared.resolved, prepared.comparison
    block = markdown.notes_block(comparison, sensitivity.sensitivity(comparison), paths,
                                 resolved.path)
    changed = notes_file.write_block(resolved.experiment.notes_path, block)
    entry.notes = "updated" if changed else "unchanged"
    entry.notes_path = str(resolved.experiment.notes_path)
    entry.plots = len(paths)


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
    curves: plots.CurveSource | None  # with notes: what its learning curves are drawn from


def prepare(workspace: Workspace, resolved: ResolvedExperiment,
            request: ReportRequest) -> Prepared:
    from sweepctl.clients import notes_file

    if request.notes:
        notes_file.check_markers(resolved.experiment.notes_path)  # fail before other work
    comparison = compare(workspace, resolved, tolerance=request.tolerance)
    source = plots.curve_source(resolved, comparison) if request.notes else None
    return Prepared(resolved, comparison, source)


def report_one(prepared: Prepared, request: ReportRequest, github: GitHub | None,
               paths: list[Path]) -> ExperimentReport:
    """Write and post one prepared experiment whose plots (``paths``) are drawn."""
    from sweepctl.renderers import markdown

    resolved = prepared.resolved
    entry = ExperimentReport(resolved.name)
    entry.body = markdown.comment_body(prepared.comparison, request.notes_url(resolved))
    entry.state = markdown.state(prepared.comparison)
    if request.notes:
        _write_notes(prepared, paths, entry)
    if github is not None:
        _post(resolved, request, github, entry)
    return entry


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


def _draw_plots(workspace: Workspace, slots: Sequence[ExperimentReport | Prepared],
                request: ReportRequest) -> dict[int, list[Path] | SweepctlError]:
    """slot index -> its drawn plots, or why not. The histories of every curve to draw are
    read first; an experiment whose read fails fails alone, before anything is drawn."""
    if not request.notes:
        return {}
    ready = {i: slot for i, slot in enumerate(slots) if isinstance(slot, Prepared)}
    to_fetch = [(i, slot.curves) for i, slot in ready.items()
                if slot.curves is not None and not slot.curves.drawn]
    fetched, errors = plots.fetch_histories(workspace, [source for _, source in to_fetch])
    failed: dict[int, list[Path] | SweepctlError] = {
        to_fetch[index][0]: exc for index, exc in errors.items()}
    ready = {i: slot for i, slot in ready.items() if i not in failed}
    drawings = [plots.drawing(slot.resolved, slot.comparison, slot.curves, fetched)
                for slot in ready.values()]
    return {**failed, **dict(zip(ready, plots.draw_all(drawings, request.jobs), strict=True))}


def report(workspace: Workspace, folders: Sequence[Path], request: ReportRequest,
           github: GitHub | None) -> ReportSummary:
    """Report every experiment; one that fails is recorded and the others go on (with a
    single experiment, its error is raised as it is). Every experiment is read first,
    then every plot drawn (the curves' histories fetched together), then each written."""
    single = len(folders) == 1
    slots = _read_all(workspace, folders, request)
    drawn = _draw_plots(workspace, slots, request)
    summary = ReportSummary()
    for index, slot in enumerate(slots):
        if isinstance(slot, ExperimentReport):
            summary.reports.append(slot)
            continue
        try:
            result = drawn.get(index, [])
            if isinstance(result, SweepctlError):
                raise result
            summary.reports.append(report_one(slot, request, github, result))
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
