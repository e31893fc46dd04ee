"""The scheduler's expression languages (mirrors ``expr_parser.l``, ``expr_bool.y``,
``expr_arith.y`` and ``ObjectXML::search``).

Requirements (``SCHED_REQUIREMENTS``, ``SCHED_DS_REQUIREMENTS``, NIC
``SCHED_REQUIREMENTS``, ``AUTOMATIC_*REQUIREMENTS``) are boolean: ``NAME op literal``
with ``=``, ``!=``, ``>``, ``<``, ``@>``; ``&``, ``|`` and ``!`` of equal precedence,
left-associative; an empty expression is true. Ranks (``SCHED_RANK``...) are
arithmetic over attribute values (missing ones are 0).

Names are looked up in an XML document (``XmlObject``): an absolute path, or the
union of the object's search paths, whose first node in document order wins (as
libxml2 answers ``a|b|c``). Stdlib only: the rank placer runs it as a script too.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

__all__ = [
    "DS_PATHS",
    "HOST_PATHS",
    "VNET_PATHS",
    "ExprError",
    "XmlObject",
    "eval_bool",
    "eval_rank",
    "join_requirements",
]

HOST_PATHS = (
    "/HOST/TEMPLATE/",
    "/HOST/HOST_SHARE/",
    "/HOST/HOST_SHARE/DATASTORES/",
    "/HOST/MONITORING/CAPACITY/",
    "/HOST/MONITORING/SYSTEM/",
    "/HOST/",
    "/HOST/CLUSTER_TEMPLATE/",
)
DS_PATHS = ("/DATASTORE/TEMPLATE/", "/DATASTORE/")
VNET_PATHS = ("/VNET/TEMPLATE/", "/VNET/")

_TOKEN = re.compile(
    r"""(?P<ws>[ \t]+)
      | (?P<float>-?[0-9]+\.[0-9]+)
      | (?P<int>-?[0-9]+)
      | (?P<name>[A-Za-z][0-9A-Za-z_]*)
      | (?P<quoted>"[^"]*")
      | (?P<op>[@!&|=><()*+/^-])""",
    re.VERBOSE,
)
_INT_PREFIX = re.compile(r"^\s*[+-]?[0-9]+")
_FLOAT_PREFIX = re.compile(r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class ExprError(ValueError):
    """A syntax error (the text oned writes after ``error:``)."""


@functools.lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[tuple[str, object], ...]:
    """The tokens of ``text`` (cached: a round evaluates the same few expressions often)."""
    out: list[tuple[str, object]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExprError(f"syntax error, unexpected character '{text[pos]}'")
        pos = m.end()
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind == "ws":
            continue
        if kind == "float":
            out.append(("num", float(raw)))
        elif kind == "int":
            out.append(("int", int(raw)))
        elif kind == "name":
            out.append(("str", raw))
        elif kind == "quoted":
            out.append(("str", raw[1:-1] if len(raw) > 2 else None))
        else:
            out.append((raw, raw))
    return tuple(out)


def _int_of(text: str) -> int | None:
    m = _INT_PREFIX.match(text)
    return int(m.group(0)) if m else None


def _float_of(text: str) -> float | None:
    m = _FLOAT_PREFIX.match(text)
    return float(m.group(0)) if m else None


class XmlObject:
    """An object document with its search paths (``ObjectXML`` with ``paths``)."""

    def __init__(self, root: ET.Element, paths: Sequence[str], current_vms: bool = False):
        self.root = root
        self.paths = tuple(paths)
        self.current_vms = current_vms
        self._order: dict[int, int] | None = None
        self._values: dict[str, list[str]] = {}
        #: VMs placed on this host during the round (``HostXML::is_dispatched``)
        self.dispatched: set[int] = set()

    @classmethod
    def parse(cls, text: str, paths: Sequence[str]) -> XmlObject:
        root = ET.fromstring(text)  # noqa: S314 - documents come from the core
        return cls(root, paths, current_vms=root.tag == "HOST")

    def _relative(self, path: str) -> str | None:
        parts = path.strip("/").split("/")
        if not parts or parts[0] != self.root.tag:
            return None
        return "/".join(parts[1:])

    def values(self, name: str) -> list[str]:
        """Texts of every node ``name`` reaches, in document order (cached)."""
        got = self._values.get(name)
        if got is None:
            got = self._values[name] = self._lookup(name)
        return got

    def _lookup(self, name: str) -> list[str]:
        if name.startswith("/"):
            rel = self._relative(name)
            if rel is None:
                return []
            return [n.text or "" for n in (self.root.findall(rel) if rel else [self.root])]
        found: dict[int, ET.Element] = {}
        for base in self.paths:
            rel = self._relative(base + name)
            if not rel:
                continue
            try:
                nodes = self.root.findall(rel)
            except SyntaxError:
                return []
            for node in nodes:
                found[id(node)] = node
        if len(found) > 1:
            if self._order is None:
                self._order = {id(n): i for i, n in enumerate(self.root.iter())}
            order = self._order
            nodes = sorted(found.values(), key=lambda n: order.get(id(n), 0))
        else:
            nodes = list(found.values())
        return [n.text or "" for n in nodes]

    def first(self, name: str) -> str | None:
        vals = self.values(name)
        return vals[0] if vals else None


# -- boolean -------------------------------------------------------------------------


class _Bool:
    def __init__(self, text: str, obj: XmlObject) -> None:
        self.toks = _tokens(text)
        self.pos = 0
        self.obj = obj

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.toks[i][0] if i < len(self.toks) else ""

    def take(self) -> tuple[str, object]:
        if self.pos >= len(self.toks):
            raise ExprError("syntax error, unexpected $end")
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> bool:
        if not self.toks:
            return True
        value = self.expr()
        if self.pos != len(self.toks):
            raise ExprError(f"syntax error, unexpected '{self.toks[self.pos][1]}'")
        return value

    def expr(self) -> bool:
        value = self.unary()
        while self.peek() in ("&", "|"):
            op = self.take()[0]
            right = self.unary()
            value = (value and right) if op == "&" else (value or right)
        return value

    def unary(self) -> bool:
        kind = self.peek()
        if kind == "!":
            self.take()
            return not self.unary()
        if kind == "(":
            self.take()
            value = self.expr()
            if self.take()[0] != ")":
                raise ExprError("syntax error, expecting ')'")
            return value
        if kind == "str":
            return self.compare()
        tok = self.take()
        raise ExprError(f"syntax error, unexpected '{tok[1]}'")

    def compare(self) -> bool:
        name = self.take()[1]
        op = self.take()[0]
        if op in {"!", "@"}:
            if self.take()[0] != ("=" if op == "!" else ">"):
                raise ExprError("syntax error, unexpected operator")
            op = "!=" if op == "!" else "@>"
        elif op not in ("=", ">", "<"):
            raise ExprError(f"syntax error, unexpected '{op}'")
        kind, lit = self.take()
        if kind not in ("int", "num", "str"):
            raise ExprError(f"syntax error, unexpected '{lit}'")
        if kind == "str" and op in (">", "<"):
            raise ExprError(f"syntax error, unexpected '{lit}'")
        if name is None:
            return False
        return self.test(str(name), op, kind, lit)

    def test(self, name: str, op: str, kind: str, lit: object) -> bool:
        obj = self.obj
        if op == "@>":
            vals = obj.values(name)
            if kind == "str":
                return lit is not None and any(fnmatch.fnmatchcase(v, str(lit)) for v in vals)
            conv = _int_of if kind == "int" else _float_of
            return any(conv(v) == lit for v in vals)
        if kind == "str":
            raw = obj.first(name)
            if raw is None or lit is None:
                return False
            matched = fnmatch.fnmatchcase(raw, str(lit))
            return matched if op == "=" else (not matched if op == "!=" else False)
        if name == "CURRENT_VMS" and obj.current_vms:
            ids = {_int_of(v) for v in obj.values("/HOST/VMS/ID")} | obj.dispatched
            val: float | None = float(lit) if lit in ids else -1.0  # type: ignore[arg-type]
        else:
            raw = obj.first(name)
            val = None if raw is None else (_int_of(raw) if kind == "int" else _float_of(raw))
        if val is None:
            return False
        num = float(lit)  # type: ignore[arg-type]
        if op == "=":
            return val == num
        if op == "!=":
            return val != num
        if op == ">":
            return val > num
        return val < num


def eval_bool(text: str, obj: XmlObject) -> bool:
    """Evaluate a requirement on ``obj``; ``ExprError`` on a syntax error."""
    return _Bool(text, obj).parse()


# -- arithmetic ----------------------------------------------------------------------


class _Arith(_Bool):
    def parse_rank(self) -> float:
        if not self.toks:
            return 0.0
        value = self.sum()
        if self.pos != len(self.toks):
            raise ExprError(f"syntax error, unexpected '{self.toks[self.pos][1]}'")
        return value

    def sum(self) -> float:
        value = self.product()
        while self.peek() in ("+", "-") or (self.peek() in ("int", "num") and _neg(self)):
            if self.peek() in ("int", "num"):  # "A -1": the lexer made "-1" a number
                value += float(self.take()[1])  # type: ignore[arg-type]
                continue
            op = self.take()[0]
            right = self.product()
            value = value + right if op == "+" else value - right
        return value

    def product(self) -> float:
        value = self.power()
        while self.peek() in ("*", "/"):
            op = self.take()[0]
            right = self.power()
            if op == "*":
                value *= right
            else:
                value = value / right if right != 0 else 0.0
        return value

    def power(self) -> float:
        value = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = self.power()
            try:
                value = float(value**exponent)
            except (OverflowError, ZeroDivisionError):
                value = 0.0
        return value

    def atom(self) -> float:
        kind, lit = self.take()
        if kind == "-":
            return -self.atom()
        if kind == "(":
            value = self.sum()
            if self.take()[0] != ")":
                raise ExprError("syntax error, expecting ')'")
            return value
        if kind in ("int", "num"):
            return float(lit)  # type: ignore[arg-type]
        if kind == "str":
            if lit is None:
                return 0.0
            raw = self.obj.first(str(lit))
            got = None if raw is None else _float_of(raw)
            return 0.0 if got is None else got
        raise ExprError(f"syntax error, unexpected '{lit}'")


def _neg(p: _Bool) -> bool:
    tok = p.toks[p.pos]
    return isinstance(tok[1], int | float) and float(tok[1]) < 0


def eval_rank(text: str, obj: XmlObject) -> float:
    """Evaluate a rank on ``obj`` (0 when empty); ``ExprError`` on a syntax error."""
    return _Arith(text, obj).parse_rank()


def join_requirements(automatic: str, user: str) -> str:
    """``build_requirements``: ``AUTO & ( USER )``, either alone if the other is empty."""
    if user:
        return f"{automatic} & ( {user} )" if automatic else user
    return automatic
