"""Where the run index is kept between commands: a folder, or the tracking store itself.

A ``Keeper`` reads the snapshot the last command left (None: none usable, the command
makes a full scan) and keeps the new one (False: it could not, nothing else is lost).
The CLI picks one from SWEEPCTL_INDEX_CACHE (``cli.options.index_keeper``):

- ``InFolder`` (the default, ``.sweepctl/index/`` under the repo): one JSON file per
  tracking store (``clients.index_cache``). A repo folder is refused when a commit could
  have planted it: a symlink on the way (the write would land elsewhere) or files git
  tracks (a forged snapshot would hide runs from launch).
- ``InTrackingStore`` (``mlflow``): one gzip-compressed file in the tracking store, an
  artifact of a run of its own (``MlflowStore.keep``). The scheduled workflows use it:
  a fresh GitHub runner keeps nothing on disk, and the snapshot holds nothing that a
  reader of the tracking store cannot already read (and no URI). What it holds is as
  trustworthy as the store's runs (who can write one can write the other), and it is
  bounded: at most KEPT_LIMIT bytes compressed, and at most INFLATE_RATIO times its own
  size and INFLATED_LIMIT inflated, else ignored (a bomb of a few MB is not gigabytes of
  JSON). Only a tracking server keeps it (``MlflowStore.keeps_files``).
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sweepctl.clients import index_cache
from sweepctl.clients.index_cache import Snapshot
from sweepctl.clients.mlflow_store import KEPT_EXPERIMENT, MlflowStore

KEPT_FILE = "run-index.json.gz"
# bench/scale.py's 100,000 runs: 11.8 MB compressed; real runs repeat more (dozens of
# identical params and tags a run), so compress further: the bounds leave room for both
KEPT_LIMIT = 256 * 2**20
INFLATE_RATIO = 64
INFLATED_LIMIT = 2 * 2**30


class Keeper(Protocol):
    @property
    def where(self) -> str:
        """For the user: "in MLflow (...)", "in .sweepctl/index"."""

    def read(self, store: MlflowStore, root: Path) -> Snapshot | None:
        """The snapshot of ``store`` kept last, or None (``root``: the repo's folder)."""

    def write(self, store: MlflowStore, root: Path, snapshot: Snapshot) -> bool:
        """Keep ``snapshot`` for the next command; False when it cannot be kept."""


@dataclass(frozen=True)
class InFolder:
    """One file per store in ``folder`` (relative: to the repo's root)."""

    folder: Path
    # root -> the folder to use there (None: refused), decided once per command: reading
    # the snapshot and keeping the new one must not ask git twice
    _decided: dict[Path, Path | None] = field(default_factory=dict, compare=False,
                                              repr=False)

    @property
    def where(self) -> str:
        return f"in {self.folder}"

    def folder_in(self, root: Path) -> Path | None:
        if self.folder.is_absolute():
            return self.folder
        if root not in self._decided:
            self._decided[root] = self._decide(root)
        return self._decided[root]

    def _decide(self, root: Path) -> Path | None:
        if not index_cache.safe_under(root, self.folder):
            return None
        from sweepctl.clients.gitrepo import tracked

        return None if tracked(root, self.folder) else root / self.folder

    def read(self, store: MlflowStore, root: Path) -> Snapshot | None:
        folder = self.folder_in(root)
        return None if folder is None else index_cache.read(folder, store.tracking_uri)

    def write(self, store: MlflowStore, root: Path, snapshot: Snapshot) -> bool:
        folder = self.folder_in(root)
        return folder is not None and index_cache.write(folder, snapshot)


@dataclass(frozen=True)
class InTrackingStore:
    """One compressed file in the tracking store, whatever URI it is reached by."""

    name: str = KEPT_FILE

    @property
    def where(self) -> str:
        return f"in MLflow ({KEPT_EXPERIMENT}/{self.name})"

    def read(self, store: MlflowStore, root: Path) -> Snapshot | None:
        raw = store.kept(self.name, KEPT_LIMIT)
        data = None if raw is None else inflate(
            raw, min(INFLATED_LIMIT, INFLATE_RATIO * len(raw)))
        if data is None:
            return None
        snapshot = index_cache.decode(data)
        if snapshot is None:
            return None
        return dataclasses.replace(snapshot, tracking_uri=store.tracking_uri)

    def write(self, store: MlflowStore, root: Path, snapshot: Snapshot) -> bool:
        # level 1: ~5x smaller, in a tenth of the time level 9 takes on 70 MB
        # no URI in it: reading ignores it, and whatever the URI carries stays out
        anonymous = dataclasses.replace(snapshot, tracking_uri="")
        return store.keep(self.name, gzip.compress(index_cache.encode(anonymous),
                                                   compresslevel=1, mtime=0))


def inflate(raw: bytes, limit: int) -> bytes | None:
    """One gzip member, at most ``limit`` bytes once inflated; None for anything else
    (not gzip, truncated, trailing bytes, or larger)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error:
        return None
    if len(data) > limit or not inflater.eof or inflater.unused_data:
        return None
    return data
