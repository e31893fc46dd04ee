"""Versioned schema files and upgrades (mirrors ``onedb`` and ``SqlDB::bootstrap``).

A new database gets ``oned-v1.sql`` and then every ``upgrade-to-v<K>.sql`` up to the newest
version, so the schema is written once. An existing one at version M < N is first copied to
``<db>.backup-v<M>`` and then upgraded by applying ``upgrade-to-v<K>.sql`` for each K in
M+1..N, each in its own transaction.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from importlib import resources
from pathlib import Path

SCHEMA_VERSION = 7
ONE_DB_VERSION = "7.4.0"
ONE_LOCAL_DB_VERSION = "7.4.0"


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _version(conn: sqlite3.Connection) -> int | None:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='system_attributes'"
    ).fetchone()
    if row is None:
        return None
    got = conn.execute(
        "SELECT body FROM system_attributes WHERE name='ONED_SCHEMA_VERSION'"
    ).fetchone()
    return int(got[0]) if got else 0


def _script(conn: sqlite3.Connection, sql: str, version: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in sql.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "REPLACE INTO system_attributes (name, body) VALUES ('ONED_SCHEMA_VERSION', ?)",
            (str(version),),
        )
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


def ensure(conn: sqlite3.Connection, path: Path | None) -> None:
    """Create or upgrade the schema of ``conn`` to ``SCHEMA_VERSION``."""
    current = _version(conn)
    if current is None:
        sql = _read("oned-v1.sql")
        now = int(time.time())
        sql += (
            ";\nINSERT INTO db_versioning (oid, version, timestamp, comment, is_slave) "
            f"VALUES (0, '{ONE_DB_VERSION}', {now}, 'oned (Python) bootstrap', 0)"
            ";\nINSERT INTO local_db_versioning (oid, version, timestamp, comment, is_slave) "
            f"VALUES (0, '{ONE_LOCAL_DB_VERSION}', {now}, 'oned (Python) bootstrap', 0)"
        )
        _script(conn, sql, 1)
        for version in range(2, SCHEMA_VERSION + 1):
            _script(conn, _read(f"upgrade-to-v{version}.sql"), version)
        return
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"Database schema version {current} is newer than this oned ({SCHEMA_VERSION})"
        )
    if current < SCHEMA_VERSION and path is not None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(path, path.with_name(f"{path.name}.backup-v{current}"))
    for version in range(current + 1, SCHEMA_VERSION + 1):
        _script(conn, _read(f"upgrade-to-v{version}.sql"), version)
