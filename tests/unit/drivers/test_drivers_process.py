"""Tests for oned.drivers.process: spawn, INIT, replies, death, restart, stop."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage
from oned.drivers.process import DriverProcess, DriverStartError, DriverState
from oned.testing.fake_driver import FakeDriver, Outcome
from oned.testing.fake_process import FakeProcessReactor


def fresh_path(test: SynchronousTestCase) -> str:
    """A not-yet-existing path inside a private temporary directory."""
    parent = tempfile.mkdtemp(prefix="oned-drivers-")
    test.addCleanup(shutil.rmtree, parent, True)
    return os.path.join(parent, "t")


def make_exe(test: SynchronousTestCase, name: str = "one_vmm_dummy") -> str:
    base = Path(fresh_path(test))
    base.mkdir()
    exe = base / name
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return str(exe)


class DriverProcessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.exe = make_exe(self)
        self.fake = FakeDriver(self.reactor)
        self.reactor.default_responder = self.fake
        self.replies: list[DriverMessage] = []

    def make(self, family: Family = Family.VMM, args: str = "-t 15") -> DriverProcess:
        driver = DriverProcess(
            "dummy", family, self.exe, args, self.reactor, self.reactor, env={"A": "1"}
        )
        for action in family.spec.messages.__members__:
            driver.register_action(action, self.replies.append)
        return driver

    def started(self, family: Family = Family.VMM) -> DriverProcess:
        driver = self.make(family)
        d = Deferred.fromCoroutine(driver.start())
        self.reactor.advance(0)
        self.successResultOf(d)
        return driver

    def test_spawn_like_oned(self) -> None:
        """One argument holds the whole ARGUMENTS string; fd 2 is not mapped."""
        self.reactor.expect_spawn(
            self.exe,
            [self.exe, "-t 15 -p"],
            env={"A": "1"},
            child_fds={0: "w", 1: "r"},
            responder=self.fake,
        )
        driver = self.make(args="-t 15 -p")
        d = Deferred.fromCoroutine(driver.start())
        self.reactor.advance(0)
        self.successResultOf(d)
        self.assertEqual(driver.state, DriverState.RUNNING)
        self.assertEqual(self.reactor.last_process.stdin, b"INIT\n")
        self.reactor.assert_no_remaining_calls()

    def test_init_timeout(self) -> None:
        """No INIT reply within 10 s fails the start and kills the child."""
        self.fake.init_reply = None
        driver = self.make()
        d = Deferred.fromCoroutine(driver.start())
        self.reactor.advance(9.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        failure = self.failureResultOf(d, DriverStartError)
        self.assertEqual(failure.getErrorMessage(), "Driver initialization time out")
        self.assertEqual(self.reactor.last_process.signals, ["KILL"])
        self.reactor.advance(0)
        self.assertTrue(self.reactor.last_process.ended)
        self.assertEqual(driver.state, DriverState.STOPPED)

    def test_init_failure(self) -> None:
        """``INIT FAILURE`` fails the start."""
        self.fake.init_reply = b"INIT FAILURE - bad\n"
        d = Deferred.fromCoroutine(self.make().start())
        self.reactor.advance(0)
        self.assertIn("expected INIT SUCCESS", self.failureResultOf(d).getErrorMessage())

    def test_exit_before_init(self) -> None:
        """A driver exiting at start-up fails the start without waiting 10 s."""
        self.reactor.default_responder = lambda proc: proc.exit(1)
        d = Deferred.fromCoroutine(self.make().start())
        self.failureResultOf(d, DriverStartError)

    def test_missing_executable(self) -> None:
        """A missing program is reported without spawning."""
        os.unlink(self.exe)
        d = Deferred.fromCoroutine(self.make().start())
        self.assertIn("File not exists", self.failureResultOf(d).getErrorMessage())
        self.assertEqual(self.reactor.processes, [])

    def test_not_executable(self) -> None:
        """A program without the x bit is reported without spawning."""
        os.chmod(self.exe, 0o644)
        d = Deferred.fromCoroutine(self.make().start())
        self.assertIn("not executable", self.failureResultOf(d).getErrorMessage())

    def test_spawn_error(self) -> None:
        """An exception from spawnProcess becomes DriverStartError."""
        self.reactor.expect_spawn(error=OSError("boom"))
        d = Deferred.fromCoroutine(self.make().start())
        self.assertIn("boom", self.failureResultOf(d).getErrorMessage())

    def test_request_line_and_reply(self) -> None:
        """Requests are ``TYPE  ID PAYLOAD``; replies reach the handler."""
        driver = self.started()
        driver.send("SHUTDOWN", 7, "PFZN")
        self.assertEqual(self.reactor.last_process.written[-1], b"SHUTDOWN  7 PFZN\n")
        self.reactor.advance(0)
        self.assertEqual(self.replies, [DriverMessage("SHUTDOWN", "SUCCESS", 7, "-")])
        self.assertEqual(driver.in_flight(), 0)

    def test_replies_matched_by_type_and_id(self) -> None:
        """STAT 0 and CP 0 in flight together are told apart by type."""
        self.fake.family = Family.IMAGE
        self.fake.script("STAT", Outcome(info="1024", delay=2))
        self.fake.script("CP", Outcome(info="dummy_path dummy_format", delay=1))
        driver = self.started(Family.IMAGE)
        stat = driver.request("STAT", 0, "PERT", 90)
        driver.send("CP", 0, "PERT")
        self.reactor.advance(1)
        self.assertEqual(
            self.replies, [DriverMessage("CP", "SUCCESS", 0, "dummy_path dummy_format")]
        )
        self.assertNoResult(stat)
        self.reactor.advance(1)
        self.assertEqual(self.successResultOf(stat), DriverMessage("STAT", "SUCCESS", 0, "1024"))
        self.assertEqual(len(self.replies), 1)

    def test_unmatched_reply_is_dropped(self) -> None:
        """A reply nobody asked for (e.g. the dummy's id-0 quirk) is logged and dropped."""
        driver = self.started()
        self.fake.send(b"DEPLOY  8 host1:testvm:dummy\nDEPLOY SUCCESS 99 x\n")
        self.assertEqual(self.replies, [])
        self.assertEqual(driver.in_flight(), 0)

    def test_request_timeout(self) -> None:
        """A sync request times out with ``Request timeout``; the late reply is dropped."""
        self.fake.family = Family.AUTH
        self.fake.script("AUTHENTICATE", Outcome(delay=100))
        driver = self.started(Family.AUTH)
        d = driver.request("AUTHENTICATE", 3, "-1 dummy alice - czNjcmV0 \n", 90)
        self.reactor.advance(90)
        self.assertEqual(
            self.successResultOf(d),
            DriverMessage("AUTHENTICATE", "FAILURE", 3, "Request timeout"),
        )
        self.reactor.advance(10)
        self.assertEqual(self.replies, [])

    def test_async_timeout_fails_through_handler(self) -> None:
        """An async send with a timeout gets a synthesised FAILURE."""
        self.fake.script("DEPLOY", Outcome(reply=False))
        driver = self.started()
        driver.send("DEPLOY", 5, "", timeout=30)
        self.reactor.advance(30)
        self.assertEqual(self.replies, [DriverMessage("DEPLOY", "FAILURE", 5, "Request timeout")])

    def test_death_fails_in_flight_and_restarts(self) -> None:
        """A dying driver fails its in-flight actions, then is restarted after 1 s."""
        reconnected: list[int] = []
        self.fake.script("DEPLOY", Outcome(reply=False))
        driver = self.started()
        driver.add_reconnect_callback(lambda: reconnected.append(1))
        driver.send("DEPLOY", 4, "x")
        self.reactor.last_process.exit(255)
        self.assertEqual(len(self.replies), 1)
        self.assertEqual(self.replies[0].status, "FAILURE")
        self.assertEqual(self.replies[0].oid, 4)
        self.assertIn("exited", self.replies[0].payload)
        self.assertEqual(driver.state, DriverState.RESTARTING)
        self.reactor.advance(1)
        self.reactor.advance(0)
        self.assertEqual(driver.state, DriverState.RUNNING)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(reconnected, [1])

    def test_send_while_down_fails(self) -> None:
        """Requests sent while the driver is restarting fail at once (next turn)."""
        driver = self.started()
        self.reactor.last_process.exit(1)
        driver.send("SHUTDOWN", 9, "x")
        self.reactor.advance(0)
        self.assertEqual(self.replies[-1].action, "SHUTDOWN")
        self.assertEqual(self.replies[-1].status, "FAILURE")

    def test_restart_back_off(self) -> None:
        """Failed restarts back off 1, 2, 4 ... seconds."""
        driver = self.started()
        self.fake.init_reply = b"INIT FAILURE\n"
        self.reactor.last_process.exit(1)
        spawns = []
        for step in (1, 2, 4, 8):
            self.reactor.advance(step - 0.01)
            spawns.append(len(self.reactor.processes))
            self.reactor.advance(0.01)
            self.reactor.advance(0)
        self.assertEqual(spawns, [1, 2, 3, 4])
        self.fake.init_reply = b"INIT SUCCESS - -\n"
        self.reactor.advance(16)
        self.reactor.advance(0)
        self.assertEqual(driver.state, DriverState.RUNNING)

    def test_stdout_closed_kills_and_restarts(self) -> None:
        """A driver closing its stdout is killed after 1 s and restarted."""
        self.fake.exit_on_eof = False
        driver = self.started()
        first = self.reactor.last_process
        first.close_stdout()
        self.reactor.advance(1)
        self.reactor.advance(0)
        self.assertEqual(first.signals, ["KILL"])
        self.assertTrue(first.ended)
        self.reactor.advance(1)
        self.reactor.advance(0)
        self.assertEqual(driver.state, DriverState.RUNNING)

    def test_stop_finalize(self) -> None:
        """stop() writes FINALIZE and closes stdin; a polite driver just exits."""
        driver = self.started()
        d = Deferred.fromCoroutine(driver.stop())
        proc = self.reactor.last_process
        self.assertEqual(proc.written[-1], b"FINALIZE\n")
        self.assertTrue(proc.stdin_closed)
        self.reactor.advance(0)
        self.successResultOf(d)
        self.assertEqual(proc.signals, [])
        self.assertEqual(driver.state, DriverState.STOPPED)

    def test_stop_escalates(self) -> None:
        """A driver ignoring FINALIZE gets TERM after 10 s, then KILL after 5 s."""
        self.fake.exit_on_finalize = False
        self.fake.exit_on_eof = False
        driver = self.started()
        proc = self.reactor.last_process
        proc.term_exits_after = None
        d = Deferred.fromCoroutine(driver.stop())
        self.reactor.advance(10)
        self.assertEqual(proc.signals, ["TERM"])
        self.reactor.advance(5)
        self.assertEqual(proc.signals, ["TERM", "KILL"])
        self.reactor.advance(0)
        self.successResultOf(d)

    def test_stop_cancels_restart(self) -> None:
        """stop() during back-off cancels the pending restart."""
        driver = self.started()
        self.reactor.last_process.exit(1)
        self.successResultOf(Deferred.fromCoroutine(driver.stop()))
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.processes), 1)

    def test_driver_cancel_forgets_action(self) -> None:
        """DRIVER_CANCEL means the cancelled action will never be answered."""
        self.fake.script("SHUTDOWN", Outcome(reply=False))
        driver = self.started()
        driver.send("SHUTDOWN", 3, "x")
        driver.send("DRIVER_CANCEL", 3)
        self.assertEqual(self.reactor.last_process.written[-1], b"DRIVER_CANCEL  3 \n")
        self.assertEqual(driver.in_flight(), 0)

    def test_place_reply_id(self) -> None:
        """The scheduler answers PLACE -1 with id 0; it still matches."""
        self.fake.family = Family.SCHED
        driver = self.started(Family.SCHED)
        driver.send("PLACE", -1, "<SCHEDULER_DRIVER_ACTION/>")
        self.assertEqual(
            self.reactor.last_process.written[-1],
            b"PLACE  -1 PFNDSEVEVUxFUl9EUklWRVJfQUNUSU9OLz4=\n",
        )
        self.reactor.advance(0)
        self.assertEqual(self.replies, [DriverMessage("PLACE", "SUCCESS", 0, "-")])

    def test_hook_replies_unsolicited(self) -> None:
        """Hook EXECUTE results carry the hook id and are delivered as they come."""
        self.fake.family = Family.HOOK
        driver = self.started(Family.HOOK)
        driver.send("EXECUTE", -1, "PEhPT0s+")
        self.fake.send(b"EXECUTE SUCCESS 5 0 PEFSR1VNRU5UUz4=\n")
        self.assertEqual(
            self.replies, [DriverMessage("EXECUTE", "SUCCESS", 5, "0 PEFSR1VNRU5UUz4=")]
        )

    def test_handler_exception_is_contained(self) -> None:
        """A failing handler is logged; later replies still flow."""
        driver = self.started()

        def boom(msg: DriverMessage) -> None:
            raise RuntimeError("handler bug")

        driver.register_action("REBOOT", boom)
        driver.send("REBOOT", 1, "x")
        driver.send("RESET", 1, "x")
        self.reactor.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.replies[-1].action, "RESET")

    def test_log_flood(self) -> None:
        """Thousands of LOG lines in one chunk are all dispatched."""
        driver = self.started()
        logs: list[DriverMessage] = []
        driver.register_action("LOG", logs.append)
        self.fake.send(b"LOG I -1 flood\n" * 5000)
        self.assertEqual(len(logs), 5000)

    def test_stop_during_start(self) -> None:
        """stop() while INIT is pending ends the start; the driver is not restarted."""
        self.fake.init_reply = None
        driver = self.make()
        start = Deferred.fromCoroutine(driver.start())
        stop = Deferred.fromCoroutine(driver.stop())
        self.fake.send(b"INIT SUCCESS - -\n")
        self.reactor.advance(0)
        self.failureResultOf(start, DriverStartError)
        self.successResultOf(stop)
        self.reactor.advance(100)
        self.assertEqual(driver.state, DriverState.STOPPED)
        self.assertEqual(len(self.reactor.processes), 1)
