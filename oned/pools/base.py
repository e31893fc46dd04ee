"""Generic object pool and unit of work (mirrors ``PoolSQL``/``PoolObjectSQL``).

Each pool keeps a write-through copy of its table in memory: this process is the only
writer of the database, so reads are served from memory, while every change is first
committed to SQLite (one transaction per ``Unit``) and only then made visible. A change
that fails to commit leaves both the database and memory as they were. Per-object
``DeferredLock``s serialise read-modify-write sequences of concurrent API calls.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.defer import DeferredLock

from oned.db.database import Database, Statement
from oned.template import xml_escape


class Stored(Protocol):
    oid: int
    name: str

    def to_xml(self) -> str: ...

    def columns(self) -> dict[str, Any]: ...


T = TypeVar("T", bound=Stored)


def _thd_load(conn: sqlite3.Connection, table: str) -> tuple[list[str], int]:
    bodies = [r[0] for r in conn.execute(f"SELECT body FROM {table} ORDER BY oid")]  # noqa: S608
    row = conn.execute("SELECT last_oid FROM pool_control WHERE tablename = ?", (table,)).fetchone()
    return bodies, (int(row[0]) if row else -1)


class Pool(Generic[T]):
    """Objects of one table, by id, with id allocation from ``pool_control``."""

    def __init__(
        self, db: Database, table: str, loader: Callable[[str], T], first_oid: int = 0
    ) -> None:
        self.db = db
        self.table = table
        self._loader = loader
        self._objects: dict[int, T] = {}
        self._bodies: dict[int, str] = {}
        self._by_name: dict[str, int] = {}
        self._wire: dict[int, bytes] = {}
        self.last_oid = -1
        self._first_oid = first_oid
        self._locks: dict[int, DeferredLock] = {}
        #: ``observer(unit, committed, new)`` when a unit stages an add (committed None)
        #: or a save: the state hooks of ``oned.managers.hook`` (``PoolSQL::update``).
        self.observer: Callable[[Unit, T | None, T], None] | None = None

    async def load(self) -> None:
        bodies, last = await self.db.run(f"load {self.table}", _thd_load, self.table)
        for body in bodies:
            self._remember(self._loader(body), body)
        self.last_oid = last

    async def reload(self) -> None:
        """Forget every object and read the table again (after ``one.system.sql``)."""
        for oid in list(self._objects):
            self._forget(oid)
        await self.load()

    def is_empty(self) -> bool:
        return self.last_oid == -1

    def _remember(self, obj: T, body: str | None = None) -> None:
        old = self._objects.get(obj.oid)
        if old is not None:
            self._by_name.pop(old.name, None)
        self._objects[obj.oid] = obj
        self._bodies[obj.oid] = obj.to_xml() if body is None else body
        self._wire.pop(obj.oid, None)
        self._by_name[obj.name] = obj.oid

    def _forget(self, oid: int) -> None:
        self._bodies.pop(oid, None)
        self._wire.pop(oid, None)
        old = self._objects.pop(oid, None)
        if old is not None and self._by_name.get(old.name) == oid:
            del self._by_name[old.name]
        self._locks.pop(oid, None)

    def get(self, oid: int) -> T | None:
        """The committed object (read-only: copy it before changing it)."""
        return self._objects.get(oid)

    def body(self, oid: int) -> str:
        """The stored XML body of a committed object (rendered once per change)."""
        return self._bodies[oid]

    def wire_body(self, oid: int) -> bytes:
        """``body(oid)`` escaped for an XML-RPC ``<string>`` and encoded, once per change
        (pool listings are written from these pieces)."""
        data = self._wire.get(oid)
        if data is None:
            data = self._wire[oid] = xml_escape(self.body(oid)).encode("utf-8", "xmlcharrefreplace")
        return data

    def by_name(self, name: str) -> T | None:
        oid = self._by_name.get(name)
        return None if oid is None else self._objects.get(oid)

    def __iter__(self) -> Iterator[T]:
        return iter(sorted(self._objects.values(), key=lambda o: o.oid))

    def objects(self) -> list[T]:
        """Every committed object, in no particular order (callers sort if needed)."""
        return list(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    def lock(self, oid: int) -> DeferredLock:
        """The lock serialising changes to one object."""
        lock = self._locks.get(oid)
        if lock is None:
            lock = self._locks[oid] = DeferredLock()
        return lock

    def next_oid(self) -> int:
        oid = max(self.last_oid + 1, self._first_oid)
        self.last_oid = oid
        return oid

    def set_last_oid(self, oid: int) -> None:
        self.last_oid = oid

    def insert(self, obj: T) -> Statement:
        cols = obj.columns()
        names = ["oid", "name", "body", *cols]
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {self.table} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608
        return sql, (obj.oid, obj.name, obj.to_xml(), *cols.values())

    def update(self, obj: T) -> Statement:
        cols = obj.columns()
        sets = ", ".join(f"{c} = ?" for c in ["name", "body", *cols])
        sql = f"UPDATE {self.table} SET {sets} WHERE oid = ?"  # noqa: S608
        return sql, (obj.name, obj.to_xml(), *cols.values(), obj.oid)

    def delete(self, oid: int) -> Statement:
        return f"DELETE FROM {self.table} WHERE oid = ?", (oid,)  # noqa: S608

    def control(self) -> Statement:
        return (
            "REPLACE INTO pool_control (tablename, last_oid) VALUES (?, ?)",
            (self.table, self.last_oid),
        )


class Unit:
    """A set of changes committed as one transaction, then applied to memory."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._statements: list[Statement] = []
        self._after: list[Callable[[], None]] = []
        self._undo: list[Callable[[], None]] = []

    def allocate(self, pool: Pool[T]) -> int:
        before = pool.last_oid
        oid = pool.next_oid()
        self._undo.append(lambda: pool.set_last_oid(before) if pool.last_oid == oid else None)
        self._statements.append(pool.control())
        return oid

    def add(self, pool: Pool[T], obj: T) -> None:
        statement = pool.insert(obj)
        self._statements.append(statement)
        if pool.observer is not None:
            pool.observer(self, None, obj)
        self._after.append(lambda: pool._remember(obj, str(statement[1][2])))

    def save(self, pool: Pool[T], obj: T) -> None:
        statement = pool.update(obj)
        self._statements.append(statement)
        if pool.observer is not None:
            pool.observer(self, pool.get(obj.oid), obj)
        self._after.append(lambda: pool._remember(obj, str(statement[1][1])))

    def drop(self, pool: Pool[T], oid: int) -> None:
        self._statements.append(pool.delete(oid))
        self._after.append(lambda: pool._forget(oid))

    def sql(self, statement: Statement, after: Callable[[], None] | None = None) -> None:
        self._statements.append(statement)
        if after is not None:
            self._after.append(after)

    def then(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)

    def rollback(self) -> None:
        """Give up a unit before committing it (frees the ids it allocated)."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._statements.clear()
        self._after.clear()

    async def commit(self, desc: str) -> None:
        try:
            await self._db.transact(desc, self._statements)
        except Exception:
            for undo in reversed(self._undo):
                undo()
            raise
        for fn in self._after:
            fn()


class Locks:
    """Several object locks taken in one global order (no deadlock between calls)."""

    def __init__(self, *targets: tuple[Pool[Any], int]) -> None:
        keys = sorted({(p.table, oid): p for p, oid in targets}.items())
        self._locks = [pool.lock(oid) for (_, oid), pool in keys]

    async def __aenter__(self) -> None:
        for lock in self._locks:
            await lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        for lock in reversed(self._locks):
            lock.release()
