"""The VROUTER object (mirrors ``VirtualRouter.h``): an owned, lockable template whose
NICs (floating IPs leased to the router itself) are given to the VMs it instantiates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import (
    Lock,
    Permissions,
    copy_object,
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
from oned.template import Template

#: NIC attributes a floating IP's lease moves to ``VROUTER_<name>`` in the VMs' NICs.
FLOATING_ATTRS = ("MAC", "IP", "IP6_LINK", "IP6_ULA", "IP6_GLOBAL", "VLAN_ID")
#: ``VirtualMachineTemplate::restricted_nic``: what a floating NIC does not pass on.
RESTRICTED_NIC = ("MAC", "IP", "IP6", "IP6_GLOBAL", "IP6_ULA", "IP6_LINK", "VLAN_ID", "AR_ID")


def is_floating(nic: dict[str, str]) -> bool:
    return nic.get("FLOATING_IP", "").strip().upper() == "YES"


def nic_for_vm(nic: dict[str, str]) -> dict[str, str]:
    """``prepare_nic_vm``: a floating NIC's address becomes ``VROUTER_*`` for the VMs."""
    out = dict(nic)
    if is_floating(out):
        for name in FLOATING_ATTRS:
            if name in out:
                out[f"VROUTER_{name}"] = out.pop(name)
        for name in RESTRICTED_NIC:
            out.pop(name, None)
    return out


@dataclass
class VirtualRouter:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    lock: Lock = field(default_factory=Lock)
    vms: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "vrouter_pool"
    ROOT: ClassVar[str] = "VROUTER"

    def to_xml(self) -> str:
        return (
            f"<VROUTER><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"{self.perms.to_xml()}{self.lock.to_xml()}{ids_xml('VMS', self.vms)}"
            f"{self.template.to_xml()}</VROUTER>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> VirtualRouter:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            lock=Lock.from_xml(root),
            vms=set(ids_of(root, "VMS")),
            template=template_of(root),
        )

    def copy(self) -> VirtualRouter:
        return copy_object(self)

    def nics(self) -> list[dict[str, str]]:
        return self.template.vectors("NIC")

    def vm_template(self) -> Template:
        """``get_vm_template``: the NICs, VROUTER_ID and the keepalived settings every
        VM of the router gets on top of its template."""
        tmpl = Template()
        for nic in self.nics():
            tmpl.add("NIC", nic_for_vm(nic))
        tmpl.set("VROUTER_ID", str(self.oid))
        raw = self.template.get("KEEPALIVED_ID") or ""
        keepalived = raw if raw.strip().lstrip("-").isdigit() else str(self.oid % 255 + 1)
        tmpl.set("VROUTER_KEEPALIVED_ID", keepalived.strip())
        password = self.template.get("KEEPALIVED_PASSWORD") or ""
        if password:
            tmpl.set("VROUTER_KEEPALIVED_PASSWORD", password)
        return tmpl
