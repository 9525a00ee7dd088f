"""The run index kept on disk between commands: what the last scan of a tracking store
saw, so the next reconcile asks MLflow only for what changed since (see runindex).

One JSON file per tracking store under the cache folder (``.sweepctl/index/`` by
default), named by a hash of the URI without userinfo (the URI is stored that way too:
no password or token, and rotating one keeps the file; the same server under another
user name shares it). The file is only ever a shortcut: one
that is missing, unreadable, of another version, for another store, with impossible
times, or a symlink is ignored (the command makes a full scan and writes a fresh one),
and a failed write loses nothing but the next command's head start. Written to a
temporary file in the same folder and renamed over the old one, so a reader never sees
half a file and a symlink in its place is replaced, never followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sweepctl.clients.mlflow_store import TAG_TRIAL, TAG_TRIAL_ID, RunRecord, safe_uri

VERSION = 2


@dataclass(frozen=True)
class Snapshot:
    """What one scan of a tracking store saw, and when (ms, sweepctl's clock)."""

    tracking_uri: str
    taken_at: int       # when the scan that made this snapshot began
    full_at: int        # when the last full scan (every run read) began
    runs: tuple[RunRecord, ...]
    parents: tuple[RunRecord, ...] | None = None  # None: the sweeps' parents not read
    # the MLflow experiments it covers (a refresh reads every run of any other)
    experiment_ids: tuple[str, ...] | None = None


def cache_file(folder: Path, tracking_uri: str) -> Path:
    digest = hashlib.sha256(safe_uri(tracking_uri).encode("utf-8")).hexdigest()[:24]
    return folder / f"runs-{digest}.json"


_FIELDS = tuple(f.name for f in fields(RunRecord))


def _record_data(run: RunRecord) -> dict[str, Any]:
    data = {name: getattr(run, name) for name in _FIELDS}
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("not a mapping")
    return {str(k): str(v) for k, v in value.items()}


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _record(data: Any) -> RunRecord:
    """A run as the scan read it; ValueError/TypeError/KeyError on anything malformed."""
    tags = _strings(data["tags"])
    return RunRecord(
        run_id=str(data["run_id"]), status=str(data["status"]),
        trial_id=tags.get(TAG_TRIAL_ID), trial_name=tags.get(TAG_TRIAL),
        params=_strings(data["params"]),
        metrics={str(k): float(v) for k, v in dict(data["metrics"]).items()},
        tags=tags, start_time=_optional_int(data["start_time"]),
        end_time=_optional_int(data["end_time"]),
        experiment_id=None if data["experiment_id"] is None else str(data["experiment_id"]),
        metric_steps={str(k): int(v) for k, v in dict(data["metric_steps"]).items()})


def _records(items: Any) -> tuple[RunRecord, ...]:
    if not isinstance(items, list):
        raise ValueError("not a list")
    return tuple(_record(item) for item in items)


def safe_under(root: Path, relative: Path) -> bool:
    """No part of ``root/relative`` below ``root`` is a symlink (missing parts are fine:
    they are created as folders)."""
    path = root
    for part in relative.parts:
        path = path / part
        if path.is_symlink():
            return False
    return True


def read(folder: Path, tracking_uri: str) -> Snapshot | None:
    """The snapshot of this store, or None when there is none usable."""
    path = cache_file(folder, tracking_uri)
    try:
        if path.is_symlink() or folder.is_symlink():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != VERSION \
                or data.get("tracking_uri") != safe_uri(tracking_uri):
            return None
        taken_at, full_at = int(data["taken_at"]), int(data["full_at"])
        if not 0 <= full_at <= taken_at:
            return None
        parents = data.get("parents")
        return Snapshot(tracking_uri=tracking_uri, taken_at=taken_at, full_at=full_at,
                        runs=_records(data["runs"]),
                        parents=None if parents is None else _records(parents),
                        experiment_ids=None if data.get("experiment_ids") is None
                        else _ids(data["experiment_ids"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError,
            RecursionError):
        return None


def _ids(items: Any) -> tuple[str, ...]:
    if not isinstance(items, list):
        raise ValueError("not a list")
    return tuple(str(item) for item in items)


def write(folder: Path, snapshot: Snapshot) -> bool:
    """Store the snapshot; False when the folder cannot be written (nothing else lost)."""
    parents: Sequence[RunRecord] | None = snapshot.parents
    data = {"version": VERSION, "tracking_uri": safe_uri(snapshot.tracking_uri),
            "taken_at": snapshot.taken_at, "full_at": snapshot.full_at,
            "runs": [_record_data(r) for r in snapshot.runs],
            "parents": None if parents is None else [_record_data(r) for r in parents],
            "experiment_ids": None if snapshot.experiment_ids is None
            else list(snapshot.experiment_ids)}
    path = cache_file(folder, snapshot.tracking_uri)
    temporary = None
    try:
        if folder.is_symlink():
            return False
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".runs-", suffix=".tmp", dir=folder)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            # dumps, not dump: only a one-shot encode takes json's C encoder (100,000
            # runs: ~1 s instead of ~10 s)
            out.write(json.dumps(data, separators=(",", ":")))
        os.replace(temporary, path)
        return True
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return False
