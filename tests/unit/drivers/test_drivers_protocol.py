"""Tests for oned.drivers.protocol: handshake, framing and dispatch on a StringTransport."""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, zb64encode
from oned.drivers.protocol import DriverProtocol, HandshakeError, init_reply_ok


class ProtocolTests(SynchronousTestCase):
    def make(self, family: Family = Family.VMM) -> tuple[DriverProtocol, StringTransport]:
        self.messages: list[DriverMessage] = []
        self.undefined: list[str] = []
        proto = DriverProtocol(
            "dummy", family.spec, self.messages.append, self.undefined.append, Logger()
        )
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_init_written_on_connect(self) -> None:
        """The core writes the raw line ``INIT`` first."""
        _, transport = self.make()
        self.assertEqual(transport.value(), b"INIT\n")

    def test_handshake_success(self) -> None:
        """``INIT SUCCESS - -`` completes the handshake."""
        proto, _ = self.make()
        proto.dataReceived(b"INIT SUCCESS - -\n")
        self.assertIsNone(self.successResultOf(proto.handshake))

    def test_handshake_split_reply(self) -> None:
        """The INIT reply may arrive in pieces before its newline."""
        proto, _ = self.make()
        proto.dataReceived(b"INIT SUC")
        self.assertNoResult(proto.handshake)
        proto.dataReceived(b"CESS - 1795485472 -\n")
        self.successResultOf(proto.handshake)

    def test_handshake_failure(self) -> None:
        """Anything but ``INIT SUCCESS`` first (even a LOG line) fails the start."""
        proto, _ = self.make()
        proto.dataReceived(b"LOG I -1 hello\nINIT SUCCESS\n")
        self.failureResultOf(proto.handshake, HandshakeError)

    def test_handshake_without_newline(self) -> None:
        """31 bytes without a newline are judged like the core's single read."""
        proto, _ = self.make()
        proto.dataReceived(b"INIT SUCCESS " + b"x" * 40)
        self.successResultOf(proto.handshake)

    def test_init_reply_ok(self) -> None:
        """Only the first two tokens matter."""
        self.assertTrue(init_reply_ok(b"INIT SUCCESS"))
        self.assertFalse(init_reply_ok(b"INIT FAILURE - -"))
        self.assertFalse(init_reply_ok(b"INIT"))

    def test_dispatch_after_handshake(self) -> None:
        """Lines after the INIT reply in the same chunk are dispatched."""
        proto, _ = self.make()
        proto.dataReceived(b"INIT SUCCESS - -\nDEPLOY SUCCESS 7 h:n:dummy\nLOG I 7 hi\n")
        self.assertEqual(
            self.messages,
            [
                DriverMessage("DEPLOY", "SUCCESS", 7, "h:n:dummy"),
                DriverMessage("LOG", "I", 7, "hi"),
            ],
        )

    def test_unknown_type_is_undefined(self) -> None:
        """Types outside the family and garbage go to the UNDEFINED handler."""
        proto, _ = self.make()
        proto.dataReceived(b"INIT SUCCESS\nTRANSFER SUCCESS 1 -\n\x00\xffgarbage\n\n")
        self.assertEqual(self.messages, [])
        self.assertEqual(len(self.undefined), 2)

    def test_overlong_line_is_dropped(self) -> None:
        """A line over MAX_LENGTH is dropped; the next line still works."""
        proto, _ = self.make()
        proto.MAX_LENGTH = 64
        proto.dataReceived(b"INIT SUCCESS\n")
        proto.dataReceived(b"LOG I 1 " + b"x" * 100 + b"\nSHUTDOWN SUCCESS 2 -\n")
        self.assertEqual(self.messages, [DriverMessage("SHUTDOWN", "SUCCESS", 2, "-")])

    def test_overlong_buffer_is_discarded(self) -> None:
        """An unterminated flood is discarded up to its newline."""
        proto, _ = self.make()
        proto.MAX_LENGTH = 64
        proto.dataReceived(b"INIT SUCCESS\n")
        proto.dataReceived(b"x" * 100)
        proto.dataReceived(b"y" * 100 + b"\nSHUTDOWN SUCCESS 2 -\n")
        self.assertEqual(self.messages, [DriverMessage("SHUTDOWN", "SUCCESS", 2, "-")])

    def test_scheduler_payloads_are_decoded(self) -> None:
        """The scheduler message class base64-decodes every payload, LOG too."""
        proto, _ = self.make(Family.SCHED)
        proto.dataReceived(b"INIT SUCCESS - -\nPLACE SUCCESS 0 LQ==\nLOG I 0 aGk=\n")
        self.assertEqual(
            self.messages,
            [
                DriverMessage("PLACE", "SUCCESS", 0, "-"),
                DriverMessage("LOG", "I", 0, "hi"),
            ],
        )

    def test_monitor_dialect(self) -> None:
        """The monitoring dialect has timestamps and zlib+base64 payloads."""
        proto, _ = self.make(Family.MONITOR)
        line = f"STOP_MONITOR SUCCESS 3 1795485472 {zb64encode('-')}\n".encode()
        proto.dataReceived(b"INIT SUCCESS - 1795485472 -\n" + line)
        self.assertEqual(
            self.messages,
            [DriverMessage("STOP_MONITOR", "SUCCESS", 3, "-", 1795485472)],
        )

    def test_monitor_bad_zlib_is_undefined(self) -> None:
        """A payload that does not inflate makes the line UNDEFINED."""
        proto, _ = self.make(Family.MONITOR)
        proto.dataReceived(b"INIT SUCCESS\nSTOP_MONITOR SUCCESS 3 1 bm9wZQ==\n")
        self.assertEqual(self.messages, [])
        self.assertEqual(len(self.undefined), 1)

    def test_connection_lost_during_handshake(self) -> None:
        """A driver exiting before INIT fails the handshake."""
        proto, _ = self.make()
        proto.connectionLost(None)
        self.failureResultOf(proto.handshake, HandshakeError)
