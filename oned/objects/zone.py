"""The ZONE object (mirrors ``Zone.h``); this daemon serves the local zone 0."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import esc, int_of, parse_xml, template_of, text_of
from oned.template import Template

ENABLED = 0
DISABLED = 1


@dataclass
class Zone:
    oid: int
    name: str
    state: int = ENABLED
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "zone_pool"
    ROOT: ClassVar[str] = "ZONE"

    def to_xml(self) -> str:
        return (
            f"<ZONE><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME>"
            f"<STATE>{self.state}</STATE>{self.template.to_xml()}"
            "<SERVER_POOL></SERVER_POOL></ZONE>"
        )

    def columns(self) -> dict[str, Any]:
        return {"uid": 0, "gid": 0, "owner_u": 1, "group_u": 0, "other_u": 0}

    @classmethod
    def from_xml(cls, body: str) -> Zone:
        root = parse_xml(body)
        return cls(
            int_of(root, "ID"), text_of(root, "NAME"), int_of(root, "STATE"), template_of(root)
        )

    def copy(self) -> Zone:
        return Zone(self.oid, self.name, self.state, self.template.copy())
