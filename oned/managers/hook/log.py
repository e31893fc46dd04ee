"""The hook execution log (mirrors ``HookLog``): table ``hook_log(hkid, exeid,
timestamp, rc, body)``, one ``HOOK_EXECUTION_RECORD`` per result, execution ids counting
up per hook, only the last ``HOOK_LOG_CONF/LOG_RETENTION`` records of a hook kept.

The last execution id and the record count of every hook are kept in memory (this
process is the only writer), so a result is one staged INSERT (and maybe one DELETE)
in the transaction that also takes its event off the queue.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from lxml import etree

from oned.db.database import Database, Statement
from oned.objects.base import SAFE_PARSER


def _thd_index(conn: sqlite3.Connection) -> list[tuple[int, int, int]]:
    rows = conn.execute("SELECT hkid, MAX(exeid), COUNT(*) FROM hook_log GROUP BY hkid")
    return [(int(h), int(e), int(c)) for h, e, c in rows]


def _thd_dump(conn: sqlite3.Connection, sql: str, args: list[Any]) -> str:
    bodies = [str(row[0]) for row in conn.execute(sql, args)]
    return "<HOOKLOG>" + "".join(bodies) + "</HOOKLOG>"


def valid_xml(text: str) -> bool:
    """``ObjectXML::validate_xml``: a well-formed document."""
    try:
        etree.fromstring(text.encode("utf-8"), SAFE_PARSER)
    except etree.XMLSyntaxError:
        return False
    return True


class HookLog:
    """Execution records of every hook."""

    def __init__(self, db: Database, retention: int) -> None:
        self.db = db
        self.retention = retention
        #: hkid -> (last execution id, records kept)
        self._index: dict[int, tuple[int, int]] = {}

    async def load(self) -> None:
        self._index = {h: (e, c) for h, e, c in await self.db.run("hook log index", _thd_index)}

    def add(self, hkid: int, rc: int, result: str, now: int) -> list[Statement]:
        """``HookLog::add``: the statements of one record (none if its XML is invalid);
        the in-memory index moves at once, so concurrent results never share an id."""
        last, count = self._index.get(hkid, (-1, 0))
        exeid = last + 1
        body = (
            f"<HOOK_EXECUTION_RECORD><HOOK_ID>{hkid}</HOOK_ID><EXECUTION_ID>{exeid}"
            f"</EXECUTION_ID><TIMESTAMP>{now}</TIMESTAMP>{result}</HOOK_EXECUTION_RECORD>"
        )
        if not valid_xml(body):
            return []
        statements: list[Statement] = [
            (
                "INSERT INTO hook_log (hkid, exeid, timestamp, rc, body) VALUES (?, ?, ?, ?, ?)",
                (hkid, exeid, now, rc, body),
            )
        ]
        if count >= self.retention:
            statements.append(
                (
                    "DELETE FROM hook_log WHERE hkid = ? AND exeid <= ?",
                    (hkid, exeid - self.retention),
                )
            )
            count = self.retention
        else:
            count += 1
        self._index[hkid] = (exeid, count)
        return statements

    def drop(self, hkid: int) -> Statement:
        """``HookLog::drop``: every record of a deleted hook."""
        self._index.pop(hkid, None)
        return "DELETE FROM hook_log WHERE hkid = ?", (hkid,)

    async def dump_hook(self, hkid: int, exeid: int = -1) -> str:
        """``_dump_log``: the HOOKLOG of one hook (one execution with ``exeid``)."""
        sql = "SELECT body FROM hook_log WHERE hkid = ?"
        args: list[Any] = [hkid]
        if exeid != -1:
            sql += " AND exeid = ?"
            args.append(exeid)
        sql += " ORDER BY hkid DESC, exeid"
        return await self.db.run("hook log", _thd_dump, sql, args)

    async def dump(self, min_ts: int, max_ts: int, hkid: int, rc: int) -> str:
        """``HookPoolAPI::log_info``: records by time window, hook and result."""
        where: list[str] = []
        args: list[Any] = []
        if min_ts >= 0:
            where.append("timestamp > ?")
            args.append(min_ts)
        if max_ts >= 0:
            where.append("timestamp < ?")
            args.append(max_ts)
        if hkid >= 0:
            where.append("hkid = ?")
            args.append(hkid)
        if rc == -1:
            where.append("rc <> 0")
        elif rc == 1:
            where.append("rc = 0")
        sql = "SELECT body FROM hook_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY hkid DESC"
        return await self.db.run("hook log", _thd_dump, sql, args)
