"""notes.md's generated block: sweepctl writes only between the two markers.

Every byte outside the markers survives (the file is handled as bytes, decoded with
surrogateescape so even invalid UTF-8 round-trips), the write is atomic (temp file in
the same folder + os.replace), and malformed markers stop the write with a
``path:line:col: error:`` message instead of guessing.

No symlink is followed: a notes.md (or plot, or their folder) that is a symlink would
read /proc/self/environ or .git/config into a file the scheduled report commits, or
write outside the repository. It is refused and its target left untouched
(lstat + O_NOFOLLOW); plots are written by ``results/pngfile.save_png``, which refuses
a linked plots/ or plot the same way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from pathlib import Path

from sweepctl.errors import SpecError, SweepctlError

BEGIN = "<!-- sweepctl:results:begin -->"
END = "<!-- sweepctl:results:end -->"
RULE = "notes-markers"


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def _fenced_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the closed fenced code blocks (CommonMark fences).

    A marker shown in a code block (notes that document sweepctl, a pasted example) is
    text, not a marker. An unclosed fence hides nothing: otherwise the block appended
    at the end would land inside it and a new one would be appended on every write.
    """
    spans: list[tuple[int, int]] = []
    opened: tuple[int, str] | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line.rstrip("\r\n"))
        if match is not None:
            fence, rest = match.group(1), match.group(2)
            if opened is None:
                if not (fence[0] == "`" and "`" in rest):  # a backtick fence's info string
                    opened = (offset, fence)
            elif fence[0] == opened[1][0] and len(fence) >= len(opened[1]) and not rest.strip():
                spans.append((opened[0], offset + len(line)))
                opened = None
        offset += len(line)
    return spans


def _occurrences(text: str, marker: str) -> list[int]:
    """Where ``marker`` stands as a marker: not in a fenced code block, not in `code`."""
    spans = _fenced_spans(text) if ("```" in text or "~~~" in text) else []
    found, start = [], 0
    while (at := text.find(marker, start)) != -1:
        start = at + len(marker)
        quoted = text[at - 1:at] == "`" and text[start:start + 1] == "`"
        if not quoted and not any(low <= at < high for low, high in spans):
            found.append(at)
    return found


def find_block(text: str, path: Path) -> tuple[int, int] | None:
    """(start, end) of the text between the markers, or None when there are none."""
    begins, ends = _occurrences(text, BEGIN), _occurrences(text, END)

    def fail(offset: int, message: str) -> SpecError:
        line, col = _position(text, offset)
        return SpecError(message, path, line, col, RULE)

    if len(begins) > 1:
        raise fail(begins[1], f"duplicate {BEGIN} (the first is on line "
                              f"{_position(text, begins[0])[0]}); keep one pair of markers")
    if len(ends) > 1:
        raise fail(ends[1], f"duplicate {END} (the first is on line "
                            f"{_position(text, ends[0])[0]}); keep one pair of markers")
    if begins and not ends:
        raise fail(begins[0], f"{BEGIN} has no matching {END}")
    if ends and not begins:
        raise fail(ends[0], f"{END} has no matching {BEGIN}")
    if not begins:
        return None
    if ends[0] < begins[0]:
        raise fail(ends[0], f"{END} comes before {BEGIN}")
    return begins[0] + len(BEGIN), ends[0]


def splice(text: str, block: str, path: Path) -> str:
    """The new text: ``block`` between the markers, appended with them when missing."""
    body = "\n" + block.strip("\n") + "\n"
    span = find_block(text, path)
    if span is not None:
        start, end = span
        return text[:start] + body + text[end:]
    separator = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n")
                                                              else "\n\n")
    return f"{text}{separator}{BEGIN}{body}{END}\n"


def refuse_links(path: Path) -> os.stat_result | None:
    """lstat of ``path`` (None when missing); refuses a symlink or special file, and a
    folder that is a symlink."""
    try:
        folder = os.lstat(path.parent)
    except FileNotFoundError:
        folder = None
    except OSError as exc:
        raise SweepctlError(f"cannot read {path.parent}: {exc.strerror}") from exc
    if folder is not None and not stat.S_ISDIR(folder.st_mode):
        raise SweepctlError(f"{path.parent} is a symlink or not a folder; refusing to write "
                            "through it")
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SweepctlError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(found.st_mode):
        kind = "a symlink" if stat.S_ISLNK(found.st_mode) else "not a regular file"
        raise SweepctlError(f"{path} is {kind}; refusing to read or replace it (make it a "
                            "regular file)")
    return found


def read_text(path: Path) -> str:
    if refuse_links(path) is None:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink since the lstat
            raise SweepctlError(f"{path} is a symlink; refusing to read or replace it") from exc
        raise SweepctlError(f"cannot read {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode("utf-8", "surrogateescape")


def check_markers(path: Path) -> None:
    """Raise the ``path:line:col`` error for malformed markers before any other work."""
    find_block(read_text(path), path)


def _new_file_mode() -> int:
    # mkstemp creates 0600; a new notes.md should get what `open()` would give it
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, data: bytes) -> None:
    found = refuse_links(path)
    mode = found.st_mode & 0o7777 if found is not None else _new_file_mode()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise SweepctlError(f"cannot write {path}: {exc.strerror}") from exc


def write_block(path: Path, block: str) -> bool:
    """Put ``block`` between the markers of ``path``; True when the file changed."""
    text = read_text(path)
    new = splice(text, block, path)
    if new == text and os.path.lexists(path):
        return False
    atomic_write(path, new.encode("utf-8", "surrogateescape"))
    return True
