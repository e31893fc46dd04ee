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

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from oned.db import schema

T = TypeVar("T")

Statement = tuple[str, Sequence[Any]]


class DatabaseError(Exception):
    """The database refused an operation."""


class _Executor(Protocol):
    def submit(self, fn: Callable[[], T]) -> Deferred[T]: ...

    def close(self) -> None: ...


@dataclass
class _Job:
    """A callable (``fn``) or a transaction (``statements``) and who waits for it."""

    done: Deferred[Any]
    fn: Callable[[], Any] | None = None
    statements: list[Statement] | None = None


#: Transactions committed together at most.
GROUP_MAX = 64


class _ThreadExecutor:
    """Runs callables on one named thread, in order, and answers on the reactor.

    Transactions queued back to back (concurrent calls) are committed as one group: one
    ``BEGIN IMMEDIATE ... COMMIT``, every waiter answered only after that ``COMMIT`` (so
    ``kill -9`` still loses nothing acknowledged). If any of them fails the group is
    rolled back and each runs alone, so one transaction's failure never reaches another.
    The answers of a batch reach the reactor in one hand-over."""

    def __init__(self, reactor: IReactorFromThreads, conn: sqlite3.Connection) -> None:
        self._reactor = reactor
        self._conn = conn
        self.on_transaction: Callable[[float], None] | None = None
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._loop, name="oned-db", daemon=True
        )
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Deferred[T]:
        done: Deferred[T] = Deferred()
        self._queue.put(_Job(done, fn=fn))
        return done

    def transact(self, statements: list[Statement]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self._queue.put(_Job(done, statements=statements))
        return done

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        held: list[_Job | None] = []
        while True:
            job = held.pop() if held else self._queue.get()
            if job is None:
                return
            if job.fn is not None:
                answers = [self._call(job)]
            else:
                group = [job]
                while len(group) < GROUP_MAX:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None or more.fn is not None:
                        held.append(more)
                        break
                    group.append(more)
                answers = self._commit(group)
            self._reactor.callFromThread(_answer, answers)

    def _call(self, job: _Job) -> tuple[Deferred[Any], Any, bool]:
        assert job.fn is not None
        try:
            return (job.done, job.fn(), True)
        except BaseException:
            return (job.done, Failure(), False)

    def _commit(self, group: list[_Job]) -> list[tuple[Deferred[Any], Any, bool]]:
        started = time.perf_counter()
        if len(group) == 1:
            answers = [self._alone(group[0])]
        else:
            try:
                _thd_group(self._conn, [job.statements or [] for job in group])
                answers = [(job.done, None, True) for job in group]
            except DatabaseError:
                answers = [self._alone(job) for job in group]
        observe = self.on_transaction
        if observe is not None:
            with contextlib.suppress(Exception):
                observe(time.perf_counter() - started)
        return answers

    def _alone(self, job: _Job) -> tuple[Deferred[Any], Any, bool]:
        try:
            _thd_transact(self._conn, job.statements or [])
            return (job.done, None, True)
        except BaseException:
            return (job.done, Failure(), False)


def _answer(answers: list[tuple[Deferred[Any], Any, bool]]) -> None:
    """On the reactor: fire the waiters of one batch, in order (a waiter cancelled
    meanwhile is skipped, never the ones after it)."""
    for done, value, ok in answers:
        if done.called:
            continue
        if ok:
            done.callback(value)
        else:
            done.errback(value)


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
        return cls(conn, _ThreadExecutor(reactor, conn))

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
        executor = self._executor
        if isinstance(executor, _ThreadExecutor):
            if self._closed:
                raise DatabaseError(f"database closed ({desc})")
            executor.on_transaction = observe
            await executor.transact(list(statements))
        elif observe is None:
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


def _thd_group(conn: sqlite3.Connection, group: list[list[Statement]]) -> None:
    """Several transactions in one commit; any failure rolls the whole group back
    (``DatabaseError``) for the caller to run them one by one."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for statements in group:
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
