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

import bisect
import re
from typing import NamedTuple

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


class _Token(NamedTuple):
    kind: str
    text: str = ""


# INITIAL start condition, in flex's rule order (ties of equal length go to the first):
#   [ \t]*#.*\n  skip | [ \t\n]+  skip | [A-Za-z0-9_]+  VARIABLE
#   [ \t]*=[ \t]*  EQUAL (then VALUE) | [ \t]*=[ \t]*\n  EQUAL_EMPTY
#   [ \t\n]*,[ \t\n]*  COMMA | [ \t\n]*\][ \t\n]*  CBRACKET
# matched below by looking at the first byte after the leading blanks.
_WORD = re.compile(r"[A-Za-z0-9_]+")
_COMMENT = re.compile(r"[ \t]*#")
_BLANKS = re.compile(r"[ \t\n]*")
_EQUAL = re.compile(r"=[ \t]*(\n)?")
# Bytes no INITIAL rule can start with: flex skips them one by one.
_NO_RULE = re.compile(r"[^ \t\n#=,\]A-Za-z0-9_]+")
_NO_RULE_LAST_LINE = re.compile(r"[^ \t\n=,\]A-Za-z0-9_]+")
# VALUE start condition (after EQUAL): OBRACKET, CCDATA ``.*]]>.*`` (by hand), the
# quoted string (by hand, flex takes its longest match) and the plain string.
_OBRACKET = re.compile(r"[ \t]*\[[ \t\n]*")
_PLAIN = re.compile(r"[^=# \t\n,\[\]]+")


# Templates made only of ``NAME="value"`` lines and ``NAME=[K="v",K2="v2"]`` vectors
# (no blanks around ``=``, no quotes, backslashes, brackets or new lines inside values,
# each line ended by one new line or the end): every value is a quoted STRING (the
# quoted match is at least as long as any other VALUE rule's and wins ties), so the
# scanner's tokens are plain to read off. What clients send most is parsed this way.
_SIMPLE_VALUE = r'"[^"\\\n\[\]]*"'
_SIMPLE_PAIR = rf"[A-Za-z0-9_]+={_SIMPLE_VALUE}"
_SIMPLE_LINE = rf"[A-Za-z0-9_]+=(?:{_SIMPLE_VALUE}|\[(?:{_SIMPLE_PAIR}(?:,{_SIMPLE_PAIR})*)?\])"
_SIMPLE = re.compile(rf"{_SIMPLE_LINE}(?:\n{_SIMPLE_LINE})*\n?")
_SIMPLE_ITEM = re.compile(r'([A-Za-z0-9_]+)=(?:"([^"]*)"|\[([^\]]*)\])')
_SIMPLE_KEY = re.compile(r'([A-Za-z0-9_]+)="([^"]*)"')


def _parse_simple(text: str) -> Template:
    """``parse_text`` (before trimming) of a text ``_SIMPLE`` matches whole."""
    tmpl = Template()
    for item in _SIMPLE_ITEM.finditer(text):
        name, single, pairs = item.groups()
        if single is not None:
            tmpl.items.append((name.upper(), single))
            continue
        vector: dict[str, str] = {}
        for key, value in _SIMPLE_KEY.findall(pairs):
            vector.setdefault(key.upper(), value)
        tmpl.items.append((name.upper(), vector))
    return tmpl


class _Scanner:
    """oned's flex scanner: longest match, ``VALUE`` after ``EQUAL``, and the
    location (``first_line``, ``first_column``, ``last_column``) of the last match.

    Line ends and the last ``]]>`` of each line are looked up, not rescanned, so
    hostile input stays linear."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.value_state = False
        self.line = 0
        self.first_column = 1
        self.last_column = 1
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self._last_cdata: dict[int, int] = {}

    def _line_end(self) -> int:
        """Index of the new line ending the current line (len(text) on the last)."""
        i = bisect.bisect_left(self._newlines, self.pos)
        return self._newlines[i] if i < len(self._newlines) else len(self.text)

    def _last_line(self) -> bool:
        """On the last line, which has no new line: ``#`` cannot start a comment."""
        return not self._newlines or self.pos > self._newlines[-1]

    def _advance(self, lexeme: str, skipped: bool = False) -> None:
        """Move over ``lexeme``; ``skipped`` bytes are matched one by one."""
        self.pos += len(lexeme)
        self.line += lexeme.count("\n")
        size = len(lexeme) if lexeme.isascii() else len(lexeme.encode("utf-8", "surrogatepass"))
        if skipped:
            self.last_column += size - 1
            size = 1
        self.first_column = self.last_column
        self.last_column += size

    def _comment_length(self) -> int:
        match = _COMMENT.match(self.text, self.pos)
        end = self._line_end()
        if match is None or end == len(self.text):
            return 0
        return end + 1 - self.pos

    def _ccdata_length(self) -> int:
        end = self._line_end()
        last = self._last_cdata.get(end)
        if last is None:
            start = self.text.rfind("\n", 0, end) + 1
            last = self._last_cdata[end] = self.text.rfind("]]>", start, end)
        return end - self.pos if last >= self.pos else 0

    def _quoted_length(self) -> int:
        """Longest ``"([^"]|\\")*"`` from here (0 when there is none)."""
        text, start = self.text, self.pos
        if text[start] != '"':
            return 0
        best = 0
        q = text.find('"', start + 1)
        while q != -1:
            best = q + 1 - start
            if text[q - 1] != "\\" or q - 1 == start:
                break
            q = text.find('"', q + 1)
        return best

    def _length(self, regex: re.Pattern[str]) -> int:
        match = regex.match(self.text, self.pos)
        return match.end() - self.pos if match else 0

    def _initial(self) -> tuple[int, str | None]:
        """The longest INITIAL match here: (length, token kind or None to skip)."""
        text, pos = self.text, self.pos
        ch = text[pos]
        if ch == "#":
            return self._comment_length(), None
        blanks = _BLANKS.match(text, pos)
        assert blanks is not None
        after = blanks.end()
        nxt = text[after : after + 1]
        if nxt in (",", "]"):
            tail = _BLANKS.match(text, after + 1)
            assert tail is not None
            return tail.end() - pos, COMMA if nxt == "," else CBRACKET
        newline = "\n" in text[pos:after]
        if nxt == "=" and not newline:
            equal = _EQUAL.match(text, after)
            assert equal is not None
            return equal.end() - pos, EQUAL_EMPTY if equal.group(1) else EQUAL
        if nxt == "#" and not newline:
            comment = self._comment_length()
            if comment:
                return comment, None
        return after - pos, None

    def _value(self) -> tuple[int, str | None, bool]:
        """The longest VALUE match here: (length, kind, quoted string?)."""
        ch = self.text[self.pos]
        length, kind, quoted = 0, None, False
        if ch in " \t[":
            length, kind = self._length(_OBRACKET), OBRACKET
        ccdata = self._ccdata_length()
        if ccdata > length:
            length, kind = ccdata, CCDATA
        if ch == '"':
            string = self._quoted_length()
            if string > length:
                length, kind, quoted = string, STRING, True
        plain = self._length(_PLAIN)
        if plain > length:
            length, kind, quoted = plain, STRING, False
        return length, kind, quoted

    def next(self) -> _Token:
        text = self.text
        while self.pos < len(text):
            quoted = False
            if self.value_state:
                length, kind, quoted = self._value()
            else:
                word = _WORD.match(text, self.pos)
                if word is not None:
                    self._advance(word.group(0))
                    return _Token(VARIABLE, word.group(0))
                skip = _NO_RULE.match(text, self.pos)
                if skip is None and self._last_line():
                    skip = _NO_RULE_LAST_LINE.match(text, self.pos)  # no comment there
                if skip is not None:
                    self._advance(skip.group(0), skipped=True)
                    continue
                length, kind = self._initial()
            if length == 0:
                self._advance(text[self.pos], skipped=True)  # flex's default rule
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
    text = text.split("\0", 1)[0]
    if _SIMPLE.fullmatch(text):
        tmpl = _parse_simple(text)
        if trim:
            _trim(tmpl)
        return tmpl
    scanner = _Scanner(text)
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
