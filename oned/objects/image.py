"""The IMAGE object (mirrors ``Image.h``).

Skeleton: the images work fills in the whole document and the state machine.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import (
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
class Image:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    state: int = 0
    datastore_id: int = -1
    datastore: str = ""
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "image_pool"
    ROOT: ClassVar[str] = "IMAGE"

    def to_xml(self) -> str:
        return (
            f"<IMAGE><ID>{self.oid}</ID>{owner_xml(self)}"
            f"<NAME>{esc(self.name)}</NAME>{self.perms.to_xml()}"
            f"<STATE>{self.state}</STATE><DATASTORE_ID>{self.datastore_id}</DATASTORE_ID>"
            f"<DATASTORE>{esc(self.datastore)}</DATASTORE>{self.template.to_xml()}</IMAGE>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> Image:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            state=int_of(root, "STATE"),
            datastore_id=int_of(root, "DATASTORE_ID", -1),
            datastore=text_of(root, "DATASTORE"),
            template=template_of(root),
        )

    def copy(self) -> Image:
        return _copy.deepcopy(self)
