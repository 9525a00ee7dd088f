"""`sweepctl validate`: find experiment folders under the given paths and check them all."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sweepctl.findings import Finding, Findings
from sweepctl.spec.folder import FILE_NAMES, check_documents, read_document, read_folder
from sweepctl.spec.model import Experiment
from sweepctl.spec.schemas import check_schema
from sweepctl.spec.sensitive import check_secrets

_MEMBER_FILES = {*FILE_NAMES.values(), "notes.md"}


@dataclass
class ValidationResult:
    findings: Findings = field(default_factory=Findings)
    experiments: list[Experiment] = field(default_factory=list)
    checked_folders: int = 0
    # warnings an experiment acknowledged (warnings.ignore): not in ``findings``, counted so
    # the output can say they exist
    ignored: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings.errors


def _is_experiment_folder(path: Path) -> bool:
    return any((path / name).is_file() for name in FILE_NAMES.values())


def discover(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Experiment folders and defaults.yaml files named by (or found under) ``paths``."""
    folders: dict[Path, None] = {}
    defaults: dict[Path, None] = {}
    for path in paths:
        if path.is_file():
            if path.name == "defaults.yaml":
                defaults[path] = None
            elif path.name in _MEMBER_FILES:
                folders[path.parent] = None
            continue
        if _is_experiment_folder(path):
            folders[path] = None
            continue
        if (path / "defaults.yaml").is_file():
            defaults[path / "defaults.yaml"] = None
        for child in sorted(path.iterdir()) if path.is_dir() else []:
            if child.is_dir() and _is_experiment_folder(child):
                folders[child] = None
    for folder in folders:
        # the folder's trials are built with the defaults.yaml beside it (its image is part
        # of every trial id), so checking the folder checks that file too
        beside = folder.parent / "defaults.yaml"
        if beside.is_file() and not any(_same_file(beside, known) for known in defaults):
            defaults[beside] = None
    return list(folders), list(defaults)


def _same_file(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def validate_paths(paths: Sequence[Path]) -> ValidationResult:
    from sweepctl.spec.rules import check_unique_names, ignored_warnings

    result = ValidationResult()
    folders, defaults = discover(paths)
    for path in defaults:
        doc = read_document(path, result.findings)
        if doc is not None:
            check_schema(doc, "defaults", result.findings)
            # the admin's file is in the repository too: a password in mlflow.tracking_uri
            # is as public there as in an experiment (the finding never shows the value)
            check_secrets(doc, result.findings)
    experiment_docs = []
    for folder in folders:
        result.checked_folders += 1
        found = Findings()
        docs = read_folder(folder, found)
        if "experiment" in docs:
            experiment_docs.append(docs["experiment"])
        experiment = check_documents(folder, docs, found)
        if experiment is not None:
            result.experiments.append(experiment)
        ignored = ignored_warnings(docs["experiment"].data) if "experiment" in docs else set()
        for finding in found:
            if finding.severity == "warning" and finding.rule in ignored:
                result.ignored.append(finding)
            else:
                result.findings.extend([finding])
    check_unique_names(experiment_docs, result.findings)
    return result
