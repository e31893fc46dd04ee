"""InformationManager: monitoring reports drive host state, in batches (fake driver,
fake clock, in-memory database)."""

from __future__ import annotations

import base64
import importlib.util
import zlib
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, zb64decode
from oned.managers.information.manager import FLUSH_DELAY, InformationManager
from oned.testing.rpc import OnedHarness, result_of

LIB = Path(__file__).resolve().parents[3] / "drivers" / "remotes" / "im" / "lib"
_spec = importlib.util.spec_from_file_location(
    "dummy_monitord_client", LIB / "dummy_monitord_client.py"
)
assert _spec is not None and _spec.loader is not None
dummy: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dummy)


class FakeDrivers:
    """The driver manager seen by the information manager: records what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str, str | None]] = []
        self.handlers: dict[str, Any] = {}

    def get(self, family: Family, name: str | None = None) -> object | None:
        return object() if family is Family.MONITOR and name == "dummy" else None

    def register_action(self, family: Family, action: str, handler: Any) -> None:
        self.handlers[action] = handler

    def send(self, family: Family, action: str, oid: int, payload: str = "", **kw: Any) -> bool:
        self.sent.append((action, oid, payload, kw.get("name")))
        return True

    def reply(self, action: str, status: str, oid: int, payload: str, ts: int = 0) -> None:
        self.handlers[action](DriverMessage(action, status, oid, payload, ts))


def messages(hostname: str, ts: int = 100) -> str:
    text = dummy.monitor_messages(hostname)
    return text.replace(
        text[text.index("<TIMESTAMP>") :], f"<TIMESTAMP>{ts}</TIMESTAMP></MONITOR_MESSAGES>"
    )


def datagram(kind: str, hid: int, ts: int, data: str, status: str = "SUCCESS") -> bytes:
    packed = base64.b64encode(zlib.compress(data.encode())).decode()
    return f"{kind} {status} {hid} {ts} {packed}".encode()


class InformationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness("HOST_MONITORING_EXPIRATION_TIME = 600\n")
        self.addCleanup(self.one.close)
        self.drivers = FakeDrivers()
        core = self.one.core
        self.im = InformationManager(core, self.drivers, self.one.clock)
        core.information_manager = self.im
        result_of(Deferred.fromCoroutine(self.im.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(self.im.stop())))

    def host(self, oid: int = 0) -> etree._Element:
        return etree.fromstring(self.one.ok("one.host.info", oid))

    def flush(self) -> None:
        self.one.clock.advance(FLUSH_DELAY)

    def test_allocate_starts_and_reply_monitors(self) -> None:
        """allocate sends START_MONITOR; its reply makes the host MONITORED with a sample."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        action, oid, payload, name = self.drivers.sent[-1]
        self.assertEqual((action, oid, name), ("START_MONITOR", 0, "dummy"))
        root = etree.fromstring(payload)
        self.assertEqual(root.findtext("HOST/NAME"), "host01")
        self.assertEqual(root.findtext("MONITOR_CONFIGURATION/PROBES_PERIOD/MONITOR_HOST"), "120")
        self.drivers.reply("START_MONITOR", "SUCCESS", 0, messages("host01"))
        self.assertEqual(self.host().findtext("STATE"), "0")
        self.flush()
        doc = self.host()
        self.assertEqual(doc.findtext("STATE"), "2")
        self.assertEqual(doc.findtext("HOST_SHARE/TOTAL_CPU"), "800")
        self.assertEqual(doc.findtext("TEMPLATE/HOSTNAME"), "host01")
        self.assertEqual(doc.findtext("MONITORING/ID"), "0")
        self.assertIsNotNone(doc.find("MONITORING/CAPACITY/FREE_CPU"))
        pool = self.one.ok("one.hostpool.info")
        self.assertIn("<MONITORING/></HOST></HOST_POOL>", pool)
        data = etree.fromstring(self.one.ok("one.host.monitoring", 0))
        self.assertEqual(len(data.findall("MONITORING")), 1)

    def test_failures_set_error_and_recover(self) -> None:
        """START_MONITOR failure: ERROR without message; a probe failure: with it; the
        next SYSTEM_HOST brings the host back to MONITORED."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.drivers.reply("START_MONITOR", "FAILURE", 0, "ssh: connect refused")
        self.flush()
        doc = self.host()
        self.assertEqual(doc.findtext("STATE"), "3")
        self.assertTrue((doc.findtext("TEMPLATE/ERROR") or "").endswith(
            " : Error monitoring Host host01 (0): "))  # fmt: skip
        self.im.reports.datagram(datagram("MONITOR_HOST", 0, 5, "probe crashed", "FAILURE"))
        self.flush()
        self.assertTrue((self.host().findtext("TEMPLATE/ERROR") or "").endswith(": "))
        self.im.reports.datagram(datagram("SYSTEM_HOST", 0, 6, dummy.system_host("host01")))
        self.flush()
        doc = self.host()
        self.assertEqual(doc.findtext("STATE"), "2")
        self.assertIsNone(doc.find("TEMPLATE/ERROR"))
        self.im.reports.datagram(datagram("BEACON_HOST", 0, 7, "host unreachable", "FAILURE"))
        self.flush()
        doc = self.host()
        self.assertEqual(doc.findtext("STATE"), "3")
        self.assertIn("(0): host unreachable", doc.findtext("TEMPLATE/ERROR") or "")

    def test_garbage_unknown_and_out_of_order(self) -> None:
        """Bad datagrams, unknown hosts and old timestamps are dropped; bad templates error."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.drivers.reply("START_MONITOR", "SUCCESS", 0, messages("host01", ts=50))
        self.flush()
        before = self.im.reports.ignored
        for junk in (b"", b"\x00\xff garbage", b"MONITOR_HOST SUCCESS 0 9 !!notbase64",
                     datagram("MONITOR_HOST", 42, 60, "USEDCPU=1")):  # fmt: skip
            self.im.reports.datagram(junk)
        self.assertEqual(self.im.reports.ignored, before + 3)
        self.im.reports.datagram(datagram("MONITOR_HOST", 0, 40, "USEDCPU=1"))
        self.flush()
        data = etree.fromstring(self.one.ok("one.host.monitoring", 0))
        self.assertEqual(len(data.findall("MONITORING")), 1)
        self.im.reports.datagram(datagram("MONITOR_HOST", 0, 70, 'A = [ "unclosed'))
        self.flush()
        self.assertIn(
            "Error parsing monitor information", self.host().findtext("TEMPLATE/ERROR") or ""
        )

    def test_offline_stops_and_drops_reports(self) -> None:
        """OFFLINE sends STOP_MONITOR and ignores reports; enable restarts monitoring."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.drivers.reply("START_MONITOR", "SUCCESS", 0, messages("host01"))
        self.flush()
        self.one.ok("one.host.status", 0, 2)
        self.assertEqual(self.drivers.sent[-1][0], "STOP_MONITOR")
        self.im.reports.datagram(datagram("SYSTEM_HOST", 0, 500, dummy.system_host("host01")))
        self.flush()
        doc = self.host()
        self.assertEqual((doc.findtext("STATE"), doc.findtext("HOST_SHARE/TOTAL_CPU")), ("8", "0"))
        self.one.ok("one.host.status", 0, 0)
        self.assertEqual(self.drivers.sent[-1][0], "START_MONITOR")
        self.assertEqual(self.host().findtext("STATE"), "0")
        self.one.ok("one.host.status", 0, 1)
        self.im.reports.datagram(datagram("SYSTEM_HOST", 0, 600, dummy.system_host("host01")))
        self.flush()
        self.assertEqual(self.host().findtext("STATE"), "4")
        self.one.ok("one.host.status", 0, 0)
        self.assertEqual(self.host().findtext("STATE"), "2")

    def test_silent_host_restarted_and_samples_expire(self) -> None:
        """A host silent for MONITORING_INTERVAL_HOST gets START_MONITOR again; samples
        older than HOST_MONITORING_EXPIRATION_TIME are deleted by the timer."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.drivers.reply("START_MONITOR", "SUCCESS", 0, messages("host01"))
        self.flush()
        sent = len(self.drivers.sent)
        self.one.clock.advance(150)
        self.assertEqual(len(self.drivers.sent), sent)
        self.one.clock.advance(45)
        self.assertEqual(self.drivers.sent[-1][:2], ("START_MONITOR", 0))
        self.im.reports.datagram(datagram("MONITOR_HOST", 0, 900, "USEDCPU=5\nFREECPU=795"))
        self.flush()
        self.one.clock.advance(500)
        data = etree.fromstring(self.one.ok("one.host.monitoring", 0))
        self.assertEqual([m.findtext("CAPACITY/USED_CPU") for m in data.findall("MONITORING")],
                         ["5"])  # fmt: skip
        self.assertEqual(self.one.ok("one.host.delete", 0), 0)
        self.assertEqual(self.drivers.sent[-1][0], "STOP_MONITOR")

    def test_reports_absorbed_in_one_transaction(self) -> None:
        """Reports of many hosts arriving together are written in a single transaction."""
        for i in range(30):
            self.one.ok("one.host.allocate", f"host{i:02d}", "dummy", "dummy", -1)
        db = self.one.core.db
        calls: list[str] = []
        original = db.transact

        async def counting(desc: str, statements: Any) -> None:
            calls.append(desc)
            await original(desc, statements)

        db.transact = counting  # type: ignore[method-assign]
        for i in range(30):
            self.drivers.reply("START_MONITOR", "SUCCESS", i, messages(f"host{i:02d}"))
        self.flush()
        self.assertEqual(len(calls), 1, calls)
        states = etree.fromstring(self.one.ok("one.hostpool.info")).findall("HOST/STATE")
        self.assertEqual({s.text for s in states}, {"2"})

    def test_stop_monitor_payload(self) -> None:
        """STOP_MONITOR carries the host and the configuration, zlib-free in the manager."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.one.ok("one.host.delete", 0)
        action, oid, payload, _ = self.drivers.sent[-1]
        self.assertEqual((action, oid), ("STOP_MONITOR", 0))
        self.assertTrue(payload.startswith("<MONITOR_DRIVER_ACTION><HOST><ID>0</ID>"))
        self.assertEqual(zb64decode(base64.b64encode(zlib.compress(b"-")).decode()), "-")


class DummySenderTests(SynchronousTestCase):
    def test_sender_reports_and_dedups(self) -> None:
        """The dummy sender keeps the newest registration of a host and sends its
        reports to the configured port; a datagram decodes to a probe template."""
        import os
        import socket
        import tempfile

        state = tempfile.mkdtemp(prefix="one-sender-")
        os.makedirs(os.path.join(state, "hosts"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            port = sock.getsockname()[1]
            config = (
                "<MONITOR_CONFIGURATION><NETWORK><MONITOR_ADDRESS>auto</MONITOR_ADDRESS>"
                f"<PORT>{port}</PORT></NETWORK><PROBES_PERIOD><MONITOR_HOST>1</MONITOR_HOST>"
                "</PROBES_PERIOD></MONITOR_CONFIGURATION>"
            )
            coded = base64.b64encode(config.encode()).decode()
            for key in ("10-3", "20-3"):
                with open(os.path.join(state, "hosts", key), "w") as fh:
                    fh.write(f"host03\n{coded}\n")
                os.utime(os.path.join(state, "hosts", key), ns=(1, int(key[:2])))
            sender = dummy.Sender(state)
            sender.scan(0.0)
            self.assertEqual(sorted(sender.hosts), ["20-3"])
            self.assertEqual(sorted(os.listdir(os.path.join(state, "hosts"))), ["20-3"])
            sender.send(1.5)
            kind, status, hid, ts, packed = sock.recv(65535).decode().split()
        self.assertEqual((kind, status, hid, ts), ("MONITOR_HOST", "SUCCESS", "3", "1"))
        self.assertIn("USEDCPU=", zlib.decompress(base64.b64decode(packed)).decode())


class BombTests(SynchronousTestCase):
    def test_report_inflating_too_much_is_ignored(self) -> None:
        """A small datagram that would inflate past 4 MiB is dropped, not parsed."""
        one = OnedHarness()
        self.addCleanup(one.close)
        im = InformationManager(one.core, FakeDrivers(), one.clock)
        result_of(Deferred.fromCoroutine(im.start()))
        bomb = base64.b64encode(zlib.compress(b"A" * (8 * 1024 * 1024), 9))
        self.assertLess(len(bomb), 65000)
        im.reports.datagram(b"MONITOR_HOST SUCCESS 0 1 " + bomb)
        self.assertEqual((im.reports.ignored, im.reports.received), (1, 0))
