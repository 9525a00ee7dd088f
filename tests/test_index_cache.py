"""The run index kept on disk: it round-trips what MLflow said, and a file that is not
ours (corrupt, another store's, another version, a symlink) is never trusted."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sweepctl.clients import index_cache
from sweepctl.clients.index_cache import Snapshot
from sweepctl.clients.mlflow_store import RunRecord

URI = "http://mlflow.internal:5000"

text = st.text(max_size=40)
records = st.builds(
    lambda run_id, status, tags, params, metrics, start, eid: RunRecord(
        run_id, status, tags.get("sweepctl.trial_id"), tags.get("sweepctl.trial"),
        params=params, metrics=metrics, tags=tags, start_time=start, end_time=None,
        experiment_id=eid, metric_steps={k: 3 for k in metrics}),
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    st.sampled_from(["RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED"]),
    st.dictionaries(st.sampled_from(["sweepctl.trial_id", "sweepctl.trial", "note", "é ✓"]),
                    text),
    st.dictionaries(text, text, max_size=4),
    st.dictionaries(text, st.floats(allow_nan=False), max_size=4),
    st.one_of(st.none(), st.integers(0, 2**53)),
    st.one_of(st.none(), st.text(alphabet="0123456789", min_size=1, max_size=6)))


@settings(max_examples=60, deadline=None)
@given(runs=st.lists(records, max_size=6), parents=st.lists(records, max_size=2),
       due_at=st.dictionaries(st.text(alphabet="0123456789", min_size=1, max_size=6),
                               st.integers(0, 5), max_size=4))
def test_a_snapshot_reads_back_as_written(runs: list[RunRecord], parents: list[RunRecord],
                                          due_at: dict[str, int]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "index"
        snapshot = Snapshot(URI, taken_at=5, runs=tuple(runs), parents=tuple(parents),
                            due_at=due_at)
        assert index_cache.write(folder, snapshot)
        assert index_cache.read(folder, URI) == snapshot
        assert index_cache.decode(index_cache.encode(snapshot)) == snapshot


def test_the_file_names_the_store_without_its_credentials(tmp_path: Path) -> None:
    uri = "https://bot:s3cret-pass@mlflow.internal"
    assert index_cache.write(tmp_path, Snapshot(uri, 1, ()))
    [path] = tmp_path.iterdir()
    assert "s3cret" not in path.read_text() and "s3cret" not in path.name
    assert index_cache.read(tmp_path, uri) is not None
    # rotated credentials keep the file (nothing in its name or content to guess them
    # from); another store never reads this one's runs
    assert index_cache.read(tmp_path, "https://bot:rotated@mlflow.internal") is not None
    assert index_cache.read(tmp_path, "https://mlflow.other") is None


def test_a_file_that_is_not_ours_is_ignored(tmp_path: Path) -> None:
    run = RunRecord("r1", "FINISHED", "t1", "x", tags={"sweepctl.trial_id": "t1"},
                    metrics={"eval_loss": math.pi}, experiment_id="1")
    assert index_cache.write(tmp_path, Snapshot(URI, 1, (run,), due_at={"1": 1}))
    path = index_cache.cache_file(tmp_path, URI)
    good = path.read_text()
    data = json.loads(good)
    for broken in ("{", "[]", json.dumps({**data, "version": 99}),
                   json.dumps({**data, "due_at": {"1": -1}}),
                   json.dumps({**data, "due_at": ["1"]}),
                   json.dumps({**data, "parents": None}),
                   good.replace('"taken_at":1', '"taken_at":Infinity'),
                   good.replace('"runs":[', '"runs":' + "[" * 100_000, 1),
                   good.replace('"eval_loss":3.14', '"eval_loss":"x3.14'),
                   good.replace('"tags":{', '"tags":[{').replace('}},"start', '}],"start'),
                   json.dumps({**json.loads(good), "runs": [{"run_id": "r"}]})):
        path.write_text(broken)
        assert index_cache.read(tmp_path, URI) is None, broken
    path.write_bytes(b"\xff\xfe{} not utf-8")
    assert index_cache.read(tmp_path, URI) is None
    path.write_text(good)
    assert index_cache.read(tmp_path, URI) is not None


def test_a_symlink_is_neither_read_nor_written_through(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere.json"
    assert index_cache.write(folder, Snapshot(URI, 1, ()))
    path = index_cache.cache_file(folder, URI)
    elsewhere.write_text(path.read_text())
    path.unlink()
    path.symlink_to(elsewhere)
    assert index_cache.read(folder, URI) is None
    before = elsewhere.read_text()
    assert index_cache.write(folder, Snapshot(URI, 9, ()))
    assert elsewhere.read_text() == before          # the link was replaced, not followed
    assert not path.is_symlink() and index_cache.read(folder, URI) is not None


def test_a_folder_that_cannot_be_written_loses_nothing_but_the_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "index"
    blocker.write_text("a file where the folder should be")
    assert index_cache.write(blocker, Snapshot(URI, 1, ())) is False
    assert blocker.read_text() == "a file where the folder should be"
    assert list(tmp_path.iterdir()) == [blocker]   # no temporary left behind
