"""Derived parameters: safe arithmetic, clear errors with columns, no eval."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweepctl.sweep.derived import DerivedError, parse


@pytest.mark.parametrize(("source", "values", "expected"), [
    ("2 * lora_rank", {"lora_rank": 16}, 32),
    ("lora_rank // 2", {"lora_rank": 16}, 8),
    ("lora_rank / 2", {"lora_rank": 16}, 8.0),
    ("-(a + b) % 5", {"a": 1, "b": 2}, 2),
    ("2 ** r", {"r": 3}, 8),
    ("3 * lr", {"lr": 0.1}, 0.3),          # not 0.30000000000000004
    ("int(r * 1.5)", {"r": 5}, 7),
    ("round(lr * 3, 4)", {"lr": 0.12345}, 0.3704),
    ("max(16, 2 * r)", {"r": 4}, 16),
    ("min(r, 8, 4)", {"r": 9}, 4),
    ("abs(-r)", {"r": 2}, 2),
    (32, {}, 32),
    (1e-4, {}, 1e-4),
])
def test_evaluates(source: str | int | float, values: dict[str, float], expected: float) -> None:
    assert parse(source).evaluate(values) == expected


def test_names_are_the_parameters_used() -> None:
    assert parse("2 * lora_rank + max(a, b)").names == {"lora_rank", "a", "b"}


@pytest.mark.parametrize(("source", "col", "fragment"), [
    ("2 * ", 4, "invalid expression"),
    ("2 +* 3", 4, "invalid expression"),
    ("__import__('os').system('id')", 1, "only these functions"),
    ("r.bit_length()", 1, "only these functions"),
    ("lora_rank.real", 1, "attribute access"),
    ("r if r else 1", 1, "IfExp"),
    ("r > 1", 1, "a comparison"),
    ("'a' * 3", 1, "only numbers"),
    ("2 * True", 5, "only numbers"),
    ("x[0]", 1, "indexing"),
    ("  r @ r", 3, "this operator"),
    ("max(r)", 1, "max() takes 2-16"),
    ("int(r, base=2)", 1, "int() takes 1"),
    ("max", 1, "is a function"),
    ("lambda: 1", 1, "Lambda"),
    ("", 1, "empty expression"),
])
def test_rejects_with_column(source: str, col: int, fragment: str) -> None:
    with pytest.raises(DerivedError) as caught:
        parse(source)
    assert fragment in caught.value.message
    assert caught.value.col == col


@pytest.mark.parametrize(("source", "values", "col", "fragment"), [
    ("r / 0", {"r": 1}, 1, "division by zero"),
    ("2 * missing", {}, 5, "unknown name 'missing'"),
    ("2 * t", {"t": "q_proj"}, 5, "not a number"),
    ("2 ** (r * 100)", {"r": 1}, 7, "exponent 100 is larger"),
    ("10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60", {}, 1,
     "out of range"),
    ("10 ** -65", {}, 7, "exponent -65 is smaller than -64"),
    # Python's own errors inside an allowed call are the user's mistake, not a crash
    ("int(1e999)", {}, 1, "cannot compute int()"),
    ("2 * round(1e999)", {}, 5, "cannot compute round()"),
    ("round(r, 0.5)", {"r": 8}, 1, "cannot compute round()"),
    ("max(r, 1e999)", {"r": 8}, 1, "max() gives a number out of range"),
])
def test_evaluation_errors(source: str, values: dict[str, object], col: int,
                           fragment: str) -> None:
    with pytest.raises(DerivedError) as caught:
        parse(source).evaluate(values)
    assert fragment in caught.value.message
    assert caught.value.col == col


def test_booleans_and_strings_are_not_expressions() -> None:
    with pytest.raises(DerivedError, match="expected an arithmetic expression"):
        parse(True)


@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_matches_python_arithmetic(a: int, b: int) -> None:
    assert parse("a * 2 + b - 3").evaluate({"a": a, "b": b}) == a * 2 + b - 3
    if b:
        assert parse("a // b").evaluate({"a": a, "b": b}) == a // b
        assert parse("a % b").evaluate({"a": a, "b": b}) == a % b
