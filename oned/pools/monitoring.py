"""Host monitoring samples (mirrors ``HostMonitoringTemplate.cc`` and the
``host_monitoring`` part of ``HostPool``/monitord's ``HostRPCPool``).

A sample is the ``<MONITORING>`` document built from a MONITOR_HOST probe report:
``CAPACITY`` (free/used CPU and memory, forecasts), ``SYSTEM`` (CPU speed, network
counters and bandwidths) and one ``NUMA_NODE`` per node (huge pages, memory). Samples
are rows ``(hid, last_mon_time, body)``; the last one of each host is also kept in
memory for ``one.host.info``. Rows older than ``HOST_MONITORING_EXPIRATION_TIME`` are
deleted; an expiration of 0 or less disables writing them, as in monitord.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from oned.db.database import Database, Statement
from oned.template import Template

_CAPACITY = (
    ("FREECPU", "FREE_CPU"),
    ("USEDCPU", "USED_CPU"),
    ("FREEMEMORY", "FREE_MEMORY"),
    ("USEDMEMORY", "USED_MEMORY"),
)
_CAPACITY_FORECAST = (
    ("FREECPU_FORECAST", "FREE_CPU_FORECAST"),
    ("FREECPU_FORECAST_FAR", "FREE_CPU_FORECAST_FAR"),
    ("USEDCPU_FORECAST", "USED_CPU_FORECAST"),
    ("USEDCPU_FORECAST_FAR", "USED_CPU_FORECAST_FAR"),
    ("FREEMEMORY_FORECAST", "FREE_MEMORY_FORECAST"),
    ("FREEMEMORY_FORECAST_FAR", "FREE_MEMORY_FORECAST_FAR"),
    ("USEDMEMORY_FORECAST", "USED_MEMORY_FORECAST"),
    ("USEDMEMORY_FORECAST_FAR", "USED_MEMORY_FORECAST_FAR"),
)
_SYSTEM = (("CPUSPEED", "CPU_SPEED"), ("NETTX", "NETTX"), ("NETRX", "NETRX"))
_SYSTEM_FORECAST = (
    ("NETTX_BW", "NETTX_BW"),
    ("NETTX_BW_FORECAST", "NETTX_BW_FORECAST"),
    ("NETTX_BW_FORECAST_FAR", "NETTX_BW_FORECAST_FAR"),
    ("NETRX_BW", "NETRX_BW"),
    ("NETRX_BW_FORECAST", "NETRX_BW_FORECAST"),
    ("NETRX_BW_FORECAST_FAR", "NETRX_BW_FORECAST_FAR"),
)


def _unsigned(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit():
        return None
    return str(int(text))


def _double(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return f"{float(text.strip()):g}"
    except ValueError:
        return None


def _copy(
    src: Template,
    dst: Template,
    keys: Iterable[tuple[str, str]],
    conv: object,
) -> None:
    for probe, name in keys:
        value = conv(src.get(probe))  # type: ignore[operator]
        if value is not None:
            dst.add(name, value)


def sample_xml(hid: int, timestamp: int, tmpl: Template | None) -> str:
    """``HostMonitoringTemplate::to_xml`` of a MONITOR_HOST report (None: an empty
    sample, as monitord writes for OFFLINE hosts)."""
    capacity, system = Template(), Template()
    nodes: dict[int, Template] = {}
    if tmpl is not None:
        _copy(tmpl, capacity, _CAPACITY, _unsigned)
        _copy(tmpl, capacity, _CAPACITY_FORECAST, _double)
        _copy(tmpl, system, _SYSTEM, _unsigned)
        _copy(tmpl, system, _SYSTEM_FORECAST, _double)
        for kind, name, fields in (
            ("HUGEPAGE", "HUGEPAGE", ("SIZE", "FREE")),
            ("MEMORY_NODE", "MEMORY", ("USED", "FREE")),
        ):
            for vector in tmpl.vectors(kind):
                raw = vector.get("NODE_ID", "").strip()
                if not raw.lstrip("-").isdigit():
                    continue
                if kind == "HUGEPAGE" and _unsigned(vector.get("SIZE")) is None:
                    continue
                node = nodes.get(int(raw))
                if node is None:
                    node = nodes[int(raw)] = Template([("NODE_ID", str(int(raw)))])
                node.add(name, {f: _unsigned(vector.get(f)) or "0" for f in fields})
    numa = "".join(nodes[n].to_xml("NUMA_NODE") for n in sorted(nodes))
    return (
        f"<MONITORING><TIMESTAMP>{timestamp}</TIMESTAMP><ID>{hid}</ID>"
        f"{capacity.to_xml('CAPACITY')}{system.to_xml('SYSTEM')}{numa}</MONITORING>"
    )


def _thd_last(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT m.hid, m.body FROM host_monitoring m INNER JOIN "
        "(SELECT hid, MAX(last_mon_time) AS t FROM host_monitoring GROUP BY hid) l "
        "ON l.hid = m.hid AND l.t = m.last_mon_time"
    )
    return [(int(h), str(b)) for h, b in rows]


def _thd_dump(
    conn: sqlite3.Connection, hids: list[int] | None, seconds: int, now: int
) -> list[str]:
    if seconds == 0:
        sql = (
            "SELECT m.hid, m.body FROM host_monitoring m INNER JOIN "
            "(SELECT hid, MAX(last_mon_time) AS t FROM host_monitoring GROUP BY hid) l "
            "ON l.hid = m.hid AND l.t = m.last_mon_time INNER JOIN host_pool ON m.hid = oid "
            "ORDER BY oid"
        )
        params: tuple[int, ...] = ()
    elif seconds < 0:
        sql = (
            "SELECT hid, host_monitoring.body FROM host_monitoring INNER JOIN host_pool "
            "ON hid = oid ORDER BY hid, last_mon_time"
        )
        params = ()
    else:
        sql = (
            "SELECT hid, host_monitoring.body FROM host_monitoring INNER JOIN host_pool "
            "ON hid = oid WHERE last_mon_time > ? ORDER BY hid, last_mon_time"
        )
        params = (now - seconds,)
    wanted = None if hids is None else set(hids)
    return [str(b) for h, b in conn.execute(sql, params) if wanted is None or h in wanted]


class HostMonitoringStore:
    """The ``host_monitoring`` table and the last sample of every host."""

    def __init__(self, db: Database, expiration: int) -> None:
        self.db = db
        self.expiration = expiration
        self._last: dict[int, str] = {}
        self.loaded = False

    async def load(self) -> None:
        for hid, body in await self.db.run("load host monitoring", _thd_last):
            self._last[hid] = body
        self.loaded = True

    def last(self, hid: int) -> str | None:
        """The last sample of host ``hid`` (None before its first one)."""
        return self._last.get(hid)

    def remember(self, hid: int, body: str) -> None:
        self._last[hid] = body

    def forget(self, hid: int) -> None:
        self._last.pop(hid, None)

    def insert(self, hid: int, timestamp: int, body: str) -> Statement | None:
        """The row of one sample (None when expiration disables storing)."""
        if self.expiration <= 0:
            return None
        return (
            "REPLACE INTO host_monitoring (hid, last_mon_time, body) VALUES (?, ?, ?)",
            (hid, timestamp, body),
        )

    def expire(self, now: int) -> Statement | None:
        if self.expiration <= 0:
            return None
        return ("DELETE FROM host_monitoring WHERE last_mon_time < ?", (now - self.expiration,))

    def delete(self, hid: int) -> Statement:
        return ("DELETE FROM host_monitoring WHERE hid = ?", (hid,))

    async def dump(self, hids: list[int] | None, seconds: int, now: int) -> str:
        """``HostPool::dump_monitoring``: ``MONITORING_DATA`` of ``hids`` (None: all);
        ``seconds`` 0 = last sample per host, -1 = all, N = the last N seconds."""
        if seconds == 0 and self.loaded and hids is not None:
            last = self._last
            inner = "".join(last[h] for h in sorted(hids) if h in last)
            return "<MONITORING_DATA>" + inner + "</MONITORING_DATA>"
        bodies = await self.db.run("dump host monitoring", _thd_dump, hids, seconds, now)
        return "<MONITORING_DATA>" + "".join(bodies) + "</MONITORING_DATA>"
