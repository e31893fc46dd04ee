"""The counters a driver process keeps for the metrics: timeouts, FAILURE replies by
action (from the driver and synthesised) and restarts, on the fake process reactor."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.process import DriverProcess
from oned.testing.fake_driver import FakeDriver, Outcome
from oned.testing.fake_process import FakeProcessReactor


class DriverCounterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        base = Path(tempfile.mkdtemp(prefix="oned-metrics-"))
        self.addCleanup(shutil.rmtree, base, True)
        self.exe = base / "one_vmm_dummy"
        self.exe.write_text("#!/bin/sh\n")
        os.chmod(self.exe, 0o755)
        self.fake = FakeDriver(self.reactor)
        self.reactor.default_responder = self.fake
        self.driver = DriverProcess(
            "dummy", Family.VMM, str(self.exe), "", self.reactor, self.reactor
        )
        for action in Family.VMM.spec.messages.__members__:
            self.driver.register_action(action, lambda _msg: None)
        d = Deferred.fromCoroutine(self.driver.start())
        self.reactor.advance(0)
        self.successResultOf(d)

    def test_failures_timeouts_and_restarts_are_counted(self) -> None:
        """A FAILURE reply, a timeout and a death each count where the metrics read."""
        self.fake.script("DEPLOY", Outcome(status="FAILURE"))
        self.driver.send("DEPLOY", 1, "")
        self.reactor.advance(0)
        self.assertEqual(self.driver.failed["DEPLOY"], 1)
        self.fake.script("SHUTDOWN", Outcome(reply=False))
        self.driver.send("SHUTDOWN", 2, "", timeout=5)
        self.assertEqual(self.driver.in_flight(), 1)
        self.reactor.advance(5)
        self.assertEqual((self.driver.timed_out, self.driver.failed["SHUTDOWN"]), (1, 1))
        self.fake.script("CANCEL", Outcome(reply=False))
        self.driver.send("CANCEL", 3, "")
        self.reactor.last_process.exit(1)
        self.reactor.advance(1)
        self.reactor.advance(0)
        self.assertEqual(self.driver.failed["CANCEL"], 1)
        self.assertEqual(self.driver.restarts, 1)
        self.assertEqual(self.driver.in_flight(), 0)
