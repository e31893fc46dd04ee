"""Template text and XML parsers (mirrors ``src/parsers/template_syntax.y``).

``parse_str_or_xml`` chooses the parser like oned: input whose first byte is ``<`` is XML,
anything else is the text grammar::

    NAME = value | NAME = "quoted value" | NAME = [ K = v, K2 = "v 2" ]   # comment
"""

from __future__ import annotations

from lxml import etree

from oned.template.template import Template

_PLAIN_STOP = set(' \t\r\n=#,[]"')
_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")

XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


class TemplateSyntaxError(ValueError):
    """Raised with oned's "Parse error" wording."""


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.col = 1

    def error(self, what: str) -> TemplateSyntaxError:
        return TemplateSyntaxError(
            f"syntax error, {what} at line {self.line}, columns {self.col}:{self.col + 1}"
        )

    def _advance(self, n: int) -> None:
        chunk = self.text[self.pos : self.pos + n]
        for ch in chunk:
            if ch == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
        self.pos += n

    def skip(self, newlines: bool = True) -> None:
        """Skip blanks, comments and (if allowed) newlines."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._advance(1)
            elif ch == "#":
                end = text.find("\n", self.pos)
                self._advance((len(text) if end < 0 else end) - self.pos)
            else:
                return

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            found = repr(self.peek()) if self.peek() else "end of input"
            raise self.error(f"unexpected {found}, expecting '{ch}'")
        self._advance(1)

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _NAME_CHARS:
            self.pos += 1
            self.col += 1
        if self.pos == start:
            found = repr(self.peek()) if self.peek() else "end of input"
            raise self.error(f"unexpected {found}, expecting VARIABLE")
        return self.text[start : self.pos].upper()

    def value(self) -> str:
        ch = self.peek()
        if ch == '"':
            self._advance(1)
            out = []
            text = self.text
            while True:
                if self.pos >= len(text):
                    raise self.error("unterminated string")
                c = text[self.pos]
                if c == "\\" and text[self.pos + 1 : self.pos + 2] == '"':
                    out.append('"')
                    self._advance(2)
                elif c == '"':
                    self._advance(1)
                    return "".join(out)
                else:
                    out.append(c)
                    self._advance(1)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _PLAIN_STOP:
            self.pos += 1
            self.col += 1
        return self.text[start : self.pos]


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
            lx._advance(1)
            vector: dict[str, str] = {}
            lx.skip()
            if lx.peek() == "]":
                lx._advance(1)
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
                        lx._advance(1)
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
