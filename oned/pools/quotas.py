"""Quota tables (``user_quotas``, ``group_quotas``) and the default quotas.

Default quotas live in ``system_attributes`` under ``DEFAULT_USER_QUOTAS`` and
``DEFAULT_GROUP_QUOTAS``, as OpenNebula stores them.
"""

from __future__ import annotations

import sqlite3

from oned.db.database import Database, Statement
from oned.objects.base import parse_xml
from oned.objects.quotas import Quotas


def _thd_rows(conn: sqlite3.Connection, table: str, key: str) -> list[tuple[int, str]]:
    sql = f"SELECT {key}, body FROM {table}"  # noqa: S608
    return [(int(r[0]), str(r[1])) for r in conn.execute(sql)]


def _thd_attr(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT body FROM system_attributes WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


class QuotaTable:
    """Quotas of every user (or group), by owner id."""

    def __init__(self, db: Database, table: str, key: str, root: str, default_attr: str):
        self.db = db
        self.table = table
        self.key = key
        self.root = root
        self.default_attr = default_attr
        self._quotas: dict[int, Quotas] = {}
        self._bodies: dict[int, str] = {}
        self.defaults = Quotas()

    async def load(self) -> None:
        for oid, body in await self.db.run(f"load {self.table}", _thd_rows, self.table, self.key):
            self._quotas[oid] = Quotas.from_xml(parse_xml(body))
        raw = await self.db.run("load defaults", _thd_attr, self.default_attr)
        if raw:
            self.defaults = Quotas.from_xml(parse_xml(raw))

    async def reload(self) -> None:
        self._quotas.clear()
        await self.load()

    def get(self, oid: int) -> Quotas:
        """The quotas of ``oid`` (empty when none were ever set)."""
        return self._quotas.get(oid) or Quotas()

    def body(self, oid: int) -> str:
        """``<QUOTAS><ID>oid</ID>...</QUOTAS>`` (cached until the quotas change)."""
        body = self._bodies.get(oid)
        if body is None:
            body = self._bodies[oid] = (
                f"<{self.root}><ID>{oid}</ID>{self.get(oid).to_xml()}</{self.root}>"
            )
        return body

    def save(self, oid: int, quotas: Quotas) -> Statement:
        sql = f"REPLACE INTO {self.table} ({self.key}, body) VALUES (?, ?)"  # noqa: S608
        return sql, (oid, f"<{self.root}><ID>{oid}</ID>{quotas.to_xml()}</{self.root}>")

    def remember(self, oid: int, quotas: Quotas) -> None:
        self._quotas[oid] = quotas
        self._bodies.pop(oid, None)

    def delete(self, oid: int) -> Statement:
        return f"DELETE FROM {self.table} WHERE {self.key} = ?", (oid,)  # noqa: S608

    def forget(self, oid: int) -> None:
        self._quotas.pop(oid, None)
        self._bodies.pop(oid, None)

    def defaults_xml(self) -> str:
        return f"<{self.default_attr}>{self.defaults.to_xml(defaults=True)}</{self.default_attr}>"

    def save_defaults(self, quotas: Quotas) -> Statement:
        body = f"<{self.default_attr}>{quotas.to_xml(defaults=True)}</{self.default_attr}>"
        return (
            "REPLACE INTO system_attributes (name, body) VALUES (?, ?)",
            (self.default_attr, body),
        )
