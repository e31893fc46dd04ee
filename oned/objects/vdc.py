"""The VDC object (mirrors ``Vdc.h``): groups and (zone, resource) sets whose ACL
rules give the groups their resources."""

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

#: ``Vdc::ALL_RESOURCES``: every resource of the zone.
ALL_RESOURCES = -10
DEFAULT_VDC_ID = 0

#: Resource set -> (element name, ACL type, oned.conf setting of its rights), in the
#: order oned writes them. A cluster set gives three rules per (group, cluster).
RESOURCE_SETS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "CLUSTER": (
        "CLUSTERS",
        (
            ("HOST", "DEFAULT_VDC_CLUSTER_HOST_ACL"),
            ("NET", "DEFAULT_VDC_CLUSTER_NET_ACL"),
            ("DATASTORE", "DEFAULT_VDC_CLUSTER_DATASTORE_ACL"),
        ),
    ),
    "HOST": ("HOSTS", (("HOST", "DEFAULT_VDC_HOST_ACL"),)),
    "DATASTORE": ("DATASTORES", (("DATASTORE", "DEFAULT_VDC_DATASTORE_ACL"),)),
    "VNET": ("VNETS", (("NET", "DEFAULT_VDC_VNET_ACL"),)),
}


@dataclass
class Vdc:
    oid: int
    name: str
    groups: set[int] = field(default_factory=set)
    #: Set name ("CLUSTER", "HOST", "DATASTORE", "VNET") -> {(zone id, resource id)}.
    resources: dict[str, set[tuple[int, int]]] = field(
        default_factory=lambda: {kind: set() for kind in RESOURCE_SETS}
    )
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "vdc_pool"
    ROOT: ClassVar[str] = "VDC"

    def to_xml(self) -> str:
        parts = [f"<VDC><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME>"]
        parts.append(ids_xml("GROUPS", self.groups))
        for kind, (element, _rules) in RESOURCE_SETS.items():
            parts.append(f"<{element}>")
            for zone, rid in sorted(self.resources[kind]):
                parts.append(
                    f"<{kind}><ZONE_ID>{zone}</ZONE_ID><{kind}_ID>{rid}</{kind}_ID></{kind}>"
                )
            parts.append(f"</{element}>")
        parts.append(f"{self.template.to_xml()}</VDC>")
        return "".join(parts)

    def columns(self) -> dict[str, Any]:
        return {"uid": 0, "gid": 0, "owner_u": 1, "group_u": 0, "other_u": 0}

    @classmethod
    def from_xml(cls, body: str) -> Vdc:
        root = parse_xml(body)
        resources: dict[str, set[tuple[int, int]]] = {}
        for kind, (element, _rules) in RESOURCE_SETS.items():
            found = set()
            for node in root.findall(f"{element}/{kind}"):
                found.add((int_of(node, "ZONE_ID"), int_of(node, f"{kind}_ID")))
            resources[kind] = found
        return cls(
            int_of(root, "ID"),
            text_of(root, "NAME"),
            set(ids_of(root, "GROUPS")),
            resources,
            template_of(root),
        )

    def copy(self) -> Vdc:
        return copy_object(self)
