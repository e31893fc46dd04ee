"""``VirtualNetworkPool``'s storage: the write-through pool plus a lease journal.

A lease change (hold, release, NIC lease) commits a few journal rows
(``network_lease_journal``: network, AR, index, the new owner or minus the freed one,
NEXT_INDEX) instead of the network's whole body, so it costs the same with 60,000
leases as with none. The body, with ``ALLOCATED`` as oned stores it, is written again
shortly after (``FLUSH_DELAY``), by any other change of the network, and at load; a
trigger drops the journal rows a body write makes obsolete. At load the rows left by
a crash are replayed onto the bodies in order (a VM lease also puts its VM back in
UPDATED_VMS, a freed one takes it out of the VM lists, as the NIC seam does). Between
two body writes ``body()`` renders the changed networks from memory, so listings are
never stale.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from oned._async import background
from oned.objects.address_range import OWNER_VM, AddressRange, escape
from oned.objects.vnet import LeaseChanges, VirtualNetwork
from oned.pools.base import Pool, Unit

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from oned.db.database import Database

FLUSH_DELAY = 0.5

_INSERT = (
    "INSERT INTO network_lease_journal (oid, ar_id, idx, owner, next_index) VALUES (?, ?, ?, ?, ?)"
)


def _thd_journal(conn: sqlite3.Connection) -> list[tuple[int, int, int, int | None, int]]:
    rows = conn.execute(
        "SELECT oid, ar_id, idx, owner, next_index FROM network_lease_journal ORDER BY seq"
    )
    return [
        (int(a), int(b), int(c), None if d is None else int(d), int(e)) for a, b, c, d, e in rows
    ]


def _vm_of(owner: int) -> int | None:
    """The VM id of a VM lease owner (not a hold, not a network or router)."""
    if owner & OWNER_VM and owner & 0xFFFFFFFF != 0xFFFFFFFF:
        return owner & 0xFFFFFFFF
    return None


class VirtualNetworkPool(Pool[VirtualNetwork]):
    """``network_pool`` with journaled lease changes."""

    def __init__(self, db: Database, clock: IReactorTime | None = None) -> None:
        super().__init__(db, "network_pool", VirtualNetwork.from_xml)
        self.clock = clock
        self._dirty: set[int] = set()
        self._fresh: dict[int, str] = {}
        self._escaped: dict[int, str] = {}
        self._timer: IDelayedCall | None = None

    async def load(self) -> None:
        await super().load()
        rows = await self.db.run("load lease journal", _thd_journal)
        for oid, ar_id, idx, owner, nxt in rows:
            vn = self.get(oid)
            ar = vn.ar(ar_id) if vn is not None else None
            if vn is None or ar is None:
                continue
            if owner is None or owner < 0:
                ar.free_index(idx)
                vm = _vm_of(-owner if owner is not None else 0)
                if vm is not None:
                    for ids in (vn.updated, vn.updating, vn.error_vms, vn.outdated):
                        ids.discard(vm)
            elif idx >= 0:
                ar.set_allocated(idx, owner)
                vm = _vm_of(owner)
                if vm is not None:
                    vn.updated.add(vm)
            ar.next = nxt
            self._dirty.add(oid)
        if self._dirty:
            await self.flush()

    def _remember(self, obj: VirtualNetwork, body: str | None = None) -> None:
        super()._remember(obj, body)
        self._dirty.discard(obj.oid)
        self._fresh.pop(obj.oid, None)
        self._escaped.pop(obj.oid, None)

    def _forget(self, oid: int) -> None:
        super()._forget(oid)
        self._dirty.discard(oid)
        self._fresh.pop(oid, None)
        self._escaped.pop(oid, None)

    def body(self, oid: int) -> str:
        if oid in self._dirty:
            fresh = self._fresh.get(oid)
            if fresh is None:
                fresh = self._fresh[oid] = self._objects[oid].to_xml()
            return fresh
        return super().body(oid)

    def escaped_body(self, oid: int) -> str:
        """``body(oid)`` escaped for an XML-RPC ``<string>`` (cached per change)."""
        text = self._escaped.get(oid)
        if text is None:
            text = self._escaped[oid] = escape(self.body(oid))
        return text

    def stage_leases(self, unit: Unit, vn: VirtualNetwork, changes: LeaseChanges) -> None:
        """Stage the lease changes of ``vn`` (changed in place) as journal rows."""
        first: dict[tuple[int, int], int | None] = {}
        rows: dict[tuple[int, int], AddressRange] = {}
        for ar, index, before, _ in changes.undo:
            if index >= 0 and (ar.ar_id, index) not in first:
                first[(ar.ar_id, index)] = before
                rows[(ar.ar_id, index)] = ar
        for (ar_id, index), ar in rows.items():
            owner = ar.allocated.get(index)
            before = first[(ar_id, index)]
            if owner is None and before is not None:
                owner = -before
            unit.sql((_INSERT, (vn.oid, ar_id, index, owner, ar.next)))
        for ar, index, _, _ in changes.undo:
            if index < 0:
                unit.sql((_INSERT, (vn.oid, ar.ar_id, -1, None, ar.next)))
                break
        unit.then(lambda: self._changed(vn.oid))

    def _changed(self, oid: int) -> None:
        self._dirty.add(oid)
        self._fresh.pop(oid, None)
        self._escaped.pop(oid, None)
        if self.clock is not None and self._timer is None:
            self._timer = self.clock.callLater(FLUSH_DELAY, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        background(self.flush(), "write network bodies")

    async def flush(self) -> None:
        """Write the bodies of the networks changed through the journal."""
        for oid in sorted(self._dirty):
            async with self.lock(oid):
                vn = self.get(oid)
                if vn is None or oid not in self._dirty:
                    continue
                unit = Unit(self.db)
                unit.save(self, vn)
                await unit.commit(f"write network {oid}")
