"""The YAML loader: positions, what it refuses, and properties over random input.

The properties feed random bytes and random (optionally mutated) YAML documents to
the loader and to ``validate_paths``: the only acceptable outcome besides data is a
``SpecError`` / a reported finding, never another exception.
"""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweepctl.errors import SpecError
from sweepctl.spec.scaffold import scaffold
from sweepctl.spec.validate import validate_paths
from sweepctl.spec.yamlload import MAX_BYTES, Mark, load_document, parse_document

P = Path("exp/baseline.yaml")


def parse(text: str | bytes) -> Any:
    raw = text.encode() if isinstance(text, str) else text
    return parse_document(raw, P)


def error_of(text: str | bytes) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text)
    return info.value


# --- positions -------------------------------------------------------------------------------

def test_values_and_keys_keep_line_and_col() -> None:
    doc = parse("a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 2\n")
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"], "d": [{"e": 2}]}}
    assert doc.mark(("a",)) == Mark(1, 4)
    assert doc.key_mark(("a",)) == Mark(1, 1)
    assert doc.key_mark(("b", "c")) == Mark(3, 3)
    assert doc.mark(("b", "c", 1)) == Mark(3, 10)
    assert doc.mark(("b", "d", 0, "e")) == Mark(5, 10)
    assert doc.key_mark(("b", "d", 0, "e")) == Mark(5, 7)


def test_missing_key_falls_back_to_nearest_ancestor() -> None:
    doc = parse("a:\n  b: 1\n")
    assert doc.mark(("a", "zzz", 3)) == doc.mark(("a",)) == Mark(2, 3)
    assert doc.mark(("nothing",)) == Mark(1, 1)


def test_error_positions_are_one_based() -> None:
    err = error_of("a: 1\nb: [1, 2\n")
    assert err.rule == "yaml-syntax"
    assert err.line >= 2
    assert str(err).startswith(f"{P}:{err.line}:{err.col}: error: ")


def test_empty_and_comment_only_files_are_none() -> None:
    assert parse("").data is None
    assert parse("# only a comment\n").data is None


# --- what it refuses -------------------------------------------------------------------------

def test_duplicate_key_names_both_lines() -> None:
    err = error_of("lora_rank: 8\nseed: 1\nlora_rank: 16\n")
    assert (err.line, err.col, err.rule) == (3, 1, "yaml-duplicate-key")
    assert "duplicate key 'lora_rank' (first defined at line 1)" in str(err)


def test_nested_duplicate_key() -> None:
    err = error_of("a:\n  b: 1\n  b: 2\n")
    assert (err.line, err.col, err.rule) == (3, 3, "yaml-duplicate-key")


@pytest.mark.parametrize(("text", "col"), [
    ("a: !!python/object:os.system ls\n", 4),
    ("a: !!python/name:os.system\n", 4),
    ("a: !custom 1\n", 4),
    ("a: !!binary aGVsbG8=\n", 4),
    ("a: !!set {x}\n", 4),
    ("a: !!omap [b: 1]\n", 4),
    ("!!python/tuple [1, 2]\n", 1),
])
def test_tags_that_are_not_plain_data(text: str, col: int) -> None:
    err = error_of(text)
    assert (err.line, err.col, err.rule) == (1, col, "yaml-tag")
    assert "is not plain data" in str(err)


def test_merge_keys_are_refused() -> None:
    err = error_of("base: &b {a: 1}\nother:\n  <<: *b\n")
    assert (err.line, err.rule) == (3, "yaml-tag")


def test_plain_tags_are_allowed() -> None:
    assert parse("a: !!str 1\nb: !!float 2\nc: !!int '3'\n").data == {"a": "1", "b": 2.0, "c": 3}


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    err = error_of("\n".join(lines) + "\n")
    assert err.rule == "yaml-alias-bomb"


def test_recursive_alias_is_refused() -> None:
    assert error_of("&a [*a]\n").rule == "yaml-alias-bomb"
    assert error_of("a: &x {b: *x}\n").rule == "yaml-alias-bomb"


def test_small_aliases_are_fine() -> None:
    assert parse("a: &x [1, 2]\nb: *x\n").data == {"a": [1, 2], "b": [1, 2]}


def test_non_utf8_names_the_byte_and_place() -> None:
    err = error_of(b"a: 1\nb: caf\xe9\n")
    assert (err.line, err.col, err.rule) == (2, 7, "yaml-encoding")
    assert "0xe9" in str(err)


def test_control_character_is_positioned() -> None:
    err = error_of("a: 1\nb: x\x00\n")
    assert (err.line, err.col, err.rule) == (2, 5, "yaml-encoding")
    assert "U+0000" in str(err)


def test_utf8_bom_is_accepted() -> None:
    assert parse(b"\xef\xbb\xbfa: 1\n").data == {"a": 1}


def test_file_over_one_mib_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "baseline.yaml"
    big.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(SpecError) as info:
        load_document(big)
    assert info.value.rule == "yaml-too-large"
    assert "limit is 1048576 (1 MiB)" in str(info.value)
    assert error_of(b"a: 1\n" + b"#" * MAX_BYTES).rule == "yaml-too-large"


def test_exactly_one_mib_is_allowed() -> None:
    raw = b"a: 1\n#" + b"x" * (MAX_BYTES - 7) + b"\n"
    assert len(raw) == MAX_BYTES
    assert parse(raw).data == {"a": 1}


def test_unreadable_file_is_a_finding(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_document(tmp_path / "missing.yaml")
    assert info.value.rule == "file-read"


def test_multi_document_is_refused_at_the_second_document() -> None:
    err = error_of("a: 1\n---\nb: 2\n")
    assert (err.line, err.rule) == (2, "yaml-syntax")
    assert "only one YAML document per file" in str(err)


def test_explicit_single_document_markers_are_fine() -> None:
    assert parse("---\na: 1\n...\n").data == {"a": 1}


def test_deep_nesting_is_refused() -> None:
    assert error_of("[" * 150 + "]" * 150).rule == "yaml-too-deep"
    assert error_of("[" * 5000).rule == "yaml-too-deep"


@pytest.mark.parametrize("text", ["a: 0b_\n", "a: 0x_\n", "a: !!int x\n", "a: !!bool maybe\n",
                                  "a: !!float x\n", "a: " + "1" * 5000 + "\n"])
def test_invalid_scalars_are_findings(text: str) -> None:
    err = error_of(text)
    assert (err.line, err.col, err.rule) == (1, 4, "yaml-value")


def test_complex_keys_are_refused() -> None:
    assert error_of("? [a, b]\n: 1\n").rule == "yaml-key-type"


# --- what it reads ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("1e-4", 1e-4), ("1.0e-4", 1e-4), ("2E5", 2e5), ("-3e+2", -300.0), ("1_0e2", 1000.0),
    (".5e1", 5.0), ("1e5", 1e5), ("5", 5), ("0.1", 0.1), ("true", True), ("null", None),
    ("'1e-4'", "1e-4"), ('"2e5"', "2e5"), ("1e-4x", "1e-4x"), ("2024-01-01", "2024-01-01"),
])
def test_scalars(text: str, value: Any) -> None:
    got = parse(f"v: {text}\n").data["v"]
    assert got == value
    assert type(got) is type(value)


def test_non_string_keys_become_strings() -> None:
    assert parse("1: a\ntrue: b\n~: c\n").data == {"1": "a", "true": "b", "~": "c"}


# --- properties ------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
keys = st.text(min_size=1, max_size=12)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)
# text fragments that stress the parser: anchors, aliases, tags, flow, block scalars, markers
fragments = st.sampled_from(["&a ", "*a", "!!python/object ", "!t ", "<<: ", "---\n", "...\n",
                             "[", "]", "{", "}", ": ", "- ", "? ", "|\n", ">-\n", "\t", "#",
                             "'", '"', "\\", "%YAML 1.1\n", "\x00", "\ufeff", "0b_", "1e-4",
                             "\n  ", ",", "!!int x", "&a [*a]"])


@st.composite
def mutated_yaml(draw: st.DrawFn) -> bytes:
    text = yaml.safe_dump(draw(documents), allow_unicode=draw(st.booleans()),
                          default_flow_style=draw(st.sampled_from([None, True, False])))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        frag = draw(fragments)
        if action == "insert":
            text = text[:at] + frag + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)):]
        else:
            text = text[:at] + frag + text[at + len(frag):]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


def loads_or_spec_error(raw: bytes) -> None:
    try:
        doc = parse_document(raw, P)
    except SpecError as exc:
        assert exc.line >= 1 and exc.col >= 1
        assert exc.rule.startswith("yaml-")
        assert "\n" not in str(exc)
        return
    for mark in [*doc.values.values(), *doc.keys.values()]:
        assert mark.line >= 1 and mark.col >= 1


@given(st.binary(max_size=400))
def test_random_bytes_load_or_report(raw: bytes) -> None:
    loads_or_spec_error(raw)


def same_as_pyyaml(ours: Any, theirs: Any) -> bool:
    """Equal to yaml.safe_load's reading, but for our two deliberate differences."""
    if isinstance(theirs, dict):
        return (isinstance(ours, dict) and list(ours) == [str(k) for k in theirs]
                and all(same_as_pyyaml(o, t) for o, t in zip(ours.values(), theirs.values(),
                                                             strict=True)))
    if isinstance(theirs, list):
        return (isinstance(ours, list) and len(ours) == len(theirs)
                and all(same_as_pyyaml(o, t) for o, t in zip(ours, theirs, strict=True)))
    if isinstance(theirs, datetime.date):  # dates stay as written
        return isinstance(ours, str)
    if isinstance(theirs, str) and isinstance(ours, float):  # `1e-4` is a float
        return float(theirs.replace("_", "")) == ours
    return type(ours) is type(theirs) and ours == theirs


@given(documents)
def test_dumped_documents_read_like_pyyaml(data: Any) -> None:
    dumped = yaml.safe_dump(data, allow_unicode=True)
    doc = parse_document(dumped.encode(), P)
    assert same_as_pyyaml(doc.data, yaml.safe_load(dumped))


@given(mutated_yaml())
@settings(max_examples=300)
def test_mutated_documents_load_or_report(raw: bytes) -> None:
    loads_or_spec_error(raw)


@pytest.fixture(scope="module")
def valid_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scaffold(tmp_path_factory.mktemp("valid") / "experiments", "prop-test")


KINDS = ("experiment.yaml", "baseline.yaml", "sweep.yaml", "checklist.yaml")


@given(kind=st.sampled_from(KINDS),
       raw=st.one_of(mutated_yaml(), st.binary(max_size=200),
                     documents.map(lambda d: yaml.safe_dump(d).encode())))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_validate_reports_any_file_content_as_findings(valid_folder: Path, tmp_path: Path,
                                                       kind: str, raw: bytes) -> None:
    folder = tmp_path / "experiments" / "prop-test"
    shutil.rmtree(folder.parent, ignore_errors=True)
    shutil.copytree(valid_folder, folder)
    (folder / kind).write_bytes(raw)
    result = validate_paths([folder.parent])  # anything but a finding is a bug
    assert result.checked_folders == 1
    for finding in result.findings:
        assert finding.line >= 1 and finding.col >= 1
        assert "\n" not in finding.message


@given(data=st.fixed_dictionaries({}, optional={
    "lora_rank": documents, "learning_rate": documents, "seed": documents,
    "strategy": documents, "parameters": documents, "derived": documents, "trials": documents,
    "name": documents, "budget": documents, "objective": documents, "dataset": documents,
    "seed_set": documents, "baseline_defined": documents}),
    kind=st.sampled_from(KINDS))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_validate_survives_wrongly_typed_known_keys(valid_folder: Path, tmp_path: Path,
                                                   data: dict[str, Any], kind: str) -> None:
    # schema-shaped documents with random values reach the semantic rules, not just the schema
    folder = tmp_path / "experiments" / "prop-test"
    shutil.rmtree(folder.parent, ignore_errors=True)
    shutil.copytree(valid_folder, folder)
    base = yaml.safe_load((folder / kind).read_text())
    (folder / kind).write_text(yaml.safe_dump({**base, **data}))
    validate_paths([folder.parent])


@pytest.mark.parametrize("text", ["012", "0x1f", "0o17", "0b101", "1_000", "1:30", "+5", "-0",
                                  "0", "007", ".inf", "-.inf", "1.5", "-.5", "1.", "+1.5e-3",
                                  "yes", "Off", "TRUE", "~", "Null", "1.0e4", "6.02e+23"])
def test_numbers_and_bools_read_as_yaml_1_1(text: str) -> None:
    # the loader's fast paths must agree with pyyaml wherever pyyaml gives a number/bool/null
    ours = parse(f"v: {text}\n").data["v"]
    theirs = yaml.safe_load(f"v: {text}\n")["v"]
    if isinstance(theirs, str) and isinstance(ours, float):
        assert float(theirs) == ours  # `1.0e4`: the deliberate float reading
    else:
        assert (type(ours), ours) == (type(theirs), theirs)


@pytest.mark.parametrize(("text", "line", "col", "words"), [
    # a missing ']' is reported at the '[' that opened the list, not the line after it
    ("a: 1\nb: [1, 2\nc: 3\n", 2, 4,
     "a '[' list opened here is not closed: add the missing ']' (or a ',' between its items)"),
    ("a: {x: 1, y: 2\nc: 3\n", 1, 4,
     "a '{' mapping opened here is not closed: add the missing '}' (or a ',' between its "
     "items)"),
    ("title: LoRA: a study\n", 1, 12,
     "a ':' inside a value, or a mis-indented key: quote a value that contains ': ' (title: "
     "'LoRA: a study'), or line the key up with the keys above it"),
    ("a:\n  b: 1\n   c: 2\n", 3, 5, "a ':' inside a value, or a mis-indented key"),
    ("a:\n    b: 1\n  c: 2\n", 3, 3,
     "this line is indented differently from the keys above it (or a '- item' sits among "
     "keys): line up the keys of one mapping"),
    ("a:\n\tb: 1\n", 2, 1, "a tab character: YAML indents with spaces only"),
    ("a: @x\n", 1, 4, "'@' cannot start a plain value: quote the value"),
    ("a: 'abc\nb: 2\n", 1, 4, "this quoted value is never closed: add the closing quote"),
    ("a: 1\nb\nc: 2\n", 2, 1, "this line is a key without ':'"),
    ("a: *x\n", 1, 4, "'*' starts an alias to an '&' anchor that is not defined"),
    ("- a\nb: 1\n", 2, 1, "a key where the list above expects '- item' entries"),
])
def test_syntax_errors_say_what_is_likely_wrong(text: str, line: int, col: int,
                                                words: str) -> None:
    err = error_of(text)
    assert (err.line, err.col, err.rule) == (line, col, "yaml-syntax")
    assert str(err.args[0]).startswith(words)


@given(before=st.integers(min_value=0, max_value=5), items=st.lists(
    st.integers(min_value=-99, max_value=99), min_size=1, max_size=4),
    after=st.integers(min_value=0, max_value=5))
def test_an_unclosed_list_is_reported_where_it_opens(before: int, items: list[int],
                                                     after: int) -> None:
    # wherever the list sits and whatever follows it, the finding is at its '['
    lines = [f"k{i}: {i}" for i in range(before)]
    lines.append("values: [" + ", ".join(map(str, items)))
    lines += [f"z{i}: {i}" for i in range(after)]
    err = error_of("\n".join(lines) + "\n")
    assert (err.line, err.col, err.rule) == (before + 1, len("values: ") + 1, "yaml-syntax")
    assert str(err.args[0]).startswith("a '[' list opened here is not closed")
