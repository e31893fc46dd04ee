"""The DATASTORE object (mirrors ``Datastore.h``)."""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import (
    Permissions,
    esc,
    ids_of,
    ids_xml,
    int_of,
    owner_columns,
    owner_fields,
    owner_xml,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template, cdata

IMAGE_DS = 0
SYSTEM_DS = 1
FILE_DS = 2
BACKUP_DS = 3

READY = 0
DISABLED = 1


@dataclass
class Datastore:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    ds_mad: str = ""
    tm_mad: str = ""
    base_path: str = ""
    type: int = IMAGE_DS
    disk_type: int = 0
    state: int = READY
    clusters: set[int] = field(default_factory=set)
    total_mb: int = 0
    free_mb: int = 0
    used_mb: int = 0
    images: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "datastore_pool"
    ROOT: ClassVar[str] = "DATASTORE"

    def to_xml(self) -> str:
        return (
            f"<DATASTORE><ID>{self.oid}</ID>{owner_xml(self)}"
            f"<NAME>{esc(self.name)}</NAME>{self.perms.to_xml()}"
            f"<DS_MAD>{cdata(self.ds_mad)}</DS_MAD><TM_MAD>{cdata(self.tm_mad)}</TM_MAD>"
            f"<BASE_PATH>{cdata(self.base_path)}</BASE_PATH><TYPE>{self.type}</TYPE>"
            f"<DISK_TYPE>{self.disk_type}</DISK_TYPE><STATE>{self.state}</STATE>"
            f"{ids_xml('CLUSTERS', self.clusters)}<TOTAL_MB>{self.total_mb}</TOTAL_MB>"
            f"<FREE_MB>{self.free_mb}</FREE_MB><USED_MB>{self.used_mb}</USED_MB>"
            f"{ids_xml('IMAGES', self.images)}{self.template.to_xml()}</DATASTORE>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> Datastore:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            ds_mad=text_of(root, "DS_MAD"),
            tm_mad=text_of(root, "TM_MAD"),
            base_path=text_of(root, "BASE_PATH"),
            type=int_of(root, "TYPE"),
            disk_type=int_of(root, "DISK_TYPE"),
            state=int_of(root, "STATE"),
            clusters=set(ids_of(root, "CLUSTERS")),
            total_mb=int_of(root, "TOTAL_MB"),
            free_mb=int_of(root, "FREE_MB"),
            used_mb=int_of(root, "USED_MB"),
            images=set(ids_of(root, "IMAGES")),
            template=template_of(root),
        )

    def copy(self) -> Datastore:
        """A copy to change: the id sets and the template are copied, not shared."""
        new = _copy.copy(self)
        new.perms = _copy.copy(self.perms)
        new.clusters = set(self.clusters)
        new.images = set(self.images)
        new.template = self.template.copy()
        return new
