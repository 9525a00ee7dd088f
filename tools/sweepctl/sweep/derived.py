"""Derived parameters: a small, safe arithmetic language for ``derived:`` in sweep.yaml.

``lora_alpha: 2 * lora_rank`` is parsed with ``ast`` and evaluated by walking the tree:
no ``eval``, no attribute access, no names but the sweep's parameters. Allowed: numbers,
``+ - * / // % **``, unary minus/plus, parentheses, and ``int``, ``round``, ``min``,
``max``, ``abs``. Anything else is a ``DerivedError`` with the 1-based column where it
starts, so the validator can point at it inside the YAML value.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sweepctl.errors import SweepctlError

Number = int | float

MAX_LENGTH = 500
# ``2 ** 10 ** 10`` would hang the validator; no config needs exponents past this.
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e300

_BINARY: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}
_FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    # name: (min args, max args, implementation)
    "int": (1, 1, int),
    "round": (1, 2, round),
    "min": (2, 16, min),
    "max": (2, 16, max),
    "abs": (1, 1, abs),
}


class DerivedError(SweepctlError):
    """A derived expression that does not parse, names an unknown value, or cannot compute."""

    def __init__(self, message: str, col: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.col = col

    def __str__(self) -> str:
        return f"column {self.col}: {self.message}"


@dataclass(frozen=True)
class Expression:
    source: str
    tree: ast.expr
    names: frozenset[str]          # every parameter name the expression reads
    lead: int = 0                  # leading spaces stripped before parsing (for columns)

    def name_col(self, name: str) -> int:
        """1-based column of the first use of ``name`` (1 when it is not used)."""
        cols = [_col(node, self.lead) for node in ast.walk(self.tree)
                if isinstance(node, ast.Name) and node.id == name]
        return min(cols, default=1)

    def evaluate(self, values: Mapping[str, Any]) -> Number:
        result = _Evaluator(values, self.lead).visit(self.tree)
        if isinstance(result, float):
            if not math.isfinite(result):
                raise DerivedError(f"{self.source!r} is not a finite number", 1)
            # 3 * 0.1 is 0.30000000000000004; the trial id should see the 0.3 a person means
            result = float(f"{result:.12g}")
        return result


def parse(source: str | int | float) -> Expression:
    """Parse a derived expression; a bare number (``lora_alpha: 32``) is a constant."""
    if isinstance(source, bool) or not isinstance(source, str | int | float):
        raise DerivedError(f"expected an arithmetic expression, got {type(source).__name__}")
    text = str(source)
    if len(text) > MAX_LENGTH:
        raise DerivedError(f"expression is longer than {MAX_LENGTH} characters")
    lead = len(text) - len(text.lstrip())
    if not text.strip():
        raise DerivedError("empty expression")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        # at the end of the input Python reports offset 0: point just past the last character
        offset = exc.offset or len(text.strip()) + 1
        raise DerivedError(f"invalid expression: {exc.msg}", offset + lead) from None
    _check(tree, lead)
    names = frozenset(node.id for node in ast.walk(tree)
                      if isinstance(node, ast.Name) and node.id not in _FUNCTIONS)
    return Expression(text, tree, names, lead)


def _col(node: ast.AST, lead: int) -> int:
    return int(getattr(node, "col_offset", 0)) + lead + 1


def _check(node: ast.expr, lead: int) -> None:
    """Reject every construct outside the small language, before anything runs."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise DerivedError(f"only numbers are allowed, not {node.value!r}", _col(node, lead))
        return
    if isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            raise DerivedError(f"{node.id!r} is a function; call it: {node.id}(...)",
                               _col(node, lead))
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check(node.operand, lead)
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, lead)
        _check(node.right, lead)
        return
    if isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in _FUNCTIONS:
            allowed = ", ".join(_FUNCTIONS)
            raise DerivedError(f"only these functions may be called: {allowed}",
                               _col(node, lead))
        low, high, _ = _FUNCTIONS[func.id]
        if node.keywords or not low <= len(node.args) <= high:
            raise DerivedError(f"{func.id}() takes {low}{'' if low == high else f'-{high}'} "
                               "positional argument(s)", _col(node, lead))
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise DerivedError("*args is not allowed", _col(arg, lead))
            _check(arg, lead)
        return
    raise DerivedError(f"{_describe(node)} is not allowed; use numbers, parameters, "
                       "+ - * / // % ** and int/round/min/max/abs", _col(node, lead))


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return "attribute access"
    if isinstance(node, ast.Compare):
        return "a comparison"
    if isinstance(node, ast.BoolOp):
        return "and/or"
    if isinstance(node, ast.BinOp):
        return "this operator"
    if isinstance(node, ast.Subscript):
        return "indexing"
    return type(node).__name__


class _Evaluator:
    def __init__(self, values: Mapping[str, Any], lead: int) -> None:
        self.values = values
        self.lead = lead

    def visit(self, node: ast.expr) -> Number:
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # guaranteed by _check
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            operand = self.visit(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)  # guaranteed by _check
            args = [self.visit(arg) for arg in node.args]
            name = node.func.id
            try:
                result: Number = _FUNCTIONS[name][2](*args)
            except (OverflowError, ValueError, TypeError) as exc:
                # int(1e999), round(r, 0.5): Python's own errors are the user's typo here
                raise DerivedError(f"cannot compute {name}(): {exc}", _col(node, self.lead)) \
                    from None
            if abs(result) > MAX_MAGNITUDE:
                raise DerivedError(f"{name}() gives a number out of range",
                                   _col(node, self.lead))
            return result
        raise DerivedError("unsupported expression", _col(node, self.lead))  # pragma: no cover

    def _name(self, node: ast.Name) -> Number:
        if node.id not in self.values:
            raise DerivedError(f"unknown name {node.id!r}", _col(node, self.lead))
        value = self.values[node.id]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DerivedError(f"{node.id!r} is {value!r}, not a number", _col(node, self.lead))
        return value

    def _binary(self, node: ast.BinOp) -> Number:
        left = self.visit(node.left)
        right = self.visit(node.right)
        symbol, function = _BINARY[type(node.op)]
        if symbol == "**" and abs(right) > MAX_EXPONENT:
            bound = f"larger than {MAX_EXPONENT}" if right > 0 else f"smaller than -{MAX_EXPONENT}"
            raise DerivedError(f"exponent {right} is {bound}", _col(node.right, self.lead))
        try:
            result: Number = function(left, right)
        except ZeroDivisionError:
            raise DerivedError(f"division by zero in '{symbol}'", _col(node, self.lead)) from None
        except (OverflowError, ValueError) as exc:
            raise DerivedError(f"cannot compute '{symbol}': {exc}", _col(node, self.lead)) from None
        if isinstance(result, complex) or abs(result) > MAX_MAGNITUDE:
            raise DerivedError(f"'{symbol}' gives a number out of range", _col(node, self.lead))
        return result
