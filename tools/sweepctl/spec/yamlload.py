"""A safe YAML loader that remembers where every node came from.

pyyaml's C composer builds the node tree (fast); we construct plain data from it
ourselves so that each value keeps its line:col, duplicate keys are caught, aliases
cannot blow up memory, and only plain data (maps, lists, str, int, float, bool,
null) comes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from sweepctl.errors import SpecError

try:  # the C loader is ~10x faster; fall back to pure Python where libyaml is missing
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 100

Key = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
# YAML 1.1 reads `012` as octal, so only a lone 0 or no leading zero takes the fast path
_DECIMAL = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_PLAIN_FLOAT = re.compile(r"^[-+]?[0-9]*\.[0-9]+(?:[eE][-+]?[0-9]+)?$")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False,
          "FALSE": False}
_PLAIN_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
# YAML 1.1 reads `1e-4` (no dot) as a string; every ML config means a float.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$")


class Mark(NamedTuple):
    # a NamedTuple, not a dataclass: one is made per node, and this builds ~3x faster
    line: int
    col: int


@dataclass
class Document:
    """Plain data from one YAML file plus the position of every key and value."""

    path: Path
    data: Any
    values: dict[Key, Mark] = field(default_factory=dict)
    keys: dict[Key, Mark] = field(default_factory=dict)

    def mark(self, key: Key) -> Mark:
        """Position of the value at ``key``, or of its nearest ancestor that exists."""
        return self._nearest(self.values, key)

    def key_mark(self, key: Key) -> Mark:
        """Position of the mapping key itself (falls back to the value, then ancestors)."""
        if key in self.keys:
            return self.keys[key]
        return self._nearest(self.values, key)

    @staticmethod
    def _nearest(table: dict[Key, Mark], key: Key) -> Mark:
        for end in range(len(key), -1, -1):
            found = table.get(key[:end])
            if found is not None:
                return found
        return Mark(1, 1)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, path: Path, loader: yaml.SafeLoader) -> None:
        self.path = path
        self.loader = loader
        self.values: dict[Key, Mark] = {}
        self.keys: dict[Key, Mark] = {}
        self.count = 0
        self.open_nodes: set[int] = set()

    def fail(self, node: yaml.Node, message: str, rule: str) -> SpecError:
        mark = _mark(node)
        return SpecError(message, self.path, mark.line, mark.col, rule)

    def build(self, node: yaml.Node, key: Key) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"document expands to more than {MAX_NODES} nodes "
                            "(anchors and aliases are limited)", "yaml-alias-bomb")
        if len(key) > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels", "yaml-too-deep")
        self.values.setdefault(key, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        # `&a [*a]` makes a node its own child: refuse it instead of recursing into it
        if id(node) in self.open_nodes:
            raise self.fail(node, "an alias refers to its own anchor (a recursive structure)",
                            "yaml-alias-bomb")
        self.open_nodes.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, key)
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.fail(node, f"tag {node.tag!r} is not plain data", "yaml-tag")
            return [self.build(item, (*key, i)) for i, item in enumerate(node.value)]
        finally:
            self.open_nodes.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, key: Key) -> dict[str, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            raise self.fail(node, f"tag {node.tag!r} is not plain data", "yaml-tag")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(key_node, "merge keys (<<) are not supported; write the "
                                "keys out", "yaml-tag")
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "mapping keys must be plain strings", "yaml-key-type")
            name = self._scalar(key_node)
            if not isinstance(name, str):
                # `1: x` or `true: x` would silently become non-string keys
                name = str(key_node.value)
            if name in result:
                first = self.keys[(*key, name)]
                raise self.fail(key_node, f"duplicate key {name!r} (first defined at line "
                                f"{first.line})", "yaml-duplicate-key")
            self.keys[(*key, name)] = _mark(key_node)
            result[name] = self.build(value_node, (*key, name))
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        tag = node.tag
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"tag {tag!r} is not plain data", "yaml-tag")
        if tag not in _PLAIN_TAGS:
            if tag == "tag:yaml.org,2002:timestamp":
                return node.value  # keep dates as written; JSON has no date type
            raise self.fail(node, f"tag {tag!r} is not plain data", "yaml-tag")
        if tag == _STR:
            if not node.style and _EXPONENT_FLOAT.match(node.value):  # C loader: "", Python: None
                return float(node.value.replace("_", ""))
            return node.value
        value = node.value
        if tag == _NULL:
            return None
        if tag == _BOOL and value in _BOOLS:
            return _BOOLS[value]
        try:
            # fast paths for the common spellings; everything else (0x1f, 0o17, 1_000, 1:30,
            # .inf, yes/no) goes through pyyaml's own constructors
            if tag == _INT and _DECIMAL.match(value):
                return int(value)
            if tag == _FLOAT and _PLAIN_FLOAT.match(value):
                return float(value)
            return self.loader.construct_object(node)
        except (ValueError, KeyError, TypeError, OverflowError):
            # pyyaml's constructors trust the resolver: `0b_`, `!!int x`, `!!bool maybe` and
            # integers past Python's 4300-digit limit raise plain Python errors
            kind = tag.rsplit(":", 1)[-1]
            raise self.fail(node, f"{_clip(node.value)!r} is not a valid {kind}",
                            "yaml-value") from None


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", path, line,
                        col, "yaml-encoding") from None


def _text_position(text: str, index: int) -> tuple[int, int]:
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


_UNCLOSED = {"']'": "a '[' list", "'}'": "a '{' mapping"}
_SYNTAX_HINTS = {
    "mapping values are not allowed": "a ':' inside a value, or a mis-indented key: quote a "
    "value that contains ': ' (title: 'LoRA: a study'), or line the key up with the keys "
    "above it",
    "did not find expected key": "this line is indented differently from the keys above it "
    "(or a '- item' sits among keys): line up the keys of one mapping",
    "did not find expected '-' indicator": "a key where the list above expects '- item' "
    "entries: indent it under an item, or line it up with the list's own key",
    "could not find expected ':'": "this line is a key without ':' (or a value continued "
    "without indentation): add ': value' or indent the continuation",
    "found undefined alias": "'*' starts an alias to an '&' anchor that is not defined: "
    "quote the value if the '*' is meant literally",
}


def _plain_syntax(exc: yaml.MarkedYAMLError, text: str) -> tuple[str, Any]:
    """pyyaml's problem in plain words, and the mark where it most likely went wrong (the
    opening '[' of an unclosed list, not the line after it)."""
    problem = str(exc.problem or exc.context or "invalid YAML")
    context = str(exc.context or "")
    for closer, what in _UNCLOSED.items():
        if problem.endswith(f"or {closer}") and exc.context_mark is not None:
            return (f"{what} opened here is not closed: add the missing {closer} (or a ',' "
                    "between its items)"), exc.context_mark
    if "quoted scalar" in context and "end of stream" in problem:
        return ("this quoted value is never closed: add the closing quote",
                exc.context_mark or exc.problem_mark)
    if "but found another document" in problem:
        return "only one YAML document per file (found a second '---')", exc.problem_mark
    mark = exc.problem_mark or exc.context_mark
    if "cannot start any token" in problem and mark is not None:
        char = text[mark.index] if 0 <= mark.index < len(text) else ""
        if char == "\t":
            return "a tab character: YAML indents with spaces only", mark
        return f"{char!r} cannot start a plain value: quote the value", mark
    if "could not find expected ':'" in problem and exc.context_mark is not None:
        mark = exc.context_mark  # the key line itself, not the line after it
    for words, hint in _SYNTAX_HINTS.items():
        if words in problem:
            return hint, mark
    return problem, mark


def parse_document(raw: bytes, path: Path) -> Document:
    """Parse YAML bytes into a ``Document``; every problem is a ``SpecError``."""
    if len(raw) > MAX_BYTES:
        raise SpecError(f"file is {len(raw)} bytes; the limit is {MAX_BYTES} (1 MiB)", path, 1,
                        1, "yaml-too-large")
    text = _decode(raw, path)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(path, None)
        builder = _Builder(path, loader)
        data = builder.build(node, ())
        return Document(path, data, builder.values, builder.keys)
    except yaml.MarkedYAMLError as exc:
        problem, mark = _plain_syntax(exc, text)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        rule = "yaml-syntax"
        if "maximum nesting depth" in problem:  # libyaml's own limit (1000 levels)
            problem, rule = f"nesting deeper than {MAX_DEPTH} levels", "yaml-too-deep"
        raise SpecError(problem, path, line, col, rule) from None
    except yaml.reader.ReaderError as exc:
        line, col = _text_position(text, exc.position)
        char = exc.character
        code = char if isinstance(char, int) else ord(str(char)[:1] or "\0")
        raise SpecError(f"character U+{code:04X} is not allowed in YAML ({exc.reason})",
                        path, line, col, "yaml-encoding") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", path, 1, 1, "yaml-syntax") from None
    except RecursionError:
        raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", path, 1, 1,
                        "yaml-too-deep") from None
    finally:
        loader.dispose()


def load_document(path: Path) -> Document:
    """Read and parse one YAML file, refusing oversized files before reading them whole."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SpecError(f"file is {size} bytes; the limit is {MAX_BYTES} (1 MiB)", path, 1,
                            1, "yaml-too-large")
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror}", path, 1, 1, "file-read") from None
    return parse_document(raw, path)
