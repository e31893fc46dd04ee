"""The VM pool (mirrors ``VirtualMachinePool``): bodies, short bodies and history.

Besides the generic write-through copy of ``vm_pool`` the pool keeps every VM's short
body (``short_body`` column, the ``one.vmpool.info`` element) in memory, and loads the
``history`` table so that each VM carries its whole placement history. History rows
store the VM document of the moment, which ``one.vmpool.accounting`` returns.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable, Iterable

from oned.db.database import Database, Statement
from oned.objects.history import History
from oned.objects.showback import HistoryCost, ShowbackRow, history_cost
from oned.objects.vm import VirtualMachine, VmState
from oned.pools.base import Pool
from oned.template import xml_escape


def _thd_history(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """The records of VMs placed more than once (a VM's body holds its last one), each
    cut before the VM document it carries (only the record is read back)."""
    rows = conn.execute(
        "SELECT vid, body FROM history WHERE vid IN "
        "(SELECT vid FROM history GROUP BY vid HAVING COUNT(*) > 1) ORDER BY vid, seq"
    )
    out = []
    for vid, body in rows:
        text = str(body)
        cut = text.find("<VM>")
        out.append((int(vid), text[:cut] + "</HISTORY>" if cut > 0 else text))
    return out


#: Documents escaped and joined into one listing piece in the DB thread.
CHUNK = 200
#: History records parsed per DB-thread call by showback.
SHOWBACK_CHUNK = 1000
#: VM ids per cached whole-pool listing piece.
BLOCK = 250


def _wire_chunks(bodies: Iterable[str]) -> list[bytes]:
    """XML documents escaped for an XML-RPC ``<string>`` and joined ``CHUNK`` at a
    time: large answers are built off the reactor thread and written piece by piece."""
    out: list[bytes] = []
    batch: list[str] = []
    for body in bodies:
        batch.append(body)
        if len(batch) >= CHUNK:
            out.append(xml_escape("".join(batch)).encode("utf-8", "xmlcharrefreplace"))
            batch = []
    if batch:
        out.append(xml_escape("".join(batch)).encode("utf-8", "xmlcharrefreplace"))
    return out


def _thd_accounting(
    conn: sqlite3.Connection, start: int, end: int, vids: list[int] | None
) -> list[bytes]:
    """``dump_acct``: records overlapping [start, end] (-1 open) of ``vids``, by VM id
    and sequence, as listing pieces."""
    sql = "SELECT vid, body FROM history WHERE 1=1"
    args: list[int] = []
    if start != -1:
        sql += " AND (etime > ? OR etime = 0)"
        args.append(start)
    if end != -1:
        sql += " AND stime < ?"
        args.append(end)
    sql += " ORDER BY vid, seq"
    allowed = set(vids) if vids is not None else None
    return _wire_chunks(
        str(body) for vid, body in conn.execute(sql, args) if allowed is None or int(vid) in allowed
    )


def _thd_monitoring(
    conn: sqlite3.Connection, vids: list[int] | None, after: int, last_only: bool, oldest: int
) -> list[bytes]:
    """Samples newer than ``after`` (the last one of each VM with ``last_only``), none
    older than ``oldest`` (expired), by VM id then time, as listing pieces."""
    if last_only:
        sql = (
            "SELECT m.vmid, m.body FROM vm_monitoring m JOIN (SELECT vmid, MAX(last_poll) AS lp "
            "FROM vm_monitoring GROUP BY vmid) x ON m.vmid = x.vmid AND m.last_poll = x.lp "
            "WHERE m.last_poll >= ? ORDER BY m.vmid"
        )
        rows = conn.execute(sql, (oldest,))
    else:
        rows = conn.execute(
            "SELECT vmid, body FROM vm_monitoring WHERE last_poll > ? AND last_poll >= ? "
            "ORDER BY vmid, last_poll",
            (after, oldest),
        )
    allowed = set(vids) if vids is not None else None
    return _wire_chunks(str(b) for v, b in rows if allowed is None or int(v) in allowed)


def _thd_showback_input(
    conn: sqlite3.Connection,
    start: int,
    end: int,
    defaults: tuple[float, float, float],
    offset: int,
    limit: int,
) -> tuple[int, list[HistoryCost]]:
    """One chunk of ``dump_acct`` of the showback window, each record read as
    ``calculate_showback`` reads it."""
    rows = conn.execute(
        "SELECT body FROM history WHERE (etime > ? OR etime = 0) AND stime < ? "
        "ORDER BY vid, seq LIMIT ? OFFSET ?",
        (start, end, limit, offset),
    )
    out = []
    read = 0
    for (body,) in rows:
        read += 1
        cost = history_cost(str(body), defaults)
        if cost is not None:
            out.append(cost)
    return read, out


def _thd_min_stime(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT MIN(stime) FROM history").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _thd_showback(
    conn: sqlite3.Connection, vids: list[int], start: tuple[int, int], end: tuple[int, int]
) -> list[bytes]:
    """``dump_showback``: the records of ``vids`` between two (month, year), by year,
    month and VM id."""
    sql = "SELECT vmid, body FROM vm_showback WHERE 1=1"
    args: list[int] = []
    if start[0] != -1 and start[1] != -1:
        sql += " AND (year > ? OR (year = ? AND month >= ?))"
        args += [start[1], start[1], start[0]]
    if end[0] != -1 and end[1] != -1:
        sql += " AND (year < ? OR (year = ? AND month <= ?))"
        args += [end[1], end[1], end[0]]
    sql += " ORDER BY year, month, vmid"
    allowed = set(vids)
    return _wire_chunks(str(body) for vid, body in conn.execute(sql, args) if int(vid) in allowed)


class VirtualMachinePool(Pool[VirtualMachine]):
    """``vm_pool`` plus the short bodies and the ``history`` rows."""

    def __init__(
        self,
        db: Database,
        loader: Callable[[str], VirtualMachine] = VirtualMachine.from_xml,
    ) -> None:
        super().__init__(db, "vm_pool", loader)
        self._short: dict[int, str] = {}
        #: Short bodies escaped for an XML-RPC ``<string>``, made on first listing (the
        #: stored bodies' are the base pool's ``wire_body``).
        self._short_wire: dict[int, bytes] = {}
        #: Every VM id, ascending (listings walk it slice by slice).
        self._order: list[int] = []
        #: Whole-pool listing pieces by id block, then (extended, state, desc).
        self._blocks: dict[int, dict[tuple[bool, int, bool], bytes]] = {}

    async def load(self) -> None:
        await super().load()
        rows = await self.db.run("load history", _thd_history)
        by_vm: dict[int, list[History]] = {}
        for vid, body in rows:
            by_vm.setdefault(vid, []).append(History.from_xml(body))
        for vid, records in by_vm.items():
            vm = self._objects.get(vid)
            if vm is not None and len(records) >= len(vm.history):
                vm.history = records

    def _remember(self, obj: VirtualMachine, body: str | None = None) -> None:
        if obj.oid not in self._objects:
            if not self._order or obj.oid > self._order[-1]:
                self._order.append(obj.oid)
            else:
                bisect.insort(self._order, obj.oid)
        super()._remember(obj, body)
        short = obj.__dict__.pop("_short_cache", None)
        self._short[obj.oid] = short if short is not None else obj.short_xml()
        self._short_wire.pop(obj.oid, None)
        self._blocks.pop(obj.oid // BLOCK, None)

    def _forget(self, oid: int) -> None:
        at = bisect.bisect_left(self._order, oid)
        if at < len(self._order) and self._order[at] == oid:
            del self._order[at]
        super()._forget(oid)
        self._short.pop(oid, None)
        self._short_wire.pop(oid, None)
        self._blocks.pop(oid // BLOCK, None)

    def sorted_ids(self) -> list[int]:
        """Every VM id, ascending (read-only)."""
        return self._order

    def short_body(self, oid: int) -> str:
        return self._short[oid]

    def short_wire(self, oid: int) -> bytes:
        """The short body escaped and encoded for a listing, cached until it changes."""
        data = self._short_wire.get(oid)
        if data is None:
            data = xml_escape(self._short[oid]).encode("utf-8", "xmlcharrefreplace")
            self._short_wire[oid] = data
        return data

    def escaped(self, oid: int, extended: bool) -> bytes:
        """The stored (or short) body as a listing piece."""
        return self.wire_body(oid) if extended else self.short_wire(oid)

    def wire_cache(self, extended: bool) -> dict[int, bytes]:
        """The cache behind ``escaped`` (read-only: a missing entry is not made yet)."""
        return self._wire if extended else self._short_wire

    def listing_block(
        self, block: int, extended: bool, state: int, desc: bool
    ) -> tuple[bytes, bool]:
        """The whole-pool listing piece of the VMs whose ids fall in ``block`` (ids
        ``block * BLOCK`` on; ``state`` -2 all, -1 all but DONE), in ascending or
        descending order, cached until one of them changes; and whether it was built
        now (not taken from the cache)."""
        cache = self._blocks.setdefault(block, {})
        key = (extended, state, desc)
        data = cache.get(key)
        if data is not None:
            return data, False
        order = self._order
        ids = order[
            bisect.bisect_left(order, block * BLOCK) : bisect.bisect_left(
                order, (block + 1) * BLOCK
            )
        ]
        if desc:
            ids.reverse()
        wire = self.wire_cache(extended)
        done = int(VmState.DONE)
        pieces = []
        for oid in ids:
            if state == -1 and self._objects[oid].state == done:
                continue
            piece = wire.get(oid)
            pieces.append(piece if piece is not None else self.escaped(oid, extended))
        data = cache[key] = b"".join(pieces)
        return data, True

    def info_body(self, oid: int) -> str:
        """``one.vm.info``: the stored body, or one with every history record."""
        vm = self._objects[oid]
        if len(vm.history) < 2:
            return self._bodies[oid]
        return vm.info_xml()

    @staticmethod
    def history_row(vm: VirtualMachine, record: History) -> Statement:
        """Insert or replace one history record (with the VM document of now)."""
        return (
            "REPLACE INTO history (vid, seq, body, stime, etime) VALUES (?, ?, ?, ?, ?)",
            (vm.oid, record.seq, record.to_xml(vm.bare_xml()), record.stime, record.etime),
        )

    async def accounting(self, start: int, end: int, vids: list[int] | None) -> list[bytes]:
        return list(await self.db.run("accounting", _thd_accounting, start, end, vids))

    async def monitoring(
        self, vids: list[int] | None, after: int, last_only: bool, oldest: int = 0
    ) -> list[bytes]:
        """``dump_monitoring``: samples newer than ``after`` (or the last of each VM),
        leaving out those older than ``oldest`` (expired)."""
        return list(
            await self.db.run("vm monitoring", _thd_monitoring, vids, after, last_only, oldest)
        )

    async def showback_input(
        self, start: int, end: int, defaults: tuple[float, float, float]
    ) -> list[HistoryCost]:
        """The records of the window, read ``SHOWBACK_CHUNK`` at a time (as oned's
        chunks), so other transactions run between chunks."""
        out: list[HistoryCost] = []
        offset = 0
        while True:
            read, chunk = await self.db.run(
                "showback records",
                _thd_showback_input,
                start,
                end,
                defaults,
                offset,
                SHOWBACK_CHUNK,
            )
            out += chunk
            offset += SHOWBACK_CHUNK
            if read < SHOWBACK_CHUNK:
                return out

    async def oldest_history(self) -> int | None:
        return await self.db.run("oldest history", _thd_min_stime)

    async def showback(
        self, vids: list[int], start: tuple[int, int], end: tuple[int, int]
    ) -> list[bytes]:
        return list(await self.db.run("showback", _thd_showback, vids, start, end))

    @staticmethod
    def showback_row(row: ShowbackRow) -> Statement:
        return (
            "REPLACE INTO vm_showback (vmid, year, month, body) VALUES (?, ?, ?, ?)",
            (row.vmid, row.year, row.month, row.body),
        )
