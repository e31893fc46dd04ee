"""Line protocol of one driver pipe (mirrors ``include/StreamManager.h``).

:class:`DriverProtocol` turns the driver's stdout into :class:`DriverMessage` events
and writes requests to its stdin. It first runs the ``INIT`` handshake, then
dispatches every line through a table keyed by message type with an ``_undefined``
fallback, as ``StreamManager::action_loop`` does. Over-long lines and garbage are
logged and skipped; they never close the pipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineOnlyReceiver

from oned.drivers.message import (
    DriverMessage,
    MessageFormatError,
    format_line,
    parse_line,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import ITransport
    from twisted.logger import Logger
    from twisted.python.failure import Failure

    from oned.drivers.families import FamilySpec

__all__ = ["DriverProtocol", "Handler", "HandshakeError", "init_reply_ok"]

Handler = Callable[[DriverMessage], object]

#: The core reads at most this many bytes of the INIT reply (one ``read`` of 31).
INIT_READ_MAX = 31


class HandshakeError(Exception):
    """The driver did not answer ``INIT SUCCESS``."""


def init_reply_ok(data: bytes) -> bool:
    """Whether the first bytes a driver wrote are an acceptable INIT reply.

    The core tokenises a single read of at most 31 bytes and wants the first two
    tokens to be ``INIT`` and ``SUCCESS``.
    """
    tokens = data[:INIT_READ_MAX].split()
    return len(tokens) > 1 and tokens[0] == b"INIT" and tokens[1] == b"SUCCESS"


class DriverProtocol(LineOnlyReceiver):
    """Frames, parses and dispatches the lines of one driver process.

    Args:
        name: Driver name for log lines.
        spec: The family's codec and message table.
        dispatch: Called with every well-formed message of a known type (the
            owner keeps the per-type table so it survives restarts).
        undefined: Called with the raw line of anything unparseable or unknown.
        log: Logger of the owning manager.
    """

    delimiter = b"\n"
    MAX_LENGTH = 256 * 1024 * 1024

    def __init__(
        self,
        name: str,
        spec: FamilySpec,
        dispatch: Callable[[DriverMessage], None],
        undefined: Callable[[str], None],
        log: Logger,
    ) -> None:
        self._name = name
        self._spec = spec
        self._dispatch = dispatch
        self._undefined = undefined
        self._log = log
        self._buffer = b""
        self._discarding = False
        self.handshake: Deferred[None] = Deferred()
        self._handshaking = True
        self._connected = False

    # -- Twisted hooks ---------------------------------------------------------

    def connectionMade(self) -> None:
        self._connected = True
        self._out.write(b"INIT\n")

    def dataReceived(self, data: bytes) -> None:
        """Split into lines; survive over-long lines instead of disconnecting."""
        if self._handshaking:
            data = self._handshake_data(data)
            if not data:
                return
        buffered = self._buffer + data if self._buffer else data
        lines = buffered.split(self.delimiter)
        self._buffer = lines.pop()
        for line in lines:
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > self.MAX_LENGTH:
                self._too_long(len(line))
                continue
            self.lineReceived(line)
        if len(self._buffer) > self.MAX_LENGTH:
            self._too_long(len(self._buffer))
            self._buffer = b""
            self._discarding = True

    def lineReceived(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            msg = parse_line(line, has_timestamp=self._spec.has_timestamp)
        except MessageFormatError:
            self._undefined(line.decode("utf-8", "replace"))
            return
        if not self._spec.is_known(msg.action):
            self._undefined(line.decode("utf-8", "replace"))
            return
        if self._spec.encode and msg.payload:
            try:
                msg = DriverMessage(
                    msg.action,
                    msg.status,
                    msg.oid,
                    self._spec.decode_payload(msg.payload),
                    msg.timestamp,
                )
            except MessageFormatError:
                self._undefined(line.decode("utf-8", "replace"))
                return
        self._dispatch(msg)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._too_long(len(line))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._connected = False
        if self._handshaking:
            self._handshaking = False
            self._settle(HandshakeError("Driver initialization failed, driver exited"))

    # -- API -------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the pipe to the driver is still open."""
        return self._connected

    @property
    def _out(self) -> ITransport:
        transport = self.transport
        if transport is None:
            raise RuntimeError("driver protocol is not connected")
        return transport

    def send(self, msg: DriverMessage) -> None:
        """Write one request line (payload already encoded)."""
        self._out.write(format_line(msg))

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes (``FINALIZE\\n``)."""
        self._out.write(data)

    # -- internals -------------------------------------------------------------

    def _handshake_data(self, data: bytes) -> bytes:
        """Consume the INIT reply; return whatever follows its line."""
        pending = self._buffer + data
        newline = pending.find(b"\n")
        if newline < 0 and len(pending) < INIT_READ_MAX:
            self._buffer = pending
            return b""
        first = pending if newline < 0 else pending[:newline]
        self._buffer = b""
        self._handshaking = False
        if init_reply_ok(first):
            self._settle(None)
        else:
            text = first[:INIT_READ_MAX].decode("utf-8", "replace")
            self._settle(
                HandshakeError(
                    f"Driver initialization failed, expected INIT SUCCESS message (got {text!r})"
                )
            )
        if newline < 0:
            self._discarding = True
            return b""
        return pending[newline + 1 :]

    def _settle(self, error: HandshakeError | None) -> None:
        """Fire the handshake Deferred unless it already fired (or timed out)."""
        if self.handshake.called:
            return
        if error is None:
            self.handshake.callback(None)
        else:
            self.handshake.errback(error)

    def _too_long(self, length: int) -> None:
        self._log.warn(
            "Driver {driver}: dropped a line of {length} bytes (over {limit})",
            driver=self._name,
            length=length,
            limit=self.MAX_LENGTH,
        )
