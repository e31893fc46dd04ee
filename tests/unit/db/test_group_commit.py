"""The DB thread's group commit: concurrent transactions share one COMMIT, a failing one
fails alone, answers keep their order and arrive only after the commit."""

from __future__ import annotations

import queue
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.db.database import Database, DatabaseError, _ThreadExecutor


class FakeReactor:
    """``callFromThread`` into a queue the test drains on its own thread."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]]
        self.calls = queue.SimpleQueue()

    def callFromThread(self, fn: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        self.calls.put((fn, args))

    def drain(self, until: Callable[[], bool]) -> None:
        while not until():
            fn, args = self.calls.get(timeout=10)
            fn(*args)


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.path = Path(self.dir.name) / "one.db"
        self.reactor = FakeReactor()
        self.db = Database.open(self.path, self.reactor, 1000)  # type: ignore[arg-type]
        self.addCleanup(self._close)
        self.commits: list[float] = []
        self.db.on_transaction = self.commits.append
        self.gate = threading.Event()
        self.db._executor.submit(self.gate.wait)  # the thread waits while the test queues
        self._wait(self.db.run("table", _create))

    def _close(self) -> None:
        self.gate.set()
        d = Deferred.fromCoroutine(self.db.close())
        self.reactor.drain(lambda: d.called)

    def _wait(self, coro: Any) -> Any:
        d = Deferred.fromCoroutine(coro)
        self.gate.set()
        self.reactor.drain(lambda: d.called)
        return d

    def test_queued_transactions_share_one_commit_and_fail_alone(self) -> None:
        self.gate = threading.Event()
        self.db._executor.submit(self.gate.wait)
        sql = "INSERT INTO t (k) VALUES (?)"
        pending = [
            Deferred.fromCoroutine(self.db.transact("a", [(sql, (1,))])),
            Deferred.fromCoroutine(self.db.transact("b", [(sql, (2,)), (sql, (1,))])),
            Deferred.fromCoroutine(self.db.transact("c", [(sql, (3,))])),
        ]
        order: list[str] = []
        for name, d in zip("abc", pending, strict=True):
            d.addBoth(_note, order, name)
        self.assertFalse(any(d.called for d in pending))
        self.gate.set()
        self.reactor.drain(lambda: all(d.called for d in pending))
        self.assertEqual(order, ["a", "b", "c"])
        self.successResultOf(pending[0])
        self.failureResultOf(pending[1], DatabaseError)
        self.successResultOf(pending[2])
        # b's first insert went with b's failure; a and c are on disk
        with sqlite3.connect(self.path) as conn:
            rows = [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")]
        self.assertEqual(rows, [1, 3])

    def test_group_is_one_transaction_and_reads_keep_their_place(self) -> None:
        self.gate = threading.Event()
        self.db._executor.submit(self.gate.wait)
        self.commits.clear()
        sql = "INSERT INTO t (k) VALUES (?)"
        first = [Deferred.fromCoroutine(self.db.transact("w", [(sql, (k,))])) for k in (1, 2, 3)]
        read = Deferred.fromCoroutine(self.db.run("count", _count))
        last = Deferred.fromCoroutine(self.db.transact("w", [(sql, (4,))]))
        self.gate.set()
        self.reactor.drain(lambda: last.called)
        for d in first:
            self.successResultOf(d)
        self.assertEqual(self.successResultOf(read), 3)
        self.assertEqual(len(self.commits), 2)  # 1-3 together, then 4

    def test_a_cancelled_waiter_does_not_stop_the_others(self) -> None:
        self.gate = threading.Event()
        self.db._executor.submit(self.gate.wait)
        sql = "INSERT INTO t (k) VALUES (?)"
        first = Deferred.fromCoroutine(self.db.transact("a", [(sql, (1,))]))
        second = Deferred.fromCoroutine(self.db.transact("b", [(sql, (2,))]))
        first.cancel()
        self.failureResultOf(first)
        self.gate.set()
        self.reactor.drain(lambda: second.called)
        self.successResultOf(second)

    def test_executor_is_the_grouping_one(self) -> None:
        self.assertIsInstance(self.db._executor, _ThreadExecutor)


def _note(result: Any, order: list[str], name: str) -> Any:
    order.append(name)
    return result


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
