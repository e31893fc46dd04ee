"""Database executor, schema files, pools and units of work."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oned.db import schema
from oned.db.database import Database, DatabaseError
from oned.objects.group import Group
from oned.pools.base import Pool, Unit
from oned.testing.rpc import result_of


def run(coro: object) -> object:
    return result_of(Deferred.fromCoroutine(coro))  # type: ignore[arg-type]


class DatabaseTests(SynchronousTestCase):
    def test_transaction_is_all_or_nothing(self) -> None:
        """A failing statement rolls back the statements before it."""
        db = Database.memory()
        statements = [
            ("INSERT INTO system_attributes (name, body) VALUES ('A', 'x')", ()),
            ("INSERT INTO no_such_table VALUES (1)", ()),
        ]
        d = Deferred.fromCoroutine(db.transact("t", statements))
        self.failureResultOf(d, DatabaseError)
        rows = run(
            db.run(
                "q",
                lambda c: c.execute(
                    "SELECT count(*) FROM system_attributes WHERE name='A'"
                ).fetchone()[0],
            )
        )
        self.assertEqual(rows, 0)

    def test_schema_created_once_with_versions(self) -> None:
        """A file database gets the schema and version rows once; reopening keeps them."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "one.db"
            conn = sqlite3.connect(path)
            schema.ensure(conn, path)
            conn.execute("INSERT INTO system_attributes (name, body) VALUES ('K', 'v')")
            conn.commit()
            schema.ensure(conn, path)
            self.assertEqual(
                conn.execute("SELECT body FROM system_attributes WHERE name='K'").fetchone()[0], "v"
            )
            self.assertEqual(
                conn.execute("SELECT version FROM db_versioning").fetchone()[0],
                schema.ONE_DB_VERSION,
            )
            conn.close()

    def test_newer_schema_refused(self) -> None:
        """A database from a newer oned is not touched."""
        conn = sqlite3.connect(":memory:")
        schema.ensure(conn, None)
        conn.execute("UPDATE system_attributes SET body='99' WHERE name='ONED_SCHEMA_VERSION'")
        conn.commit()
        with self.assertRaises(RuntimeError):
            schema.ensure(conn, None)


class PoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = Database.memory()
        self.pool: Pool[Group] = Pool(self.db, "group_pool", Group.from_xml, first_oid=100)
        run(self.pool.load())

    def test_allocate_and_reload(self) -> None:
        """Committed objects are visible and survive a reload from the database."""
        unit = Unit(self.db)
        oid = unit.allocate(self.pool)
        unit.add(self.pool, Group(oid, "g"))
        run(unit.commit("add"))
        self.assertEqual(oid, 100)
        fresh: Pool[Group] = Pool(self.db, "group_pool", Group.from_xml, first_oid=100)
        run(fresh.load())
        group = fresh.by_name("g")
        assert group is not None
        self.assertEqual(group.oid, 100)
        self.assertEqual(fresh.last_oid, 100)
        self.assertEqual(fresh.body(100), self.pool.body(100))

    def test_failed_commit_changes_nothing(self) -> None:
        """A unit that fails to commit leaves memory and ids as they were."""
        unit = Unit(self.db)
        unit.add(self.pool, Group(unit.allocate(self.pool), "a"))
        run(unit.commit("a"))
        bad = Unit(self.db)
        bad.add(self.pool, Group(bad.allocate(self.pool), "a"))
        self.failureResultOf(Deferred.fromCoroutine(bad.commit("dup")), DatabaseError)
        self.assertEqual(len(self.pool), 1)
        self.assertEqual(self.pool.last_oid, 100)


class LogTests(SynchronousTestCase):
    def test_sink_format_level_and_buffering(self) -> None:
        """Lines use oned's format, respect DEBUG_LEVEL and flush on the clock."""
        import io

        from oned.log import LogSink

        stream = io.StringIO()
        sink = LogSink(stream, debug_level=2, zone_id=0)
        clock = Clock()
        sink.attach_clock(clock)
        sink.write("ReM", "D", "hidden", now=0)
        sink.write("ReM", "I", "shown\nline", now=0)
        self.assertEqual(stream.getvalue(), "")
        clock.advance(1)
        line = stream.getvalue()
        self.assertRegex(
            line, r"^\w{3} \w{3} \d{2} [\d:]{8} \d{4} \[Z0\]\[ReM\]\[I\]: shown line\n$"
        )
