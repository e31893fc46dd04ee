"""The single-thread SQLite executor (mirrors ``SqliteDB``).

All SQL runs on one dedicated thread through ``Database.run(desc, fn, *args)``; the
functions it runs are the ``_thd_*`` functions of the pools, which take the connection
first and return plain values. The connection uses WAL with ``synchronous=NORMAL``: a
committed transaction survives ``kill -9`` of the daemon. Tests use ``Database.memory()``,
which runs the same functions synchronously on an in-memory database with the real schema.

This module and ``oned.db.schema`` are the only places that know SQL dialect details, so a
PostgreSQL backend can later replace them behind the same ``run``/``transact`` seam.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from oned.db import schema

T = TypeVar("T")

Statement = tuple[str, Sequence[Any]]


class DatabaseError(Exception):
    """The database refused an operation."""


class _Executor(Protocol):
    def submit(self, fn: Callable[[], T]) -> Deferred[T]: ...

    def close(self) -> None: ...


class _ThreadExecutor:
    """Runs callables on one named thread."""

    def __init__(self, reactor: IReactorFromThreads) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="oned-db")
        self._pool.start()

    def submit(self, fn: Callable[[], T]) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, fn)

    def close(self) -> None:
        self._pool.stop()


class _SyncExecutor:
    """Runs callables immediately (unit tests: no threads, no reactor)."""

    def submit(self, fn: Callable[[], T]) -> Deferred[T]:
        try:
            return succeed(fn())
        except Exception:
            d: Deferred[T] = Deferred()
            d.errback(Failure())
            return d

    def close(self) -> None:
        pass


def _connect(path: str, timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=timeout_ms / 1000.0, check_same_thread=False, isolation_level=None
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Database:
    """SQLite behind one executor thread."""

    def __init__(self, conn: sqlite3.Connection, executor: _Executor) -> None:
        self._conn = conn
        self._executor = executor
        self._closed = False
        #: Called on the DB thread with each transaction's seconds (``oned.metrics``).
        self.on_transaction: Callable[[float], None] | None = None

    @classmethod
    def open(cls, path: Path, reactor: IReactorFromThreads, timeout_ms: int) -> Database:
        """Open (creating and bootstrapping the schema if new) the file at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(str(path), timeout_ms)
        schema.ensure(conn, path)
        return cls(conn, _ThreadExecutor(reactor))

    @classmethod
    def memory(cls) -> Database:
        conn = _connect(":memory:", 1000)
        schema.ensure(conn, None)
        return cls(conn, _SyncExecutor())

    async def run(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the DB thread and return its result."""
        if self._closed:
            raise DatabaseError(f"database closed ({desc})")
        conn = self._conn

        def call() -> T:
            return fn(conn, *args)

        return await self._executor.submit(call)

    async def transact(self, desc: str, statements: Sequence[Statement]) -> None:
        """Run ``statements`` as one transaction: all of them or none."""
        observe = self.on_transaction
        if observe is None:
            await self.run(desc, _thd_transact, list(statements))
        else:
            await self.run(desc, _thd_timed_transact, list(statements), observe)

    async def close(self) -> None:
        if self._closed:
            return
        await self.run("close", _thd_checkpoint)
        self._closed = True
        self._executor.close()
        self._conn.close()


def _thd_transact(conn: sqlite3.Connection, statements: list[Statement]) -> None:
    try:
        conn.execute("BEGIN IMMEDIATE")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise DatabaseError(str(exc)) from exc


def _thd_timed_transact(
    conn: sqlite3.Connection, statements: list[Statement], observe: Callable[[float], None]
) -> None:
    started = time.perf_counter()
    try:
        _thd_transact(conn, statements)
    finally:
        observe(time.perf_counter() - started)


def _thd_checkpoint(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass
