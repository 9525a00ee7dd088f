"""notes.md's generated block: bytes outside the markers survive every write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sweepctl.clients.notes_file import BEGIN, END, check_markers, write_block
from sweepctl.errors import SpecError, SweepctlError

# Backticks and ~~~ could put the markers inside a code fence or `code`, where they are
# text, not markers (tested on their own below).
no_markers = st.text(max_size=200).filter(
    lambda t: BEGIN not in t and END not in t and "`" not in t and "~~~" not in t)
blocks = st.text(min_size=1, max_size=80).filter(
    lambda t: BEGIN not in t and END not in t and t.strip("\n") != "")


@settings(max_examples=60, deadline=None)
@given(before=no_markers, inside=no_markers, after=no_markers,
       writes=st.lists(blocks, min_size=1, max_size=4))
def test_every_byte_outside_the_markers_survives(before: str, inside: str, after: str,
                                                 writes: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "notes.md"
        head = before.encode("utf-8", "surrogatepass") + BEGIN.encode()
        tail = END.encode() + after.encode("utf-8", "surrogatepass")
        path.write_bytes(head + inside.encode("utf-8", "surrogatepass") + tail)
        for block in writes:
            write_block(path, block)
            data = path.read_bytes()
            assert data.startswith(head) and data.endswith(tail)
            middle = data[len(head):len(data) - len(tail)]
            assert middle == ("\n" + block.strip("\n") + "\n").encode("utf-8", "surrogatepass")


def test_invalid_utf8_outside_the_markers_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    original = b"\xff\xfe caf\xe9\r\n" + BEGIN.encode() + b"old" + END.encode() + b"\r\n\x80"
    path.write_bytes(original)
    write_block(path, "new table")
    assert path.read_bytes() == original.replace(b"old", b"\nnew table\n")


def test_created_when_missing_and_appended_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    assert write_block(path, "table") is True
    assert path.read_text() == f"{BEGIN}\ntable\n{END}\n"
    path.write_text("# My notes\nno markers yet")
    write_block(path, "table")
    assert path.read_text() == f"# My notes\nno markers yet\n\n{BEGIN}\ntable\n{END}\n"
    assert write_block(path, "table") is False  # same content: the file is left alone


def test_the_write_is_atomic_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(f"a\n{BEGIN}\n{END}\n")
    os.chmod(path, 0o640)
    write_block(path, "x")
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.md"]  # no temp file left over


@pytest.mark.parametrize(("text", "where", "message"), [
    (f"a\n{BEGIN}\nb\n{END}\n  {BEGIN}\n{END}\n", ":5:3:", "duplicate"),
    (f"a\n{BEGIN}\n{END}\n{END}\n", ":4:1:", "duplicate"),
    (f"intro\n{END}\nx\n{BEGIN}\n", ":2:1:", "comes before"),
    (f"intro\n\n    {BEGIN}\nno end\n", ":3:5:", "has no matching"),
    (f"{END}\n", ":1:1:", "has no matching"),
])
def test_malformed_markers_are_an_error_and_nothing_is_written(
        tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "notes.md"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        check_markers(path)
    assert f"{path}{where} error: " in str(caught.value) and message in str(caught.value)
    assert str(caught.value).endswith("[notes-markers]")
    with pytest.raises(SpecError):
        write_block(path, "table")
    assert path.read_text() == text


FENCED_DOC = (f"# Notes\n\nsweepctl writes between `{BEGIN}` and `{END}`, e.g.:\n\n"
              f"```markdown\n{BEGIN}\n| trial | eval_loss |\n{END}\n```\n\n~~~\n{END}\n~~~\n")


def test_markers_in_code_fences_and_inline_code_are_text(tmp_path: Path) -> None:
    """Notes that show the markers (a fenced example, `inline code`) keep them as text:
    no 'duplicate marker' error, and no results written into the code block."""
    path = tmp_path / "notes.md"
    path.write_bytes(FENCED_DOC.encode())
    check_markers(path)
    write_block(path, "table 1")
    assert path.read_text() == f"{FENCED_DOC}\n{BEGIN}\ntable 1\n{END}\n"
    write_block(path, "table 2")  # the real pair is found again: replaced, not appended
    assert path.read_text() == f"{FENCED_DOC}\n{BEGIN}\ntable 2\n{END}\n"


def test_an_unclosed_fence_hides_no_marker(tmp_path: Path) -> None:
    """Otherwise the appended block would sit inside the open fence and every write would
    append another one."""
    path = tmp_path / "notes.md"
    path.write_text("intro\n```\nunclosed\n")
    write_block(path, "a")
    write_block(path, "b")
    assert path.read_text() == f"intro\n```\nunclosed\n\n{BEGIN}\nb\n{END}\n"


def test_a_new_notes_file_gets_the_usual_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_block(tmp_path / "notes.md", "x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "notes.md").stat().st_mode & 0o777) == "0o644"


def test_a_notes_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """notes.md -> a file outside the repo (or .git/config, /proc/self/environ): reading
    through it would copy the target into a file report.yml commits."""
    secret = tmp_path / "outside" / "credentials"
    secret.parent.mkdir()
    secret.write_text("token=hunter2\n")
    folder = tmp_path / "repo" / "experiments" / "demo"
    folder.mkdir(parents=True)
    notes = folder / "notes.md"
    notes.symlink_to(secret)

    for call in (lambda: check_markers(notes), lambda: write_block(notes, "results")):
        with pytest.raises(SweepctlError, match=r"notes\.md is a symlink; refusing to read"):
            call()
    assert secret.read_text() == "token=hunter2\n" and notes.is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == ["notes.md"]  # no temp file left


def test_a_notes_md_that_is_a_folder_or_in_a_symlinked_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir" / "notes.md").mkdir(parents=True)
    with pytest.raises(SweepctlError, match="is not a regular file"):
        write_block(tmp_path / "dir" / "notes.md", "results")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SweepctlError, match="linked is a symlink or not a folder"):
        write_block(tmp_path / "linked" / "notes.md", "results")
    assert list((tmp_path / "elsewhere").iterdir()) == []
