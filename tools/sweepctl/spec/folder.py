"""Read an experiment folder: its four YAML files, schema-checked, into an ``Experiment``.

Symbolic links are refused, never followed (issue 10): a notes.md linked to
/proc/self/environ or .git/config would be read and committed back by the report
workflow, a linked plots/ would receive files outside the repository, and a linked YAML
file would validate one thing while git reviews another.
"""

from __future__ import annotations

import os
from pathlib import Path

from sweepctl.errors import SpecError, SweepctlError
from sweepctl.findings import Findings
from sweepctl.spec.model import FILE_KINDS, Experiment, experiment_from_data
from sweepctl.spec.schemas import check_schema
from sweepctl.spec.yamlload import Document, load_document

FILE_NAMES = {kind: f"{kind}.yaml" for kind in FILE_KINDS}


class ValidationFailed(SweepctlError):
    """An experiment has errors; carries every finding so the CLI can print them."""

    def __init__(self, findings: Findings) -> None:
        super().__init__(f"{len(findings.errors)} error(s) in the experiment (run "
                         "`sweepctl validate` for details)")
        self.findings = findings


def _symlink_finding(path: Path, findings: Findings) -> None:
    findings.error(path, 1, 1, f"{path.name} is a symbolic link; experiment files and "
                   "defaults.yaml must be regular files (links are never followed)", "symlink")


def find_symlinks(folder: Path) -> list[Path]:
    """The folder itself when it is a link, else every link inside it, at any depth,
    without following any (sorted, so findings come in a stable order)."""
    if folder.is_symlink():
        return [folder]
    links: list[Path] = []
    pending = [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        links.append(Path(entry.path))
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
        except OSError:
            continue  # unreadable or vanished: the file checks report what is missing
    return sorted(links)


def read_document(path: Path, findings: Findings) -> Document | None:
    if path.is_symlink():
        _symlink_finding(path, findings)
        return None
    try:
        return load_document(path)
    except SpecError as exc:
        findings.error(exc.path, exc.line, exc.col, str(exc.args[0]), exc.rule)
        return None


def read_folder(folder: Path, findings: Findings) -> dict[str, Document]:
    """Load each file that exists and parses; report missing and unparsable ones."""
    docs: dict[str, Document] = {}
    links = find_symlinks(folder)
    for link in links:
        _symlink_finding(link, findings)
    if folder in links:
        return docs
    for kind, file_name in FILE_NAMES.items():
        path = folder / file_name
        if path in links:
            continue
        if not path.is_file():
            findings.error(path, 1, 1, f"{file_name} is missing from the experiment folder",
                           "missing-file")
            continue
        doc = read_document(path, findings)
        if doc is not None:
            docs[kind] = doc
    return docs


def check_folder(folder: Path, findings: Findings) -> Experiment | None:
    """Schema-check and rule-check one folder; return the model when it has no errors."""
    before = len(findings.errors)
    experiment = check_documents(folder, read_folder(folder, findings), findings)
    # read_folder's own errors (a symlinked notes.md) come before check_documents counts
    return experiment if len(findings.errors) == before else None


def check_documents(folder: Path, docs: dict[str, Document],
                    findings: Findings) -> Experiment | None:
    """Schema and rule checks on a folder's already-loaded documents."""
    from sweepctl.spec.policy import check_policy
    from sweepctl.spec.rules import check_rules  # rules import the known-keys data lazily
    from sweepctl.spec.sensitive import check_secrets

    before = len(findings.errors)
    schema_ok = {kind: check_schema(doc, kind, findings) for kind, doc in docs.items()}
    check_rules(folder, docs, schema_ok, findings)
    for doc in docs.values():
        check_secrets(doc, findings)
    check_policy(folder, docs, schema_ok, findings)
    if len(findings.errors) > before or len(docs) < len(FILE_KINDS):
        return None
    return experiment_from_data(folder, docs)


def load_experiment(folder: Path) -> Experiment:
    """Load one experiment for the commands that act on it; raise when it is invalid."""
    folder = Path(folder)
    if not (folder / "experiment.yaml").is_file():
        raise SweepctlError(f"{folder}: not an experiment folder (no experiment.yaml)")
    findings = Findings()
    experiment = check_folder(folder, findings)
    if experiment is None:
        raise ValidationFailed(findings)
    return experiment
