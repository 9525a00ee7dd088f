"""Writing a plot PNG into an experiment's plots/ folder without following symlinks.

The folder and the file names come from a checkout a pull request can change: a
symlink committed as ``plots/`` or as ``plots/learning_rate.png`` would otherwise make
``report --notes`` (run by CI) overwrite whatever it points at. The folder is opened
with ``O_NOFOLLOW | O_DIRECTORY`` and the file relative to it with ``O_NOFOLLOW``, so
either symlink makes the write fail instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sweepctl.errors import SweepctlError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_png(figure: Figure, folder: Path, file_name: str,
             description: str | None = None) -> Path:
    """Write ``figure`` as ``folder/file_name`` (folder created); refuse any symlink.
    ``description`` goes into the PNG's Description text chunk (see read_description)."""
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
            figure.savefig(handle, format="png",
                           metadata={"Software": None, "Description": description})
    except OSError as exc:
        raise SweepctlError(f"cannot write {path}: {exc.strerror} (a symlink is refused)"
                            ) from exc
    finally:
        os.close(directory)
    return path


def set_margins(figure: Figure, *, left: float, right: float, bottom: float, top: float,
                gap: float = 0.0) -> None:
    """Fixed margins in inches (``gap``: between side-by-side panels). ``tight_layout``
    would fit them to the drawn text, but it draws the figure once more to measure it: it
    was half of each PNG's cost, and a first report of 1,000 experiments draws 2,000."""
    width, height = figure.get_size_inches()
    columns = max(1, len(figure.axes))
    panel = (width - left - right - gap * (columns - 1)) / columns
    figure.subplots_adjust(left=left / width, right=1 - right / width,
                           bottom=bottom / height, top=1 - top / height,
                           wspace=gap / panel if panel > 0 else 0.2)


# layout -> a figure of it, made once in this process and cleared for each plot
_KEPT: dict[str, Figure] = {}


@contextmanager
def kept_figure(layout: str, make: Callable[[], Figure]) -> Iterator[Figure]:
    """A blank figure of ``layout`` (``make`` builds one): the one this process drew the
    last plot of that layout on, cleared, else a new one. A first report draws 2,000
    plots, and a new figure's axes, ticks and tick labels were a third of each PNG's
    cost. Cleared is as good as new: the PNG is byte for byte the one a new figure draws
    (tested). A plot that raises does not give its figure back, so whatever state it left
    never reaches the next one; a nested use gets a new figure. One thread draws."""
    figure = _KEPT.pop(layout, None)
    if figure is None:
        figure = make()
    else:
        _clear(figure)
    yield figure
    _KEPT[layout] = figure


def _clear(figure: Figure) -> None:
    """Undo what the plots drawn here (``curves._draw``, ``sensitivity._plot``) change:
    their artists, error-bar containers and legend gone, the axes autoscaled from a new
    axes' view with automatic ticks and the first colour of the cycle; titles and labels
    are set again by each plot. Not reset (no plot of ours changes them): scales, minor
    ticks, margins, tick_params, grid, aspect, figure-level texts but the suptitle. A
    plot that changes one of those must reset it here, and the byte-for-byte tests cover
    it."""
    from matplotlib.ticker import AutoLocator, ScalarFormatter

    for axes in figure.axes:
        for artist in [*axes.lines, *axes.collections, *axes.texts, *axes.patches,
                       *axes.images, *axes.tables, *axes.artists]:
            artist.remove()
        axes.containers.clear()
        if axes.legend_ is not None:
            axes.legend_.remove()
        axes.set_prop_cycle(None)
        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_locator(AutoLocator())
            axis.set_major_formatter(ScalarFormatter())
        axes.relim()                        # no data left: a null data box
        axes.set_xlim(0, 1, auto=True)      # a new axes' view, autoscaled
        axes.set_ylim(0, 1, auto=True)


def source_key(data: object) -> str:
    """A short name for what a plot is drawn from (JSON-able data): kept in the PNG by
    save_png(description=...), it lets a report skip drawing the same picture again."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=True, default=repr)
    return "sweepctl " + hashlib.sha256(text.encode("ascii")).hexdigest()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT = 4096


def read_description(folder: Path, file_name: str) -> str | None:
    """The Description text chunk of ``folder/file_name`` as save_png wrote it; None when
    the file is missing, a symlink (or in one), not a PNG, or has none. Only the chunks
    before the image data are read."""
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        descriptor = os.open(file_name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=directory)
        with os.fdopen(descriptor, "rb") as handle:
            if handle.read(8) != PNG_SIGNATURE:
                return None
            while True:
                head = handle.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind == b"IDAT" or length > MAX_TEXT:
                    return None
                data = handle.read(length + 4)[:length]   # and the CRC
                key, _, value = data.partition(b"\0")
                if kind == b"tEXt" and key == b"Description":
                    return value.decode("latin-1")
    except OSError:
        return None
    finally:
        os.close(directory)
