"""The GROUP object (mirrors ``Group.h``/``Group.cc``).

The stored body is the short form (up to ``ADMINS``); ``one.group.info`` appends the
quotas, the VLAN rules and the default group quotas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import esc, ids_of, ids_xml, int_of, parse_xml, template_of, text_of
from oned.template import Template

ONEADMIN_GID = 0
USERS_GID = 1
INVALID_NAME_CHARS = ""


@dataclass
class Group:
    """An OpenNebula group."""

    oid: int
    name: str
    template: Template = field(default_factory=Template)
    users: set[int] = field(default_factory=set)
    admins: set[int] = field(default_factory=set)

    TABLE: ClassVar[str] = "group_pool"
    ROOT: ClassVar[str] = "GROUP"

    def to_xml(self) -> str:
        return (
            f"<GROUP><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME>"
            f"{self.template.to_xml()}{ids_xml('USERS', self.users)}"
            f"{ids_xml('ADMINS', self.admins)}</GROUP>"
        )

    def columns(self) -> dict[str, Any]:
        return {"uid": 0, "gid": self.oid, "owner_u": 1, "group_u": 0, "other_u": 0}

    @classmethod
    def from_xml(cls, body: str) -> Group:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            template=template_of(root),
            users=set(ids_of(root, "USERS")),
            admins=set(ids_of(root, "ADMINS")),
        )

    def copy(self) -> Group:
        return Group(self.oid, self.name, self.template.copy(), set(self.users), set(self.admins))
