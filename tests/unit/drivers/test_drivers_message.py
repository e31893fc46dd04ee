"""Tests for oned.drivers.message: the line codec and its C++ stream quirks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.message import (
    DriverMessage,
    MessageFormatError,
    b64decode,
    b64encode,
    format_line,
    parse_line,
    zb64decode,
    zb64encode,
)


class ParseLineTests(SynchronousTestCase):
    def test_reply(self) -> None:
        """A four-field reply splits into type, status, id and verbatim info."""
        msg = parse_line(b"DEPLOY SUCCESS 7 host0:testvm:dummy")
        self.assertEqual(msg, DriverMessage("DEPLOY", "SUCCESS", 7, "host0:testvm:dummy"))
        self.assertTrue(msg.success)

    def test_payload_keeps_inner_and_trailing_blanks(self) -> None:
        """The payload is the rest of the line after the blanks following the id."""
        msg = parse_line(b"CP SUCCESS 3   dummy_path  dummy_format ")
        self.assertEqual(msg.payload, "dummy_path  dummy_format ")

    def test_request_with_empty_status(self) -> None:
        """``TYPE  ID PAYLOAD`` (two spaces) reads the id as the status token."""
        msg = parse_line(b"DEPLOY  7 PFZN")
        self.assertEqual((msg.action, msg.status, msg.oid, msg.payload), ("DEPLOY", "7", 0, "PFZN"))

    def test_non_integer_id_becomes_zero(self) -> None:
        """The dummy's ``-`` outcome: the id is 0 and the payload starts at the bad token."""
        msg = parse_line(b"DEPLOY  8 host1:testvm:dummy")
        self.assertEqual(msg.status, "8")
        self.assertEqual(msg.oid, 0)
        self.assertEqual(msg.payload, "host1:testvm:dummy")

    def test_integer_prefix_id(self) -> None:
        """``12abc`` reads 12 and leaves ``abc`` as the payload start."""
        msg = parse_line(b"RM FAILURE 12abc more")
        self.assertEqual((msg.oid, msg.payload), (12, "abc more"))

    def test_missing_id(self) -> None:
        """A line without an id keeps the default -1 and an empty payload."""
        msg = parse_line(b"INIT SUCCESS")
        self.assertEqual((msg.status, msg.oid, msg.payload), ("SUCCESS", -1, ""))

    def test_type_only_is_an_error(self) -> None:
        """Nothing after the type token is UNDEFINED in the core."""
        self.assertRaises(MessageFormatError, parse_line, b"GARBAGE")
        self.assertRaises(MessageFormatError, parse_line, b"   ")

    def test_leading_blanks_are_skipped(self) -> None:
        """Leading whitespace before the type is ignored by ``istream >>``."""
        self.assertEqual(parse_line(b"  LOG I 3 hi").action, "LOG")

    def test_timestamp(self) -> None:
        """The monitoring dialect carries a timestamp after the id."""
        msg = parse_line(b"START_MONITOR SUCCESS 0 1795485472 eJwr", has_timestamp=True)
        self.assertEqual((msg.oid, msg.timestamp, msg.payload), (0, 1795485472, "eJwr"))

    def test_huge_id_is_clamped(self) -> None:
        """An id beyond int range is clamped like the C++ extraction."""
        self.assertEqual(parse_line(b"X S 99999999999 p").oid, 2**31 - 1)


class FormatLineTests(SynchronousTestCase):
    def test_request_has_two_spaces(self) -> None:
        """Core requests have an empty status: ``TYPE  ID PAYLOAD``."""
        line = format_line(DriverMessage("SHUTDOWN", "", 7, "PFZN"))
        self.assertEqual(line, b"SHUTDOWN  7 PFZN\n")

    def test_empty_payload_keeps_trailing_space(self) -> None:
        """``DRIVER_CANCEL  7 `` ends with a blank, as ``write_to`` does."""
        self.assertEqual(format_line(DriverMessage("DRIVER_CANCEL", "", 7)), b"DRIVER_CANCEL  7 \n")

    def test_monitor_request(self) -> None:
        """Monitoring lines carry ``-`` as status and the timestamp field."""
        line = format_line(DriverMessage("START_MONITOR", "-", 3, "eJw=", 0))
        self.assertEqual(line, b"START_MONITOR - 3 0 eJw=\n")

    def test_auth_payload_blank_line(self) -> None:
        """The AUTHENTICATE payload ends with ``\\n``, so a blank line follows."""
        line = format_line(DriverMessage("AUTHENTICATE", "", 3, "-1 dummy alice - czNjcmV0 \n"))
        self.assertEqual(line, b"AUTHENTICATE  3 -1 dummy alice - czNjcmV0 \n\n")

    def test_embedded_newline_rejected(self) -> None:
        """A payload cannot span lines."""
        self.assertRaises(MessageFormatError, format_line, DriverMessage("X", "", 1, "a\nb"))

    @given(
        action=st.from_regex(r"[A-Z_]{1,20}", fullmatch=True),
        status=st.sampled_from(["SUCCESS", "FAILURE", "I", "E"]),
        oid=st.integers(min_value=-(2**31), max_value=2**31 - 1),
        payload=st.from_regex(r"[!-~]([ -~]*[!-~])?", fullmatch=True) | st.just(""),
    )
    def test_round_trip(self, action: str, status: str, oid: int, payload: str) -> None:
        """parse_line(format_line(m)) == m for single-line messages."""
        msg = DriverMessage(action, status, oid, payload)
        self.assertEqual(parse_line(format_line(msg)[:-1]), msg)


class EncodingTests(SynchronousTestCase):
    def test_b64(self) -> None:
        """Strict base64 without line breaks, lenient decoding."""
        self.assertEqual(b64encode("s3cret"), "czNjcmV0")
        self.assertEqual(b64decode("LQ=="), "-")
        self.assertEqual(b64decode("LQ"), "-")
        self.assertEqual(b64decode("czNj\ncmV0"), "s3cret")

    @given(st.text())
    def test_zb64_round_trip(self, text: str) -> None:
        """zlib+base64 round-trips any text."""
        self.assertEqual(zb64decode(zb64encode(text)), text)

    def test_zb64_garbage(self) -> None:
        """Bad zlib data raises MessageFormatError."""
        self.assertRaises(MessageFormatError, zb64decode, "bm90IHpsaWI=")
