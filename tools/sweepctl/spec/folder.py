"""Read an experiment folder: its four YAML files, schema-checked, into an ``Experiment``."""

from __future__ import annotations

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


def read_document(path: Path, findings: Findings) -> Document | None:
    try:
        return load_document(path)
    except SpecError as exc:
        findings.error(exc.path, exc.line, exc.col, str(exc.args[0]), exc.rule)
        return None


def read_folder(folder: Path, findings: Findings) -> dict[str, Document]:
    """Load each file that exists and parses; report missing and unparsable ones."""
    docs: dict[str, Document] = {}
    for kind, file_name in FILE_NAMES.items():
        path = folder / file_name
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
    return check_documents(folder, read_folder(folder, findings), findings)


def check_documents(folder: Path, docs: dict[str, Document],
                    findings: Findings) -> Experiment | None:
    """Schema and rule checks on a folder's already-loaded documents."""
    from sweepctl.spec.rules import check_rules  # rules import the known-keys data lazily

    before = len(findings.errors)
    schema_ok = {kind: check_schema(doc, kind, findings) for kind, doc in docs.items()}
    check_rules(folder, docs, schema_ok, findings)
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
