"""Tiny arithmetic for derived columns: names, numbers, + - * / and parentheses; nothing else.

Used where a suite computes a ratio from a handful of aggregate values (e.g. the core-hot
share from two message counts). Division by zero gives NaN, which gatecheck treats as
"no evidence", never as a pass.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping

_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _parse(expression: str) -> ast.expr:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    for node in ast.walk(tree):
        allowed = (
            ast.Expression,
            ast.BinOp,
            ast.UnaryOp,
            ast.USub,
            ast.UAdd,
            ast.Name,
            ast.Load,
            ast.Constant,
        )
        if not isinstance(node, allowed + tuple(_OPERATORS)):
            raise ValueError(f"only names, numbers, + - * / and parentheses are allowed: {expression!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise ValueError(f"only numeric constants are allowed: {expression!r}")
    return tree.body


def names_in(expression: str) -> set[str]:
    """The variable names an expression uses (raises ValueError if it is not arithmetic)."""
    return {node.id for node in ast.walk(_parse(expression)) if isinstance(node, ast.Name)}


def evaluate(expression: str, values: Mapping[str, float]) -> float:
    """Evaluate with ``values``; x/0 is NaN."""

    def walk(node: ast.expr) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            value = values[node.id]
            return math.nan if value is None else float(value)
        if isinstance(node, ast.UnaryOp):
            operand = walk(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                return math.nan
            return float(_OPERATORS[type(node.op)](left, right))
        raise ValueError(f"unsupported expression node {type(node).__name__}")

    return walk(_parse(expression))
