"""Template text and XML parsers (mirrors ``src/parsers/template_syntax.y``).

``parse_str_or_xml`` chooses the parser like oned: input whose first byte is ``<`` is XML,
anything else is the text grammar::

    NAME = value | NAME = "quoted value" | NAME = [ K = v, K2 = "v 2" ]   # comment
"""

from __future__ import annotations

import re

from lxml import etree

from oned.template.template import Template

XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


class TemplateSyntaxError(ValueError):
    """Raised with oned's "Parse error" wording."""


_SKIP_NL = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")
_SKIP = re.compile(r"(?:[ \t\r]+|#[^\n]*)*")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_QUOTED = re.compile(r'"((?:\\"|[^"])*+)"')
_PLAIN = re.compile(r'[^ \t\r\n=#,\[\]"]*')


class _Lexer:
    """Regex-driven scanner over the template text (C-speed token matching)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> TemplateSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        col = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return TemplateSyntaxError(f"syntax error, {what} at line {line}, columns {col}:{col + 1}")

    def skip(self, newlines: bool = True) -> None:
        """Skip blanks, comments and (if allowed) newlines."""
        match = (_SKIP_NL if newlines else _SKIP).match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def found(self) -> str:
        return repr(self.peek()) if self.peek() else "end of input"

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.error(f"unexpected {self.found()}, expecting '{ch}'")
        self.pos += 1

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.error(f"unexpected {self.found()}, expecting VARIABLE")
        self.pos = match.end()
        return match.group(0).upper()

    def value(self) -> str:
        if self.peek() == '"':
            match = _QUOTED.match(self.text, self.pos)
            if match is None:
                raise self.error("unterminated string")
            self.pos = match.end()
            return match.group(1).replace('\\"', '"')
        match = _PLAIN.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()
        return match.group(0)


def parse_text(text: str) -> Template:
    """Parse the text syntax into a template."""
    lx = _Lexer(text)
    tmpl = Template()
    while True:
        lx.skip()
        if not lx.peek():
            return tmpl
        name = lx.name()
        lx.skip(newlines=False)
        lx.expect("=")
        lx.skip(newlines=False)
        if lx.peek() == "[":
            lx.pos += 1
            vector: dict[str, str] = {}
            lx.skip()
            if lx.peek() == "]":
                lx.pos += 1
            else:
                while True:
                    lx.skip()
                    key = lx.name()
                    lx.skip()
                    lx.expect("=")
                    lx.skip()
                    val = lx.value()
                    vector.setdefault(key, _checked(val.strip(), lx))
                    lx.skip()
                    if lx.peek() == ",":
                        lx.pos += 1
                        continue
                    lx.expect("]")
                    break
            tmpl.items.append((name, vector))
        else:
            tmpl.items.append((name, _checked(lx.value().strip(), lx)))
        lx.skip(newlines=False)
        if lx.peek() not in ("", "\n"):
            raise lx.error(f"unexpected {lx.peek()!r}, expecting end of line")


def _checked(value: str, lx: _Lexer) -> str:
    if "]]>" in value:
        raise lx.error("value contains ']]>'")
    return value


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
