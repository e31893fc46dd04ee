"""Pieces every pool object shares (mirrors ``PoolObjectSQL``, ``PoolObjectAuth``).

Permissions, locks, id lists and the safe XML reader used to load stored bodies and
client documents (entities and network access disabled).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from enum import IntEnum
from typing import Any, ClassVar, Protocol, TypeVar

from lxml import etree

from oned.template import Template, xml_escape

SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


class Op(IntEnum):
    """``AuthRequest::Operation``: the rights bits of ACL rules."""

    USE = 0x1
    MANAGE = 0x2
    ADMIN = 0x4
    CREATE = 0x8


class LockLevel(IntEnum):
    NONE = 0
    USE = 1
    MANAGE = 2
    ADMIN = 3


def parse_xml(text: str) -> etree._Element:
    """Parse a stored body or client document safely."""
    return etree.fromstring(text.encode(), SAFE_PARSER)


def text_of(el: etree._Element, path: str, default: str = "") -> str:
    found = el.find(path)
    if found is None or found.text is None:
        return default
    return found.text


def int_of(el: etree._Element, path: str, default: int = 0) -> int:
    raw = text_of(el, path, "")
    try:
        return int(raw)
    except ValueError:
        return default


def template_of(el: etree._Element, path: str = "TEMPLATE") -> Template:
    """Rebuild a template from its rendered XML (single and vector attributes)."""
    tmpl = Template()
    node = el.find(path)
    if node is None:
        return tmpl
    for child in node:
        if not isinstance(child.tag, str):
            continue
        subs = [c for c in child if isinstance(c.tag, str)]
        if subs:
            tmpl.items.append((str(child.tag), {str(s.tag): s.text or "" for s in subs}))
        else:
            tmpl.items.append((str(child.tag), child.text or ""))
    return tmpl


def ids_xml(tag: str, ids: Any) -> str:
    """An ``IDS`` collection: ascending ``<ID>`` children, empty as start+end tags."""
    inner = "".join(f"<ID>{i}</ID>" for i in sorted(ids))
    return f"<{tag}>{inner}</{tag}>"


def ids_of(el: etree._Element, path: str) -> list[int]:
    node = el.find(path)
    if node is None:
        return []
    return [int(c.text) for c in node.findall("ID") if c.text]


def esc(value: object) -> str:
    return xml_escape(str(value))


@dataclass
class Permissions:
    """The nine OWNER/GROUP/OTHER x USE/MANAGE/ADMIN bits."""

    owner_u: int = 1
    owner_m: int = 1
    owner_a: int = 0
    group_u: int = 0
    group_m: int = 0
    group_a: int = 0
    other_u: int = 0
    other_m: int = 0
    other_a: int = 0

    FIELDS: ClassVar[tuple[str, ...]] = (
        "owner_u",
        "owner_m",
        "owner_a",
        "group_u",
        "group_m",
        "group_a",
        "other_u",
        "other_m",
        "other_a",
    )

    @classmethod
    def from_octal(cls, mode: int) -> Permissions:
        bits = [(mode >> shift) & 7 for shift in (6, 3, 0)]
        vals: list[int] = []
        for b in bits:
            vals += [1 if b & 4 else 0, 1 if b & 2 else 0, 1 if b & 1 else 0]
        return cls(*vals)

    def to_octal(self) -> int:
        v = self.values()
        out = 0
        for i in range(3):
            out = out * 8 + v[3 * i] * 4 + v[3 * i + 1] * 2 + v[3 * i + 2]
        return out

    @classmethod
    def for_new_object(
        cls, uid: int, gid: int, umask: int, enable_other: bool = True
    ) -> Permissions:
        """``PoolObjectSQL::set_umask``: base 0777 for oneadmin, else 0666 (0660)."""
        if uid == 0 or gid == 0:
            base = 0o777
        else:
            base = 0o666 if enable_other else 0o660
        return cls.from_octal(base & ~umask)

    def values(self) -> list[int]:
        return [getattr(self, f) for f in self.FIELDS]

    def to_xml(self) -> str:
        inner = "".join(f"<{f.upper()}>{getattr(self, f)}</{f.upper()}>" for f in self.FIELDS)
        return f"<PERMISSIONS>{inner}</PERMISSIONS>"

    @classmethod
    def from_xml(cls, el: etree._Element) -> Permissions:
        node = el.find("PERMISSIONS")
        if node is None:
            return cls()
        return cls(*(int_of(node, f.upper()) for f in cls.FIELDS))


@dataclass
class Lock:
    """``LOCK`` element: present only while locked."""

    locked: int = 0
    owner: int = -1
    time: int = 0
    req_id: int = -1

    def to_xml(self) -> str:
        if not self.locked:
            return ""
        return (
            f"<LOCK><LOCKED>{self.locked}</LOCKED><OWNER>{self.owner}</OWNER>"
            f"<TIME>{self.time}</TIME><REQ_ID>{self.req_id}</REQ_ID></LOCK>"
        )

    @classmethod
    def from_xml(cls, el: etree._Element) -> Lock:
        node = el.find("LOCK")
        if node is None:
            return cls()
        return cls(
            int_of(node, "LOCKED"),
            int_of(node, "OWNER", -1),
            int_of(node, "TIME"),
            int_of(node, "REQ_ID", -1),
        )


class PoolObject(Protocol):
    """What a pool needs from the objects it stores."""

    oid: int
    name: str

    def to_xml(self) -> str: ...

    def columns(self) -> dict[str, Any]: ...


class OwnedObject(Protocol):
    """Objects with an owner, a group and permission bits."""

    uid: int
    gid: int
    uname: str
    gname: str
    perms: Permissions


def owner_xml(obj: OwnedObject) -> str:
    """``<UID>..</UID><GID>..</GID><UNAME>..</UNAME><GNAME>..</GNAME>``."""
    return (
        f"<UID>{obj.uid}</UID><GID>{obj.gid}</GID>"
        f"<UNAME>{esc(obj.uname)}</UNAME><GNAME>{esc(obj.gname)}</GNAME>"
    )


def owner_columns(obj: OwnedObject) -> dict[str, Any]:
    """The uid/gid/owner_u/group_u/other_u search columns."""
    return {
        "uid": obj.uid,
        "gid": obj.gid,
        "owner_u": obj.perms.owner_u,
        "group_u": obj.perms.group_u,
        "other_u": obj.perms.other_u,
    }


def owner_fields(root: etree._Element) -> dict[str, Any]:
    """Constructor arguments read back from ``owner_xml`` and ``PERMISSIONS``."""
    return {
        "uid": int_of(root, "UID"),
        "gid": int_of(root, "GID"),
        "uname": text_of(root, "UNAME"),
        "gname": text_of(root, "GNAME"),
        "perms": Permissions.from_xml(root),
    }


_T = TypeVar("_T")


def copy_object(obj: _T) -> _T:
    """The working copy a pool object is changed on: the same values, with every set,
    list, dict, template and nested dataclass (permissions, lock) copied, so the object
    the pool holds is never changed in place."""
    assert is_dataclass(obj) and not isinstance(obj, type)
    changes = {f.name: _copied(getattr(obj, f.name)) for f in fields(obj) if f.init}
    return replace(obj, **changes)


#: Element types a set or list is copied with at C speed (nothing inside to copy): a
#: security group's or image's VM ids run into the thousands.
_SCALARS = frozenset({int, str, float, bool, type(None)})


def _copied(value: Any) -> Any:
    if isinstance(value, set):
        if set(map(type, value)) <= _SCALARS:
            return set(value)
        return {_copied(v) for v in value}
    if isinstance(value, list):
        if set(map(type, value)) <= _SCALARS:
            return list(value)
        return [_copied(v) for v in value]
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, Template):
        return value.copy()
    if is_dataclass(value) and not isinstance(value, type):
        return copy_object(value)
    return value
