"""The CLUSTER object (mirrors ``Cluster.h``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import (
    copy_object,
    esc,
    ids_of,
    ids_xml,
    int_of,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template

DEFAULT_CLUSTER_ID = 0


@dataclass
class Cluster:
    oid: int
    name: str
    hosts: set[int] = field(default_factory=set)
    datastores: set[int] = field(default_factory=set)
    vnets: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "cluster_pool"
    ROOT: ClassVar[str] = "CLUSTER"

    def to_xml(self) -> str:
        return (
            f"<CLUSTER><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME>"
            f"{ids_xml('HOSTS', self.hosts)}{ids_xml('DATASTORES', self.datastores)}"
            f"{ids_xml('VNETS', self.vnets)}{self.template.to_xml()}</CLUSTER>"
        )

    def columns(self) -> dict[str, Any]:
        return {"uid": 0, "gid": 0, "owner_u": 1, "group_u": 0, "other_u": 0}

    @classmethod
    def from_xml(cls, body: str) -> Cluster:
        root = parse_xml(body)
        return cls(
            int_of(root, "ID"),
            text_of(root, "NAME"),
            set(ids_of(root, "HOSTS")),
            set(ids_of(root, "DATASTORES")),
            set(ids_of(root, "VNETS")),
            template_of(root),
        )

    def copy(self) -> Cluster:
        return copy_object(self)
