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
    #: ``ZoneServers``: one SERVER vector (ID, NAME, ENDPOINT...) per HA server.
    servers: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "zone_pool"
    ROOT: ClassVar[str] = "ZONE"

    def to_xml(self) -> str:
        return (
            f"<ZONE><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME>"
            f"<STATE>{self.state}</STATE>{self.template.to_xml()}"
            f"{self.servers.to_xml('SERVER_POOL')}</ZONE>"
        )

    def server_ids(self) -> list[int]:
        return [int(v.get("ID", "-1")) for v in self.servers.vectors("SERVER")]

    def add_server(self, server: dict[str, str]) -> int:
        """``ZoneServers::add_server``: check NAME and an endpoint, give the next id."""
        if not server.get("NAME"):
            raise ValueError("Missing NAME in SERVER")
        if not server.get("ENDPOINT") and not server.get("ENDPOINT_GRPC"):
            raise ValueError("Missing ENDPOINT or ENDPOINT_GRPC in SERVER")
        sid = max(self.server_ids(), default=-1) + 1
        self.servers.items.append(("SERVER", {**server, "ID": str(sid)}))
        return sid

    def delete_server(self, sid: int) -> None:
        kept = [(n, v) for n, v in self.servers.items if not _is_server(v, sid)]
        if len(kept) == len(self.servers.items):
            raise ValueError("SERVER not found in zone")
        self.servers.items = kept

    def columns(self) -> dict[str, Any]:
        return {"uid": 0, "gid": 0, "owner_u": 1, "group_u": 0, "other_u": 0}

    @classmethod
    def from_xml(cls, body: str) -> Zone:
        root = parse_xml(body)
        return cls(
            int_of(root, "ID"),
            text_of(root, "NAME"),
            int_of(root, "STATE"),
            template_of(root),
            template_of(root, "SERVER_POOL"),
        )

    def copy(self) -> Zone:
        return Zone(self.oid, self.name, self.state, self.template.copy(), self.servers.copy())


def _is_server(value: object, sid: int) -> bool:
    return isinstance(value, dict) and value.get("ID") == str(sid)
