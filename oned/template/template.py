"""Attribute multimap of OpenNebula templates (mirrors ``Template.h``/``Attribute.h``).

A template is an ordered multimap of attributes. A single attribute holds a string; a
vector attribute holds an ordered mapping of upper-case keys to strings. Rendering sorts
attributes by name (equal names keep their insertion order) and vector keys by name, and
wraps every value in CDATA, exactly like oned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

Value = str | dict[str, str]


def xml_escape(text: str) -> str:
    """Escape text for an XML element body."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cdata(text: str) -> str:
    """Wrap a value in CDATA, splitting any ``]]>`` so the document stays well-formed."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass
class Template:
    """An ordered multimap of single and vector attributes."""

    items: list[tuple[str, Value]] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self.items)

    def copy(self) -> Template:
        return Template([(n, dict(v) if isinstance(v, dict) else v) for n, v in self.items])

    def add(self, name: str, value: Value) -> None:
        self.items.append((name.upper(), value))

    def set(self, name: str, value: Value) -> None:
        """Replace every attribute called ``name`` by one with ``value``."""
        self.erase(name)
        self.add(name, value)

    def erase(self, name: str) -> int:
        name = name.upper()
        before = len(self.items)
        self.items = [(n, v) for n, v in self.items if n != name]
        return before - len(self.items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """First single attribute called ``name`` (vectors are skipped)."""
        name = name.upper()
        for n, v in self.items:
            if n == name and isinstance(v, str):
                return v
        return default

    def get_last(self, name: str, default: str | None = None) -> str | None:
        """Last single attribute called ``name`` (later definitions override)."""
        name = name.upper()
        found = default
        for n, v in self.items:
            if n == name and isinstance(v, str):
                found = v
        return found

    def get_vector(self, name: str) -> dict[str, str] | None:
        name = name.upper()
        for n, v in self.items:
            if n == name and isinstance(v, dict):
                return v
        return None

    def vectors(self, name: str) -> list[dict[str, str]]:
        name = name.upper()
        return [v for n, v in self.items if n == name and isinstance(v, dict)]

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for n, _ in self.items:
            seen.setdefault(n)
        return list(seen)

    def merge(self, other: Template) -> None:
        """Update mode 1: every name in ``other`` replaces all attributes of that name.

        An empty vector in ``other`` only deletes.
        """
        for name in other.names():
            self.erase(name)
        for name, value in other.items:
            if isinstance(value, dict) and not value:
                continue
            self.items.append((name, value))

    def sorted_items(self) -> list[tuple[str, Value]]:
        return sorted(self.items, key=lambda item: item[0])

    def to_xml(self, root: str = "TEMPLATE") -> str:
        """Render as oned does: sorted names, sorted vector keys, CDATA values."""
        out = [f"<{root}>"]
        for name, value in self.sorted_items():
            if isinstance(value, dict):
                out.append(f"<{name}>")
                for key in sorted(value):
                    out.append(f"<{key}>{cdata(value[key])}</{key}>")
                out.append(f"</{name}>")
            else:
                out.append(f"<{name}>{cdata(value)}</{name}>")
        out.append(f"</{root}>")
        return "".join(out)

    def to_str(self) -> str:
        """Text form that the template parser reads back to an equal template."""
        lines = []
        for name, value in self.items:
            if isinstance(value, dict):
                inner = ",\n  ".join(f'{k}="{quote(v)}"' for k, v in value.items())
                lines.append(f"{name}=[\n  {inner} ]")
            else:
                lines.append(f'{name}="{quote(value)}"')
        return "\n".join(lines) + ("\n" if lines else "")

    def flat_lines(self) -> list[str]:
        """``NAME=value`` per attribute, vectors as ``NAME=K1=v1,K2=v2`` (var/config)."""
        lines = []
        for name, value in self.items:
            if isinstance(value, dict):
                lines.append(name + "=" + ",".join(f"{k}={v}" for k, v in value.items()))
            else:
                lines.append(f"{name}={value}")
        return lines

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, Value]]) -> Template:
        return cls([(n.upper(), v) for n, v in pairs])

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Template:
        return cls([(k.upper(), v) for k, v in mapping.items()])


def quote(value: str) -> str:
    """Escape a value for the double-quoted form of the text syntax."""
    return value.replace('"', '\\"')
