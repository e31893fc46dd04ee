"""Small ``oid -> body`` side tables (``group_vlans``), kept in memory like the pools."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Generic, TypeVar

from oned.db.database import Database, Statement

V = TypeVar("V")


def _thd_rows(conn: sqlite3.Connection, table: str) -> list[tuple[int, str]]:
    sql = f"SELECT oid, body FROM {table}"  # noqa: S608
    return [(int(r[0]), str(r[1])) for r in conn.execute(sql)]


class KeyedTable(Generic[V]):
    """Values by object id, stored as rendered bodies."""

    def __init__(
        self,
        db: Database,
        table: str,
        load: Callable[[str], V],
        render: Callable[[int, V], str],
        empty: Callable[[], V],
    ) -> None:
        self.db = db
        self.table = table
        self._load = load
        self._render = render
        self._empty = empty
        self._values: dict[int, V] = {}

    async def load(self) -> None:
        for oid, body in await self.db.run(f"load {self.table}", _thd_rows, self.table):
            self._values[oid] = self._load(body)

    async def reload(self) -> None:
        self._values.clear()
        await self.load()

    def get(self, oid: int) -> V:
        value = self._values.get(oid)
        return self._empty() if value is None else value

    def body(self, oid: int) -> str:
        return self._render(oid, self.get(oid))

    def save(self, oid: int, value: V) -> Statement:
        sql = f"REPLACE INTO {self.table} (oid, body) VALUES (?, ?)"  # noqa: S608
        return sql, (oid, self._render(oid, value))

    def remember(self, oid: int, value: V) -> None:
        self._values[oid] = value

    def delete(self, oid: int) -> Statement:
        return f"DELETE FROM {self.table} WHERE oid = ?", (oid,)  # noqa: S608

    def forget(self, oid: int) -> None:
        self._values.pop(oid, None)
