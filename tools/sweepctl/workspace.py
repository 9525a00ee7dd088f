"""One resolved workspace per command: where the repo is, defaults.yaml read once, each
experiment loaded once with its runtime, its tracking URI and its trials.

Every use case starts here, so no module re-derives any of it: the tracking URI follows
one rule (``runtime.tracking_uri``) for every command, render and plan included; the
sweep is expanded once per experiment; the MLflow run index is scanned once per tracking
store, across every MLflow experiment the command's experiments log to.

An experiment is named by its folder or by its bare name (looked up under
``experiments/``), in every command.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweepctl.errors import SweepctlError, UsageError
from sweepctl.findings import Findings, render_text
from sweepctl.keptindex import Keeper
from sweepctl.runindex import SCOPED_MAX_TRIALS, RunIndex, Scope, scan, scan_cached, scan_scoped
from sweepctl.runtime import Runtime, deep_merge, repo_root, runtime_from_data, tracking_uri
from sweepctl.spec.folder import ValidationFailed, check_folder, read_document, read_folder
from sweepctl.spec.model import CHECKLIST_ITEMS, Experiment, experiment_from_data
from sweepctl.spec.policy import policy_violations
from sweepctl.spec.schemas import check_schema
from sweepctl.spec.sensitive import check_secrets
from sweepctl.sweep.identity import canonical_json
from sweepctl.sweep.trial import Trial

# Budget findings do not stop a plan: showing the over-budget plan is the point.
BUDGET_RULES = ("budget-max-trials", "budget-gpu-hours")
EXPERIMENTS_DIR = "experiments"


def experiment_spec_hash(experiment: Experiment) -> str:
    """The sweep as written (baseline + sweep), for the MLflow tag and Job annotation."""
    payload = canonical_json({"baseline": dict(experiment.baseline),
                              "sweep": dict(experiment.sweep)})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedExperiment:
    """An experiment as every step of one command sees it."""

    experiment: Experiment
    runtime: Runtime
    tracking_uri: str | None
    trials: tuple[Trial, ...]
    spec_hash: str

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def path(self) -> Path:
        return self.experiment.path

    @property
    def image(self) -> str:
        return self.runtime.kubernetes.image

    @property
    def root(self) -> Path:
        return repo_root(self.experiment.path)

    @property
    def trial_ids(self) -> list[str]:
        return [t.trial_id for t in self.trials]

    def require_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        raise UsageError("no MLflow tracking URI: set MLFLOW_TRACKING_URI or "
                         "mlflow.tracking_uri in experiments/defaults.yaml")


@dataclass
class Workspace:
    """What a command computes once and hands down.

    ``shared_tracking`` says which MLflow the command's backend logs to: the shared server
    (``mlflow.tracking_uri``, Kubernetes) or the local store (``local.tracking_uri``);
    ``env_tracking_uri`` (MLFLOW_TRACKING_URI) wins over both.
    """

    shared_tracking: bool = False
    env_tracking_uri: str | None = None
    cwd: Path = field(default_factory=Path.cwd)
    # where the run index is kept between commands (see keptindex; None: every full
    # scan reads every run); ``full_scan``: ignore what is kept there and read every run
    # once more (then keep that)
    index_keeper: Keeper | None = None
    index_notes: list[str] = field(default_factory=list)  # how each full index was read
    full_scan: bool = False
    clock: Callable[[], float] = time.time
    _defaults: dict[Path, tuple[dict[str, Any], Findings]] = field(default_factory=dict)
    _stores: dict[str, Any] = field(default_factory=dict)
    _indexes: dict[str, tuple[frozenset[str] | None, RunIndex]] = field(default_factory=dict)
    # uri -> the scopes of the experiments resolved so far (resolve clears it): compare
    # asks the index once per experiment, and 1,000 must not cost 1,000,000 trial ids
    _scopes: dict[str, list[Scope]] = field(default_factory=dict)
    resolved: list[ResolvedExperiment] = field(default_factory=list)

    # -- finding and loading experiments -------------------------------------------------

    def locate(self, name_or_path: str | os.PathLike[str]) -> Path:
        """An experiment folder from a path or a bare name (``lora-rank-sweep``)."""
        path = Path(name_or_path)
        if not path.is_absolute():
            path = self.cwd / path
        if path.is_dir():
            return Path(os.path.abspath(path))
        if len(Path(name_or_path).parts) == 1:
            for base in (self.cwd, *self.cwd.parents):
                candidate = base / EXPERIMENTS_DIR / str(name_or_path)
                if candidate.is_dir():
                    return candidate
        raise UsageError(f"no experiment {str(name_or_path)!r}: not a folder, and not a "
                         f"folder under {EXPERIMENTS_DIR}/")

    def defaults(self, experiments_dir: Path) -> tuple[dict[str, Any], Findings]:
        """defaults.yaml beside the experiment folders, read and schema-checked once."""
        path = Path(os.path.abspath(experiments_dir)) / "defaults.yaml"
        if path not in self._defaults:
            findings = Findings()
            data: dict[str, Any] = {}
            if path.is_file():
                doc = read_document(path, findings)
                if doc is not None and check_schema(doc, "defaults", findings):
                    data = doc.data if isinstance(doc.data, dict) else {}
                if doc is not None:
                    check_secrets(doc, findings)  # as validate does: launch refuses them too
            self._defaults[path] = (data, findings)
        return self._defaults[path]

    def check(self, folder: Path) -> tuple[Experiment | None, Findings]:
        """Every finding of the folder and of its defaults.yaml; the model when valid."""
        folder = Path(os.path.abspath(folder))
        if not (folder / "experiment.yaml").is_file():
            raise SweepctlError(f"{folder}: not an experiment folder (no experiment.yaml)")
        findings = Findings()
        experiment = check_folder(folder, findings)
        findings.extend(self.defaults(folder.parent)[1])
        return experiment, findings

    def load(self, folder: Path) -> Experiment:
        """The experiment for commands that act on it; ValidationFailed when invalid."""
        experiment, findings = self.check(folder)
        if experiment is None or findings.errors:
            raise ValidationFailed(findings)
        return experiment

    def load_for_plan(self, folder: Path) -> Experiment:
        """Refused on any error but the budget ones: the plan shows those."""
        experiment, findings = self.check(folder)
        if [f for f in findings.errors if f.rule not in BUDGET_RULES]:
            raise ValidationFailed(findings)
        if experiment is None:  # only budget errors: build the model anyway
            folder = Path(os.path.abspath(folder))
            experiment = experiment_from_data(folder, read_folder(folder, Findings()))
        return experiment

    def load_for_launch(self, folder: Path) -> tuple[Experiment | None, list[str]]:
        """The experiment, or the reasons it may not launch."""
        experiment, findings = self.check(folder)
        if experiment is None or findings.errors:
            return None, render_text(findings).splitlines() or [f"{folder}: invalid"]
        # again here, not only in validate: a pre-commit hook can be skipped and a branch
        # pushed without CI, and a merge is a command to spend GPUs with our credentials
        violations = policy_violations(experiment, self.defaults(experiment.path.parent)[0])
        if violations:
            where = experiment.path / "experiment.yaml"
            return None, [f"{where}: error: {line}" for line in violations]
        unticked = [i for i in CHECKLIST_ITEMS if experiment.checklist.get(i) is not True]
        if unticked:
            return None, [f"{folder / 'checklist.yaml'}: checklist incomplete: "
                          f"{', '.join(unticked)} not ticked"]
        return experiment, []

    # -- resolving ------------------------------------------------------------------------

    def runtime(self, experiment: Experiment) -> Runtime:
        """defaults.yaml (read once) deep-merged with the experiment's ``runtime:``."""
        data, _ = self.defaults(experiment.path.parent)
        return runtime_from_data(deep_merge(data, experiment.runtime))

    def tracking_uri(self, experiment: Experiment, runtime: Runtime) -> str | None:
        return tracking_uri(runtime, self.shared_tracking, repo_root(experiment.path),
                            self.env_tracking_uri)

    def resolve(self, experiment: Experiment) -> ResolvedExperiment:
        from sweepctl.sweep.expand import expand

        runtime = self.runtime(experiment)
        resolved = ResolvedExperiment(
            experiment=experiment, runtime=runtime,
            tracking_uri=self.tracking_uri(experiment, runtime),
            trials=tuple(expand(experiment, runtime.kubernetes.image, enforce_budget=False)),
            spec_hash=experiment_spec_hash(experiment))
        self.resolved.append(resolved)
        self._scopes.clear()
        return resolved

    def resolve_all(self, experiments: Iterable[Experiment]) -> list[ResolvedExperiment]:
        return [self.resolve(e) for e in experiments]

    # -- MLflow ---------------------------------------------------------------------------

    def store(self, uri: str) -> Any:
        """The one MlflowStore (client + request count) per tracking URI."""
        from sweepctl.clients.mlflow_store import MlflowStore

        if uri not in self._stores:
            self._stores[uri] = MlflowStore(uri)
        return self._stores[uri]

    @property
    def mlflow_requests(self) -> int:
        return sum(store.requests for store in self._stores.values())

    def mlflow_calls(self, method: str) -> int:
        """How many times this command called one MLflow client method (search_runs...)."""
        return sum(store.calls[method] for store in self._stores.values())

    def scopes(self, uri: str) -> list[Scope]:
        """What the index of ``uri`` covers: each experiment resolved so far that logs
        there, with its trial ids."""
        if uri not in self._scopes:
            self._scopes[uri] = [Scope(r.experiment.mlflow_experiment, r.name,
                                       tuple(r.trial_ids))
                                 for r in self.resolved if r.tracking_uri == uri]
        return self._scopes[uri]

    def run_index(self, uri: str, *, with_parents: bool = False) -> RunIndex:
        """The one index of the store at ``uri`` for this command: a scoped scan when the
        command's experiments (resolve them all first) have few trials, else one paged scan
        of every trial run (see runindex)."""
        scopes = self.scopes(uri)
        names = frozenset(s.experiment for s in scopes)
        cached = self._indexes.get(uri)
        if cached is not None and (cached[0] is None or names <= cached[0]) and (
                cached[1].with_parents or not with_parents):
            return cached[1]
        store = self.store(uri)
        if sum(len(s.trial_ids) for s in scopes) <= SCOPED_MAX_TRIALS:
            index, covered = scan_scoped(store, scopes, with_parents=with_parents), names
        else:
            index, covered = self._full_index(store, with_parents), None
        self._indexes[uri] = (covered, index)
        return index

    def _full_index(self, store: Any, with_parents: bool) -> RunIndex:
        """Every trial run of the store: from the kept snapshot and what changed since
        when there is one (runindex.scan_cached), then the snapshot kept for the next."""
        if self.index_keeper is None:
            return scan(store, with_parents=with_parents)
        root = self._repo_root()
        previous = None if self.full_scan else self.index_keeper.read(store, root)
        index, snapshot = scan_cached(store, previous, now=int(self.clock() * 1000),
                                      scopes=self.scopes(store.tracking_uri))
        kept = self.index_keeper.write(store, root, snapshot)
        how = ("refreshed what the last command kept" if index.source == "cached"
               else "full scan (--full-scan)" if self.full_scan
               else "full scan (nothing usable kept)" if previous is None
               else "full scan (what was kept was due to be read whole, or is from a "
                    "clock ahead of this one)")
        self.index_notes.append(
            f"{how}, {index.runs_read} runs read; "
            f"{'kept' if kept else 'could not be kept'} {self.index_keeper.where}")
        return index

    def _repo_root(self) -> Path:
        roots = [repo_root(r.path) for r in self.resolved]
        return roots[0] if roots else self.cwd

    def index_for(self, resolved: ResolvedExperiment) -> RunIndex:
        return self.run_index(resolved.require_tracking_uri())


def folders_of(workspace: Workspace, names: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The experiment folders a command names (paths or bare names), in order."""
    return [workspace.locate(name) for name in names]
