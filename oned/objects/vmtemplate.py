"""The VMTEMPLATE object (mirrors ``VMTemplate.h``), and what it shares with
``VNTEMPLATE``.

An owned, lockable template: the ``TEMPLATE`` a VM (or a network) is instantiated from
(NAME is kept apart, as oned erases it from the template on insert), and its
registration time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from oned.objects.base import (
    Lock,
    Permissions,
    copy_object,
    esc,
    int_of,
    owner_columns,
    owner_fields,
    owner_xml,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template


@dataclass
class TemplateObject:
    """``VMTemplate``/``VNTemplate``: the same document under its own ROOT."""

    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    lock: Lock = field(default_factory=Lock)
    regtime: int = 0
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = ""
    ROOT: ClassVar[str] = ""

    def to_xml(self, tmpl: Template | None = None) -> str:
        """The document; ``tmpl`` replaces the stored template (``info`` extended)."""
        body = (self.template if tmpl is None else tmpl).to_xml()
        return (
            f"<{self.ROOT}><ID>{self.oid}</ID>{owner_xml(self)}"
            f"<NAME>{esc(self.name)}</NAME>{self.lock.to_xml()}{self.perms.to_xml()}"
            f"<REGTIME>{self.regtime}</REGTIME>{body}</{self.ROOT}>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> Self:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            lock=Lock.from_xml(root),
            regtime=int_of(root, "REGTIME"),
            template=template_of(root),
        )

    def copy(self) -> Self:
        return copy_object(self)


@dataclass
class VMTemplate(TemplateObject):
    TABLE: ClassVar[str] = "template_pool"
    ROOT: ClassVar[str] = "VMTEMPLATE"

    def is_vrouter(self) -> bool:
        """``VROUTER=YES`` (the first single VROUTER, case-insensitive, as oned reads a bool)."""
        return (self.template.get("VROUTER") or "").upper() == "YES"
