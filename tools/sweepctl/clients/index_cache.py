"""The run index kept between commands: what the last scan of a tracking store saw, so
the next reconcile asks MLflow only for what changed since (see runindex).

A snapshot is encoded as one JSON document (``encode`` / ``decode``); ``read`` and
``write`` keep it as one file per tracking store under a folder (``.sweepctl/index/`` by
default), named by a hash of the URI without userinfo (the URI is stored that way too:
no password or token, and rotating one keeps the file; the same server under another
user name shares it). The tracking store itself can keep it too (see
``mlflow_store.MlflowStore.keep``). A snapshot is only ever a shortcut: one that is
missing, unreadable, of another version, for another store, with impossible times, or a
symlink is ignored (the command makes a full scan and keeps a fresh one), and a failed
write loses nothing but the next command's head start. A file is written to a temporary
file in the same folder and renamed over the old one, so a reader never sees half a file
and a symlink in its place is replaced, never followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sweepctl.clients.mlflow_store import TAG_TRIAL, TAG_TRIAL_ID, RunRecord, safe_uri

VERSION = 3


@dataclass(frozen=True)
class Snapshot:
    """What the scans of a tracking store saw, and when (ms, sweepctl's clock)."""

    tracking_uri: str
    taken_at: int       # when the scan that made this snapshot began
    runs: tuple[RunRecord, ...]
    parents: tuple[RunRecord, ...] = ()   # the sweeps' parent runs
    # MLflow experiment id -> when every run of it is to be read again: the experiments
    # the snapshot covers (a refresh reads every run of any other, and of those due)
    due_at: Mapping[str, int] = field(default_factory=dict)


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


def decode(raw: bytes, tracking_uri: str | None = None) -> Snapshot | None:
    """The snapshot in ``raw`` (an ``encode`` output), or None when it is not one of ours:
    malformed, another version, impossible times, or (``tracking_uri`` given) another
    store's."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return None
        if tracking_uri is not None and data.get("tracking_uri") != safe_uri(tracking_uri):
            return None
        taken_at = int(data["taken_at"])
        due_at = {str(k): int(v) for k, v in _mapping(data["due_at"]).items()}
        if taken_at < 0 or not all(v >= 0 for v in due_at.values()):
            return None
        return Snapshot(tracking_uri=str(data["tracking_uri"]) if tracking_uri is None
                        else tracking_uri, taken_at=taken_at, runs=_records(data["runs"]),
                        parents=_records(data["parents"]), due_at=due_at)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError,
            MemoryError):
        return None


def _mapping(value: Any) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("not a mapping")
    return value


def encode(snapshot: Snapshot) -> bytes:
    data = {"version": VERSION, "tracking_uri": safe_uri(snapshot.tracking_uri),
            "taken_at": snapshot.taken_at,
            "runs": [_record_data(r) for r in snapshot.runs],
            "parents": [_record_data(r) for r in snapshot.parents],
            "due_at": dict(snapshot.due_at)}
    # dumps, not dump: only a one-shot encode takes json's C encoder (100,000 runs: ~1 s
    # instead of ~10 s)
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def read(folder: Path, tracking_uri: str) -> Snapshot | None:
    """The snapshot of this store kept in ``folder``, or None when there is none usable."""
    path = cache_file(folder, tracking_uri)
    try:
        if path.is_symlink() or folder.is_symlink():
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    return decode(raw, tracking_uri)


def write(folder: Path, snapshot: Snapshot) -> bool:
    """Keep the snapshot in ``folder``; False when it cannot be written (nothing else
    lost)."""
    path = cache_file(folder, snapshot.tracking_uri)
    temporary = None
    try:
        if folder.is_symlink():
            return False
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".runs-", suffix=".tmp", dir=folder)
        with os.fdopen(handle, "wb") as out:
            out.write(encode(snapshot))
        os.replace(temporary, path)
        return True
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return False
