"""Bug-injection operators: each maps one AST node of a function body to text edits of the source."""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

# Python ends a line at \r\n, \r or \n; str.splitlines would also split at \x0c, \u2028 and others.
_NEWLINE = re.compile(r"\r\n|\r|\n")
# Between two operands only parentheses, comments, line continuations and the operator itself can occur.
_GAP_TOKEN = re.compile(r"#[^\r\n]*|[^\s()\\#]+")


class Edit(NamedTuple):
    """Replace source[start:end] (character offsets) by `replacement`."""

    start: int
    end: int
    replacement: str


class Text:
    """A source file, with conversions from AST positions to character offsets."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.line_starts = [0] + [match.end() for match in _NEWLINE.finditer(source)]

    def line_start(self, lineno: int) -> int:
        return self.line_starts[lineno - 1]

    def line_end(self, lineno: int) -> int:
        """Offset just past the line's newline (the end of the file for the last line)."""
        return self.line_starts[lineno] if lineno < len(self.line_starts) else len(self.source)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset)

    def offset(self, lineno: int, col: int) -> int:
        # AST columns count UTF-8 bytes, not characters.
        start = self.line_start(lineno)
        line = self.source[start : self.line_end(lineno)]
        return start + (col if line.isascii() else len(line.encode()[:col].decode()))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def op_span(self, left: ast.AST, right: ast.AST, spelling: str) -> tuple[int, int] | None:
        """The span of the operator written between two operands, if it is spelled as expected."""
        tokens = [
            match for match in _GAP_TOKEN.finditer(self.source, self.span(left)[1], self.span(right)[0])
            if not match.group().startswith("#")
        ]
        if [match.group() for match in tokens] != spelling.split():
            return None
        return tokens[0].start(), tokens[-1].end()

    def line_span(self, node: ast.AST) -> tuple[int, int] | None:
        """The whole lines of a statement, when it is alone on them (a trailing comment goes with it)."""
        start, end = self.span(node)
        first, last = self.line_start(node.lineno), self.line_end(node.end_lineno)
        rest = self.source[end:last].strip()
        if self.source[first:start].strip() or (rest and not rest.startswith("#")):
            return None
        return first, last


@dataclass(frozen=True)
class Scope:
    """What a function binds: where each name is first bound, and its kind (type name) when cheaply knowable."""

    first_bound: dict[str, tuple[int, int]]  # name -> (lineno, col) of its first binding; parameters (0, 0)
    kinds: dict[str, str | None]  # None: unknown, or bound to values of different kinds

    @classmethod
    def of(cls, func: ast.FunctionDef | ast.AsyncFunctionDef) -> Scope:
        first_bound: dict[str, tuple[int, int]] = {}
        kinds: dict[str, set[str | None]] = {}
        args = func.args
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        params = [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
        for arg, default in params:
            first_bound[arg.arg] = (0, 0)
            kinds[arg.arg] = {_annotation_kind(arg.annotation) or (default and value_kind(default))}
        for arg, kind in ((args.vararg, "tuple"), (args.kwarg, "dict")):
            if arg:
                first_bound[arg.arg], kinds[arg.arg] = (0, 0), {kind}
        for node, parent in _own_scope(func):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                position = (node.lineno, node.col_offset)
                first_bound[node.id] = min(first_bound.get(node.id, position), position)
                if isinstance(parent, ast.AugAssign):
                    continue  # keeps the kind it had
                # Only `name = value` tells the kind; unpacking, loops and `with` leave it unknown.
                direct = isinstance(parent, ast.Assign | ast.AnnAssign | ast.NamedExpr)
                kinds.setdefault(node.id, set()).add(value_kind(parent.value) if direct else None)
        return cls(first_bound, {name: next(iter(ks)) if len(ks) == 1 else None for name, ks in kinds.items()})

    def names_bound_before(self, lineno: int, col: int) -> list[str]:
        return [name for name, position in self.first_bound.items() if position < (lineno, col)]


@dataclass(frozen=True)
class Site:
    """One node of a function body, with what operators need to know around it."""

    node: ast.AST
    parent: ast.AST
    block: list[ast.stmt] | None  # the statement list holding the node, when it is a statement
    text: Text
    scope: Scope


Operator = Callable[[Site], Iterator[Edit]]

_BUILTIN_KINDS = ("int", "float", "str", "bytes", "bool", "list", "dict", "set", "tuple", "frozenset")
_CALL_KINDS = {"len": "int", "sorted": "list", **{kind: kind for kind in _BUILTIN_KINDS}}
_LITERAL_KINDS = {
    ast.List: "list", ast.ListComp: "list", ast.Tuple: "tuple", ast.Dict: "dict", ast.DictComp: "dict",
    ast.Set: "set", ast.SetComp: "set", ast.JoinedStr: "str", ast.Compare: "bool",
}


def value_kind(node: ast.AST | None) -> str | None:
    """The type name of an expression's value, when the expression alone tells it."""
    if isinstance(node, ast.Constant):
        return None if node.value is None else type(node.value).__name__
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return "bool"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _CALL_KINDS.get(node.func.id)
    return _LITERAL_KINDS.get(type(node))


def _annotation_kind(annotation: ast.expr | None) -> str | None:
    if isinstance(annotation, ast.Subscript):  # list[int] is a list
        annotation = annotation.value
    if isinstance(annotation, ast.Name) and annotation.id in _BUILTIN_KINDS:
        return annotation.id
    return None


def _own_scope(func: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[tuple[ast.AST, ast.AST]]:
    """(node, parent) pairs of a function's body, leaving out nested scopes (functions, classes, comprehensions)."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp,
              ast.DictComp, ast.GeneratorExp)
    stack: list[tuple[ast.AST, ast.AST]] = [(stmt, func) for stmt in func.body]
    while stack:
        node, parent = stack.pop()
        yield node, parent
        if not isinstance(node, nested):
            stack.extend((child, node) for child in ast.iter_child_nodes(node))


def small_int(node: ast.AST) -> int | None:
    """The value of an integer literal between -2 and 2 (`-1` is a unary minus on 1), else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        sign, node = -1, node.operand
    if isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) <= 2:
        return sign * node.value
    return None


_COMPARISONS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}
_NEGATED_COMPARISON = {
    "==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">",
    "is": "is not", "is not": "is", "in": "not in", "not in": "in",
}
_BOUNDARY = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/"}
# `/` becomes `*`, but `*` becomes `//` only: most arithmetic in these packages is on ints.
_SWAPPED_ARITHMETIC = {"+": "-", "-": "+", "*": "//", "//": "*", "/": "*"}
# `+` and `*` on these are concatenation or repetition: swapping them gives a TypeError, not a subtle bug.
_SEQUENCE_LITERALS = (ast.List, ast.Tuple, ast.ListComp, ast.JoinedStr)
# `not x and y` means `(not x) and y`: these tests need parentheses when negated (a chained comparison for reading).
_LOOSE = (ast.BoolOp, ast.IfExp, ast.NamedExpr, ast.Lambda, ast.Yield, ast.YieldFrom, ast.Compare)
_DROPPABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Break, ast.Continue)


def _compare_edits(site: Site, table: dict[str, str]) -> Iterator[Edit]:
    node = site.node
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for (left, right), op in zip(pairwise(operands), node.ops, strict=True):
            spelling = _COMPARISONS[type(op)]
            if spelling in table and (span := site.text.op_span(left, right, spelling)):
                yield Edit(*span, table[spelling])


def swap_comparison(site: Site) -> Iterator[Edit]:
    """`==`/`!=`, `<`/`>=`, `>`/`<=`, `is`/`is not`, `in`/`not in`: the comparison's opposite."""
    yield from _compare_edits(site, _NEGATED_COMPARISON)


def change_boundary(site: Site) -> Iterator[Edit]:
    """`<`/`<=` and `>`/`>=`; a small int used as an index, a bound or an offset moved by one."""
    yield from _compare_edits(site, _BOUNDARY)
    node, parent = site.node, site.parent
    value = small_int(node)
    if value is None:
        return
    offset = isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Add | ast.Sub) and node is parent.right
    bound = (
        (isinstance(parent, ast.Subscript) and node is parent.slice)
        or isinstance(parent, ast.Compare)
        or (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "range")
    )
    if offset or bound:
        for new in (value + 1, value - 1):
            # `i + 0` is `i`, and `i + -1` reads as a typo: an offset stays positive.
            if not offset or new > 0:
                yield Edit(*site.text.span(node), str(new))


def negate_condition(site: Site) -> Iterator[Edit]:
    """The test of an `if`/`elif`/`while`/ternary/`assert` negated, or its `not` removed."""
    node, text = site.node, site.text
    if not isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert):
        return
    test = node.test
    # `not a < b` is swap_comparison's `a >= b` written awkwardly; `while True` negated is no subtle bug.
    if isinstance(test, ast.Constant) or (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return
    start, end = text.span(test)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        # Keep what follows `not` as written, parentheses included.
        yield Edit(start, end, text.source[start + len("not") : end].lstrip())
    else:
        written = text.source[start:end]
        yield Edit(start, end, f"not ({written})" if isinstance(test, _LOOSE) else f"not {written}")


def swap_arithmetic(site: Site) -> Iterator[Edit]:
    """`+`/`-`, `*`/`//`, `/` to `*`, in expressions and augmented assignments (`+=`/`-=`...)."""
    node = site.node
    if isinstance(node, ast.BinOp):
        left, right, suffix = node.left, node.right, ""
    elif isinstance(node, ast.AugAssign):
        left, right, suffix = node.target, node.value, "="
    else:
        return
    spelling = _ARITHMETIC.get(type(node.op))
    if spelling is None or any(_is_sequence_literal(operand) for operand in (left, right)):
        return
    if span := site.text.op_span(left, right, spelling + suffix):
        yield Edit(*span, _SWAPPED_ARITHMETIC[spelling] + suffix)


def _is_sequence_literal(node: ast.AST) -> bool:
    is_text = isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
    return is_text or isinstance(node, _SEQUENCE_LITERALS)


def swap_boolean(site: Site) -> Iterator[Edit]:
    """`and`/`or`: every operator of one boolean expression, so `a and b and c` becomes `a or b or c`."""
    node, text = site.node, site.text
    if not isinstance(node, ast.BoolOp):
        return
    old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
    spans = [text.op_span(left, right, old) for left, right in pairwise(node.values)]
    if None in spans:
        return
    pieces, cursor = [], spans[0][0]
    for start, end in spans:
        pieces += [text.source[cursor:start], new]
        cursor = end
    yield Edit(spans[0][0], spans[-1][1], "".join(pieces))


def drop_statement(site: Site) -> Iterator[Edit]:
    """Remove the lines of one assignment, call, `break` or `continue`.

    Only from a block with at least two statements other than strings: the only statement of a block is never
    dropped (nor replaced by `pass`), so a block never becomes a docstring alone.
    """
    node, block = site.node, site.block
    if not isinstance(node, _DROPPABLE) or block is None:
        return
    if isinstance(node, ast.Expr) and not isinstance(node.value, ast.Call):
        return
    if isinstance(node, ast.AnnAssign) and node.value is None:
        return
    statements = [stmt for stmt in block if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))]
    if len(statements) >= 2 and (span := site.text.line_span(node)):
        yield Edit(*span, "")


def wrong_return(site: Site) -> Iterator[Edit]:
    """`return a` becomes `return b`: b a parameter or a local bound earlier, of the same kind when both are known."""
    node = site.node
    if not isinstance(node, ast.Return) or not isinstance(node.value, ast.Name):
        return
    name, kinds = node.value.id, site.scope.kinds
    for other in site.scope.names_bound_before(node.lineno, node.col_offset):
        if other in (name, "self", "cls", "_"):
            continue
        if kinds.get(name) and kinds[other] and kinds[other] != kinds[name]:
            continue
        yield Edit(*site.text.span(node.value), other)


def off_by_one_slice(site: Site) -> Iterator[Edit]:
    """A slice bound that is a name or a small int moved by one: `a[i:j]` becomes `a[i + 1:j]`."""
    node = site.node
    if not isinstance(node, ast.Slice):
        return
    for bound in (node.lower, node.upper):
        if isinstance(bound, ast.Name):
            yield Edit(*site.text.span(bound), f"{bound.id} + 1")
            yield Edit(*site.text.span(bound), f"{bound.id} - 1")
        elif bound is not None and (value := small_int(bound)) is not None:
            yield Edit(*site.text.span(bound), str(value + 1))
            yield Edit(*site.text.span(bound), str(value - 1))


# In this order, so that candidates at the same span come out in a fixed order.
OPERATORS: dict[str, Operator] = {
    "swap_comparison": swap_comparison,
    "change_boundary": change_boundary,
    "negate_condition": negate_condition,
    "swap_arithmetic": swap_arithmetic,
    "swap_boolean": swap_boolean,
    "drop_statement": drop_statement,
    "wrong_return": wrong_return,
    "off_by_one_slice": off_by_one_slice,
}
