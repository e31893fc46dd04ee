"""The DOCUMENT object (mirrors ``Document.h``): a generic owned, lockable template.

OneFlow and other tools store their state as documents of a numeric TYPE.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import (
    Lock,
    Permissions,
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
class Document:
    oid: int
    name: str
    uid: int
    gid: int
    uname: str
    gname: str
    type: int = 0
    perms: Permissions = field(default_factory=Permissions)
    lock: Lock = field(default_factory=Lock)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "document_pool"
    ROOT: ClassVar[str] = "DOCUMENT"

    def to_xml(self) -> str:
        return (
            f"<DOCUMENT><ID>{self.oid}</ID>{owner_xml(self)}"
            f"<NAME>{esc(self.name)}</NAME><TYPE>{self.type}</TYPE>{self.perms.to_xml()}"
            f"{self.lock.to_xml()}{self.template.to_xml()}</DOCUMENT>"
        )

    def columns(self) -> dict[str, Any]:
        return {"type": self.type, **owner_columns(self)}

    @classmethod
    def from_xml(cls, body: str) -> Document:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            type=int_of(root, "TYPE"),
            lock=Lock.from_xml(root),
            template=template_of(root),
        )

    def copy(self) -> Document:
        return _copy.deepcopy(self)
