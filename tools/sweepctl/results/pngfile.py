"""Writing a plot PNG into an experiment's plots/ folder without following symlinks.

The folder and the file names come from a checkout a pull request can change: a
symlink committed as ``plots/`` or as ``plots/learning_rate.png`` would otherwise make
``report --notes`` (run by CI) overwrite whatever it points at. The folder is opened
with ``O_NOFOLLOW | O_DIRECTORY`` and the file relative to it with ``O_NOFOLLOW``, so
either symlink makes the write fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sweepctl.errors import SweepctlError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_png(figure: Figure, folder: Path, file_name: str) -> Path:
    """Write ``figure`` as ``folder/file_name`` (folder created); refuse any symlink."""
    if "/" in file_name or file_name in ("", ".", ".."):
        raise SweepctlError(f"not a plot file name: {file_name!r}")
    path = folder / file_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SweepctlError(f"cannot use {folder} for plots: {exc.strerror} "
                            "(a symlink is refused)") from exc
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        descriptor = os.open(file_name, flags, 0o644, dir_fd=directory)
        with os.fdopen(descriptor, "wb") as handle:
            figure.savefig(handle, format="png", metadata={"Software": None})
    except OSError as exc:
        raise SweepctlError(f"cannot write {path}: {exc.strerror} (a symlink is refused)"
                            ) from exc
    finally:
        os.close(directory)
    return path
