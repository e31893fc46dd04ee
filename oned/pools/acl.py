"""The ACL rule table (mirrors ``AclManager``'s SQL side)."""

from __future__ import annotations

import sqlite3

from oned.auth.acl import AclRule
from oned.db.database import Database, Statement


def _thd_rules(conn: sqlite3.Connection) -> tuple[list[tuple[int, int, int, int, int]], int]:
    rows = [
        (int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]))
        for r in conn.execute("SELECT oid, userset, resource, rights, zone FROM acl")
    ]
    row = conn.execute("SELECT last_oid FROM pool_control WHERE tablename = 'acl'").fetchone()
    return rows, (int(row[0]) if row else -1)


def _signed(value: int) -> int:
    """SQLite integers are signed 64-bit; rule numbers are unsigned."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


class AclPool:
    """Stored rules and their ids."""

    table = "acl"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.last_oid = -1

    async def load(self) -> list[AclRule]:
        rows, self.last_oid = await self.db.run("load acl", _thd_rules)
        return [
            AclRule(oid, _unsigned(u), _unsigned(r), _unsigned(ri), _unsigned(z))
            for oid, u, r, ri, z in rows
        ]

    def next_oid(self) -> int:
        self.last_oid += 1
        return self.last_oid

    def insert(self, rule: AclRule) -> Statement:
        return (
            "INSERT INTO acl (oid, userset, resource, rights, zone) VALUES (?, ?, ?, ?, ?)",
            (rule.oid, *(_signed(v) for v in rule.key())),
        )

    def delete(self, oid: int) -> Statement:
        return "DELETE FROM acl WHERE oid = ?", (oid,)

    def control(self) -> Statement:
        return (
            "REPLACE INTO pool_control (tablename, last_oid) VALUES ('acl', ?)",
            (self.last_oid,),
        )
