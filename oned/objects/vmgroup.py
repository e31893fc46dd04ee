"""The VM_GROUP object (mirrors ``VMGroup``, ``VMGroupRoles`` and ``VMGroupRule``).

Roles are ``ROLE`` vectors (ID, NAME, POLICY, HOST_AFFINED, HOST_ANTI_AFFINED, VMS)
written as oned writes a vector attribute: keys in name order, values in CDATA. The
template keeps the AFFINED/ANTI_AFFINED rules (role names, comma separated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

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
from oned.template.template import cdata

MAX_ROLES = 32
POLICIES = ("AFFINED", "ANTI_AFFINED")


class VMGroupError(Exception):
    """A role or rule oned refuses, with its text."""


def _ids(text: str) -> list[int]:
    parts = (p.strip() for p in text.split(","))
    return sorted({int(p) for p in parts if p.lstrip("-").isdigit()})


def _singles(tmpl: Template, name: str) -> list[str]:
    return [v for n, v in tmpl.items if n == name and isinstance(v, str)]


@dataclass
class VMGroup:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    lock: Lock = field(default_factory=Lock)
    roles: list[dict[str, str]] = field(default_factory=list)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "vmgroup_pool"
    ROOT: ClassVar[str] = "VM_GROUP"

    # -- document ---------------------------------------------------------------------

    def to_xml(self) -> str:
        roles = "".join(
            "<ROLE>" + "".join(f"<{k}>{cdata(role[k])}</{k}>" for k in sorted(role)) + "</ROLE>"
            for role in sorted(self.roles, key=lambda r: int(r["ID"]))
        )
        return (
            f"<VM_GROUP><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"{self.perms.to_xml()}{self.lock.to_xml()}<ROLES>{roles}</ROLES>"
            f"{self.template.to_xml()}</VM_GROUP>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> VMGroup:
        root = parse_xml(body)
        roles = [
            {str(c.tag): c.text or "" for c in node if isinstance(c.tag, str)}
            for node in root.findall("ROLES/ROLE")
        ]
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            lock=Lock.from_xml(root),
            roles=roles,
            template=template_of(root),
        )

    def copy(self) -> VMGroup:
        return copy_object(self)

    # -- roles ------------------------------------------------------------------------

    def role(self, key: int | str) -> dict[str, str] | None:
        for role in self.roles:
            if (isinstance(key, int) and role.get("ID") == str(key)) or role.get("NAME") == key:
                return role
        return None

    def next_role_id(self) -> int:
        return max((int(r["ID"]) for r in self.roles), default=-1) + 1

    def add_role(self, vector: dict[str, str], next_id: int | None = None) -> None:
        """``VMGroupRoles::add_role``: the next ID, no VMS."""
        name = vector.get("NAME", "")
        if not name:
            raise VMGroupError("Missing NAME in VM group role")
        role = {k: v for k, v in vector.items() if k not in ("ID", "VMS")}
        role["ID"] = str(self.next_role_id() if next_id is None else next_id)
        if self.role(name) is not None:
            raise VMGroupError("Role already exists")
        self.roles.append(role)

    def vms_of(self, role: dict[str, str]) -> list[int]:
        return _ids(role.get("VMS", ""))

    def vm_count(self) -> int:
        return sum(len(self.vms_of(r)) for r in self.roles)

    def set_vms(self, role: dict[str, str], vms: list[int]) -> None:
        if vms:
            role["VMS"] = ",".join(str(v) for v in sorted(set(vms)))
        else:
            role.pop("VMS", None)

    def add_vm(self, role_name: str, vid: int) -> bool:
        role = self.role(role_name)
        if role is None:
            return False
        self.set_vms(role, [*self.vms_of(role), vid])
        return True

    def del_vm(self, role_name: str, vid: int) -> None:
        role = self.role(role_name)
        if role is not None:
            self.set_vms(role, [v for v in self.vms_of(role) if v != vid])

    # -- rules ------------------------------------------------------------------------

    def _rule_ids(self, value: str) -> set[int] | None:
        names = {n.strip() for n in value.split(",") if n.strip()}
        ids = set()
        for name in names:
            role = self.role(name)
            if role is None:
                return None
            ids.add(int(role["ID"]))
        return ids

    def rules(self, policy: str) -> list[frozenset[int]]:
        """``get_rules``: each AFFINED/ANTI_AFFINED attribute as a set of role ids."""
        found: list[frozenset[int]] = []
        for value in _singles(self.template, policy):
            ids = self._rule_ids(value) or set()
            rule = frozenset(ids)
            if rule in found:
                raise VMGroupError(f"Duplicated {policy} rule ({value}) detected.")
            found.append(rule)
        return found

    def check_consistency(self) -> None:
        """``VMGroup::check_consistency``: rules name defined roles, AFFINED rules hold
        no ANTI_AFFINED role, and no two roles are both affined and anti-affined."""
        for policy in POLICIES:
            for value in _singles(self.template, policy):
                if self._rule_ids(value) is None:
                    raise VMGroupError(
                        f"Some roles used in {policy} attribute ({value}) are not defined"
                    )
        affined = self.rules("AFFINED")
        for rule in affined:
            for rid in sorted(rule):
                role = self.role(rid)
                if role is not None and role.get("POLICY", "").upper() == "ANTI_AFFINED":
                    raise VMGroupError(
                        f"Role {role['NAME']} is in an AFFINED rule but the role policy is "
                        "ANTI_AFFINED"
                    )
        anti = self.rules("ANTI_AFFINED")
        both = set().union(*affined) & set().union(*anti)
        if both:
            names = "".join(f" {(self.role(i) or {}).get('NAME', '')}" for i in sorted(both))
            raise VMGroupError(f"Roles defined in AFFINED and ANTI_AFFINED rules:{names}")
