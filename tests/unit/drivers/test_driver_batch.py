"""Hook events are written to HM_MAD together: one pipe write per ``batch_delay`` for
a burst, in order, and nothing held back at FINALIZE."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.process import DriverProcess
from oned.testing.fake_driver import FakeDriver
from oned.testing.fake_process import FakeProcessReactor


def make_exe(test: SynchronousTestCase, name: str) -> str:
    base = Path(tempfile.mkdtemp(prefix="oned-batch-"))
    test.addCleanup(shutil.rmtree, str(base), True)
    exe = base / name
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return str(exe)


class HookBatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.fake = FakeDriver(self.reactor)
        self.fake.family = Family.HOOK
        self.reactor.default_responder = self.fake
        self.driver = DriverProcess(
            "hook_exe", Family.HOOK, make_exe(self, "one_hm"), "", self.reactor, self.reactor
        )
        d = Deferred.fromCoroutine(self.driver.start())
        self.reactor.advance(0)
        self.successResultOf(d)

    def test_burst_is_one_write_in_order(self) -> None:
        process = self.reactor.last_process
        before = len(process.written)
        for payload in ("QQ==", "Qg==", "Qw=="):
            self.driver.send("EXECUTE", -1, payload)
        self.assertEqual(len(process.written), before)
        self.reactor.advance(Family.HOOK.spec.batch_delay)
        self.assertEqual(
            process.written[before:],
            [b"EXECUTE  -1 QQ==\nEXECUTE  -1 Qg==\nEXECUTE  -1 Qw==\n"],
        )
        self.driver.send("EXECUTE", -1, "RA==")
        self.reactor.advance(Family.HOOK.spec.batch_delay)
        self.assertEqual(process.written[-1], b"EXECUTE  -1 RA==\n")

    def test_finalize_writes_what_is_held_first(self) -> None:
        process = self.reactor.last_process
        self.driver.send("EXECUTE", -1, "QQ==")
        Deferred.fromCoroutine(self.driver.stop())
        self.assertEqual(process.written[-2:], [b"EXECUTE  -1 QQ==\n", b"FINALIZE\n"])

    def test_other_families_write_at_once(self) -> None:
        self.assertEqual(Family.VMM.spec.batch_delay, 0.0)
