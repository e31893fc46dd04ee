"""The VNET object (mirrors ``VirtualNetwork.h``/``VirtualNetwork.cc``).

An owned, lockable network in one or more clusters, with its state machine (INIT,
READY, LOCK_CREATE, LOCK_DELETE, DONE, ERROR, UPDATE_FAILURE), the driver attributes
kept apart from the template (VN_MAD, BRIDGE, BRIDGE_TYPE, PHYDEV, VLAN ids) and its
address ranges. The stored form has the ARs as oned stores them (``ALLOCATED``
first); ``to_xml_extended`` is the ``one.vn.info`` form with LEASES.

``copy()`` shares the address ranges: lease changes are made in place on the ranges of
the committed object under the network's lock and undone if the commit fails
(``LeaseChanges``), so a lease costs the same whatever the range's size. Changes to
the ranges themselves replace range objects in the copy's list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.address_range import AddressRange
from oned.objects.base import (
    Lock,
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

INIT, READY, LOCK_CREATE, LOCK_DELETE, DONE, ERROR, UPDATE_FAILURE = range(7)
STATE_NAMES = {
    INIT: "INIT",
    READY: "READY",
    LOCK_CREATE: "LOCK_CREATE",
    LOCK_DELETE: "LOCK_DELETE",
    DONE: "DONE",
    ERROR: "ERROR",
}


def state_name(state: int) -> str:
    """``state_to_str`` (UPDATE_FAILURE has no name there)."""
    return STATE_NAMES.get(state, "")


def _opt(tag: str, value: str) -> str:
    return f"<{tag}>{cdata(value)}</{tag}>" if value else f"<{tag}/>"


@dataclass
class VirtualNetwork:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    lock: Lock = field(default_factory=Lock)
    clusters: set[int] = field(default_factory=set)
    bridge: str = ""
    bridge_type: str = ""
    state: int = LOCK_CREATE
    prev_state: int = INIT
    parent: int = -1
    template_id: int = -1
    vn_mad: str = ""
    phydev: str = ""
    vlan_id: str = ""
    outer_vlan_id: str = ""
    vlan_id_automatic: bool = False
    outer_vlan_id_automatic: bool = False
    vrouters: set[int] = field(default_factory=set)
    updated: set[int] = field(default_factory=set)
    outdated: set[int] = field(default_factory=set)
    updating: set[int] = field(default_factory=set)
    error_vms: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)
    ars: list[AddressRange] = field(default_factory=list)
    next_ar: int = 0

    TABLE: ClassVar[str] = "network_pool"
    ROOT: ClassVar[str] = "VNET"

    # -- documents -------------------------------------------------------------------

    def _head(self) -> str:
        return (
            f"<VNET><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"{self.lock.to_xml()}{self.perms.to_xml()}{ids_xml('CLUSTERS', self.clusters)}"
            f"<BRIDGE>{cdata(self.bridge)}</BRIDGE>"
            f"<BRIDGE_TYPE>{cdata(self.bridge_type)}</BRIDGE_TYPE>"
            f"<STATE>{cdata(str(self.state))}</STATE>"
            f"<PREV_STATE>{cdata(str(self.prev_state))}</PREV_STATE>"
            + (
                f"<PARENT_NETWORK_ID>{self.parent}</PARENT_NETWORK_ID>"
                if self.parent != -1
                else "<PARENT_NETWORK_ID/>"
            )
            + (
                f"<TEMPLATE_ID>{self.template_id}</TEMPLATE_ID>"
                if self.template_id != -1
                else "<TEMPLATE_ID/>"
            )
            + _opt("VN_MAD", self.vn_mad)
            + _opt("PHYDEV", self.phydev)
            + _opt("VLAN_ID", self.vlan_id)
            + _opt("OUTER_VLAN_ID", self.outer_vlan_id)
            + f"<VLAN_ID_AUTOMATIC>{int(self.vlan_id_automatic)}</VLAN_ID_AUTOMATIC>"
            f"<OUTER_VLAN_ID_AUTOMATIC>{int(self.outer_vlan_id_automatic)}"
            "</OUTER_VLAN_ID_AUTOMATIC>"
            f"<USED_LEASES>{self.used_leases()}</USED_LEASES>"
            f"{ids_xml('VROUTERS', self.vrouters)}{ids_xml('UPDATED_VMS', self.updated)}"
            f"{ids_xml('OUTDATED_VMS', self.outdated)}{ids_xml('UPDATING_VMS', self.updating)}"
            f"{ids_xml('ERROR_VMS', self.error_vms)}{self.template.to_xml()}"
        )

    def to_xml(self) -> str:
        """The stored form (database and ``VNET_POOL``)."""
        parts = [self._head(), "<AR_POOL>"]
        for ar in self.ars:
            parts.extend(ar.xml_parts())
        parts.append("</AR_POOL></VNET>")
        return "".join(parts)

    def to_xml_extended(self, visible: Iterable[int] | None = None) -> str:
        """``one.vn.info``: ARs with their ends, USED_LEASES and LEASES."""
        owners = None if visible is None else list(visible)
        parts = [self._head(), "<AR_POOL>"]
        parts.extend(ar.to_xml_extended(owners) for ar in self.ars)
        parts.append("</AR_POOL></VNET>")
        return "".join(parts)

    def escaped_extended(self) -> str:
        """``to_xml_extended()`` already escaped for XML-RPC (cached lease blocks)."""
        from oned.objects.address_range import escape

        parts = [escape(self._head()), "&lt;AR_POOL&gt;"]
        parts.extend(ar.escaped_extended() for ar in self.ars)
        parts.append("&lt;/AR_POOL&gt;&lt;/VNET&gt;")
        return "".join(parts)

    def columns(self) -> dict[str, Any]:
        return {**owner_columns(self), "pid": self.parent}

    @classmethod
    def from_xml(cls, body: str) -> VirtualNetwork:
        root = parse_xml(body)
        ars = []
        pool = root.find("AR_POOL")
        for node in pool if pool is not None else []:
            if isinstance(node.tag, str):
                attrs = {str(c.tag): c.text or "" for c in node if isinstance(c.tag, str)}
                ars.append(AddressRange.from_stored(attrs))
        vn = cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            lock=Lock.from_xml(root),
            clusters=set(ids_of(root, "CLUSTERS")),
            bridge=text_of(root, "BRIDGE"),
            bridge_type=text_of(root, "BRIDGE_TYPE"),
            state=int_of(root, "STATE"),
            prev_state=int_of(root, "PREV_STATE"),
            parent=int_of(root, "PARENT_NETWORK_ID", -1),
            template_id=int_of(root, "TEMPLATE_ID", -1),
            vn_mad=text_of(root, "VN_MAD"),
            phydev=text_of(root, "PHYDEV"),
            vlan_id=text_of(root, "VLAN_ID"),
            outer_vlan_id=text_of(root, "OUTER_VLAN_ID"),
            vlan_id_automatic=int_of(root, "VLAN_ID_AUTOMATIC") == 1,
            outer_vlan_id_automatic=int_of(root, "OUTER_VLAN_ID_AUTOMATIC") == 1,
            vrouters=set(ids_of(root, "VROUTERS")),
            updated=set(ids_of(root, "UPDATED_VMS")),
            outdated=set(ids_of(root, "OUTDATED_VMS")),
            updating=set(ids_of(root, "UPDATING_VMS")),
            error_vms=set(ids_of(root, "ERROR_VMS")),
            template=template_of(root),
            ars=ars,
        )
        vn.next_ar = max((ar.ar_id + 1 for ar in ars), default=0)
        return vn

    def copy(self) -> VirtualNetwork:
        return VirtualNetwork(
            self.oid,
            self.name,
            self.uid,
            self.gid,
            self.uname,
            self.gname,
            Permissions(*self.perms.values()),
            Lock(self.lock.locked, self.lock.owner, self.lock.time, self.lock.req_id),
            set(self.clusters),
            self.bridge,
            self.bridge_type,
            self.state,
            self.prev_state,
            self.parent,
            self.template_id,
            self.vn_mad,
            self.phydev,
            self.vlan_id,
            self.outer_vlan_id,
            self.vlan_id_automatic,
            self.outer_vlan_id_automatic,
            set(self.vrouters),
            set(self.updated),
            set(self.outdated),
            set(self.updating),
            set(self.error_vms),
            self.template.copy(),
            list(self.ars),
            self.next_ar,
        )

    # -- queries ---------------------------------------------------------------------

    def used_leases(self) -> int:
        return sum(ar.used() for ar in self.ars)

    def ar(self, ar_id: int) -> AddressRange | None:
        for ar in self.ars:
            if ar.ar_id == ar_id:
                return ar
        return None

    def is_reservation(self) -> bool:
        return self.parent != -1

    def security_groups(self) -> list[int]:
        """The network's SECURITY_GROUPS plus those of its ranges, unique, ascending."""
        out: set[int] = set()
        sources = [self.template.get("SECURITY_GROUPS") or ""]
        sources += [ar.attrs.get("SECURITY_GROUPS", "") for ar in self.ars]
        for raw in sources:
            for piece in raw.split(","):
                part = piece.strip()
                if part.lstrip("-").isdigit():
                    out.add(int(part))
        return sorted(out)

    def set_state(self, state: int) -> None:
        self.state = state

    def set_error(self, message: str, now: float) -> None:
        from oned.objects.image import log_time

        self.template.set("ERROR", f"{log_time(now)} : {message}")

    def clear_error(self) -> None:
        self.template.erase("ERROR")

    def vm_ids(self) -> set[int]:
        return self.updated | self.outdated | self.updating | self.error_vms


@dataclass
class LeaseChanges:
    """In-place lease changes of one network, undone if their commit fails."""

    undo: list[tuple[AddressRange, int, int | None, int]] = field(default_factory=list)
    on_rollback: list[Callable[[], None]] = field(default_factory=list)

    def allocate(self, ar: AddressRange, index: int, owner: int) -> None:
        self.undo.append((ar, index, ar.allocated.get(index), ar.next))
        ar.set_allocated(index, owner)

    def free(self, ar: AddressRange, index: int, owner: int | None = None) -> bool:
        before = ar.allocated.get(index)
        if not ar.free_index(index, owner):
            return False
        self.undo.append((ar, index, before, ar.next))
        return True

    def note_next(self, ar: AddressRange, before: int) -> None:
        """Remember NEXT_INDEX before a search moved it."""
        self.undo.append((ar, -1, None, before))

    def rollback(self) -> None:
        for ar, index, before, nxt in reversed(self.undo):
            if index >= 0:
                if before is None:
                    ar.free_index(index)
                else:
                    ar.set_allocated(index, before)
            ar.next = nxt
        self.undo.clear()
        for fn in reversed(self.on_rollback):
            fn()
        self.on_rollback.clear()
