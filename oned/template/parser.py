"""Template text and XML parsers (mirrors ``src/parsers/template_parser.l`` and
``template_syntax.y``).

``parse_str_or_xml`` chooses the parser like oned: input whose first byte is ``<`` is XML,
anything else is the text grammar::

    NAME = value | NAME = "quoted value" | NAME = [ K = v, K2 = "v 2" ] | NAME =
    # comment lines

The text parser reproduces oned's scanner (longest match, start conditions ``INITIAL``
and ``VALUE``, unmatched bytes skipped) and its LALR(1) grammar, so that a malformed
template is refused with bison's verbose message: the unexpected token, the tokens the
state accepts (``EQUAL``, ``COMMA``, ``OBRACKET``, ``CBRACKET``, ``EQUAL_EMPTY``,
``CCDATA``, ``STRING``, ``VARIABLE``, ``$end``) and the location oned reports. The
scanner counts columns in bytes over the whole text (never reset at a new line) from 1,
and lines from oned's uninitialised scanner line number: we count from 0, which is what
a freshly started oned reports; a long-running one adds a stale number of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from oned.template.template import Template

XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)

END = "$end"
EQUAL = "EQUAL"
COMMA = "COMMA"
OBRACKET = "OBRACKET"
CBRACKET = "CBRACKET"
EQUAL_EMPTY = "EQUAL_EMPTY"
CCDATA = "CCDATA"
STRING = "STRING"
VARIABLE = "VARIABLE"

_SPACE = " \t\n\v\f\r"


class TemplateSyntaxError(ValueError):
    """A template that does not parse; ``str()`` is oned's detail after "Parse error: "
    (empty when the grammar aborts without a message, see ``parse_error``)."""

    @property
    def parse_error(self) -> str:
        """The whole text oned answers: ``Parse error: <detail>`` or ``Parse error.``."""
        detail = str(self)
        return f"Parse error: {detail}" if detail else "Parse error."


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str = ""


# INITIAL start condition, in rule order (ties of equal length go to the first).
_INITIAL = (
    (re.compile(r"[ \t]*#[^\n]*\n"), None),
    (re.compile(r"[ \t\n]+"), None),
    (re.compile(r"[A-Za-z0-9_]+"), VARIABLE),
    (re.compile(r"[ \t]*=[ \t]*"), EQUAL),
    (re.compile(r"[ \t]*=[ \t]*\n"), EQUAL_EMPTY),
    (re.compile(r"[ \t\n]*,[ \t\n]*"), COMMA),
    (re.compile(r"[ \t\n]*\][ \t\n]*"), CBRACKET),
)
# VALUE start condition (after EQUAL); the quoted string rule sits between CCDATA and
# the plain string and is matched by hand (flex takes its longest match).
_VALUE = (
    (re.compile(r"[ \t]*\[[ \t\n]*"), OBRACKET),
    (re.compile(r"[^\n]*\]\]>[^\n]*"), CCDATA),
    (re.compile(r"[^=# \t\n,\[\]]+"), STRING),
)


class _Scanner:
    """oned's flex scanner: longest match, ``VALUE`` after ``EQUAL``, and the
    location (``first_line``, ``first_column``, ``last_column``) of the last match."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.value_state = False
        self.line = 0
        self.first_column = 1
        self.last_column = 1

    def _advance(self, lexeme: str) -> None:
        self.pos += len(lexeme)
        self.line += lexeme.count("\n")
        size = len(lexeme.encode("utf-8", "surrogatepass"))
        if len(lexeme) == 1 and size > 1:
            # An unmatched multi-byte character is skipped one byte at a time.
            self.last_column += size - 1
            size = 1
        self.first_column = self.last_column
        self.last_column += size

    def _quoted_length(self) -> int:
        """Longest ``"([^"]|\\")*"`` from here (0 when there is none)."""
        text, start = self.text, self.pos
        best = 0
        q = text.find('"', start + 1)
        while q != -1:
            best = q + 1 - start
            if text[q - 1] != "\\" or q - 1 == start:
                break
            q = text.find('"', q + 1)
        return best

    def next(self) -> _Token:
        text = self.text
        while self.pos < len(text):
            # (length, token kind or None to skip, quoted string?) for every rule
            candidates: list[tuple[int, str | None, bool]] = []
            rules = _VALUE if self.value_state else _INITIAL
            for regex, rule_kind in rules:
                match = regex.match(text, self.pos)
                candidates.append((match.end() - self.pos if match else 0, rule_kind, False))
            if self.value_state and text[self.pos] == '"':
                candidates.insert(2, (self._quoted_length(), STRING, True))
            length, kind, quoted = max(candidates, key=lambda c: c[0])  # first longest
            if length == 0:
                self._advance(text[self.pos])  # flex's default rule: skip (ECHO) it
                continue
            lexeme = text[self.pos : self.pos + length]
            self._advance(lexeme)
            if self.value_state:
                self.value_state = False
            elif kind == EQUAL:
                self.value_state = True
            if kind is not None:
                return _Token(kind, lexeme[1:-1] if quoted else lexeme)
        return _Token(END)

    def error(self, found: _Token, expected: tuple[str, ...]) -> TemplateSyntaxError:
        text = f"syntax error, unexpected {found.kind}"
        if expected:
            text += ", expecting " + " or ".join(expected)
        return TemplateSyntaxError(
            f"{text} at line {self.line}, columns {self.first_column}:{self.last_column}"
        )


def _unescape(value: str) -> str:
    return value.replace('\\"', '"')


def parse_text(text: str, trim: bool = True) -> Template:
    """Parse the text syntax into a template (``Template::parse``); ``trim`` strips
    values as ``parse_str_or_xml`` does after parsing."""
    scanner = _Scanner(text.split("\0", 1)[0])
    tmpl = Template()
    tok = scanner.next()
    while True:
        if tok.kind != VARIABLE:
            if tok.kind == END:
                break
            raise scanner.error(tok, (END,))
        name = tok.text.upper()
        tok = scanner.next()
        if tok.kind == EQUAL_EMPTY:
            tmpl.items.append((name, ""))
            tok = scanner.next()
            continue
        if tok.kind != EQUAL:
            raise scanner.error(tok, (EQUAL, EQUAL_EMPTY))
        tok = scanner.next()
        if tok.kind == STRING:
            tmpl.items.append((name, _unescape(tok.text)))
            tok = scanner.next()
            continue
        if tok.kind == CCDATA:
            raise TemplateSyntaxError("")  # the grammar aborts without a message
        if tok.kind != OBRACKET:
            raise scanner.error(tok, (OBRACKET, CCDATA, STRING))
        tok = scanner.next()
        vector: dict[str, str] = {}
        if tok.kind != CBRACKET:
            if tok.kind != VARIABLE:
                raise scanner.error(tok, (CBRACKET, VARIABLE))
            while True:
                key = tok.text.upper()
                tok = scanner.next()
                if tok.kind != EQUAL:
                    raise scanner.error(tok, (EQUAL,))
                tok = scanner.next()
                if tok.kind != STRING:
                    raise scanner.error(tok, (STRING,))
                vector.setdefault(key, _unescape(tok.text))
                tok = scanner.next()
                if tok.kind == CBRACKET:
                    break
                if tok.kind != COMMA:
                    raise scanner.error(tok, (COMMA, CBRACKET))
                tok = scanner.next()
                if tok.kind != VARIABLE:
                    raise scanner.error(tok, (VARIABLE,))
        tmpl.items.append((name, vector))
        tok = scanner.next()
    if trim:
        _trim(tmpl)
    return tmpl


def _trim(tmpl: Template) -> None:
    """``Template::trim_attributes``: strip C white space around every value."""
    tmpl.items = [
        (n, {k: x.strip(_SPACE) for k, x in v.items()} if isinstance(v, dict) else v.strip(_SPACE))
        for n, v in tmpl.items
    ]


def parse_xml(text: str) -> Template:
    """Parse ``<TEMPLATE>`` style XML: leaves are singles, nested elements vectors."""
    try:
        root = etree.fromstring(text.encode(), XML_PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise TemplateSyntaxError("XML Template malformed.") from exc
    tmpl = Template()
    for child in root:
        if not isinstance(child.tag, str):
            continue
        subs = [c for c in child if isinstance(c.tag, str)]
        if subs:
            vector: dict[str, str] = {}
            for sub in subs:
                vector.setdefault(str(sub.tag).upper(), (sub.text or "").strip())
            tmpl.items.append((str(child.tag).upper(), vector))
        else:
            tmpl.items.append((str(child.tag).upper(), (child.text or "").strip()))
    return tmpl


def parse_str_or_xml(text: str) -> Template:
    """oned's ``parse_str_or_xml``: first byte ``<`` selects XML."""
    if text.startswith("<"):
        return parse_xml(text)
    return parse_text(text)
