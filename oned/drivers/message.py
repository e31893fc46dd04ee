"""The driver line codec (mirrors ``include/Message.h``, ``src/protocol/Message.cc``).

Every line exchanged with a driver reads ``TYPE STATUS ID [TIMESTAMP] PAYLOAD``. The
core writes requests with an empty STATUS, so a request starts ``TYPE  ID`` (two
spaces); drivers answer ``TYPE SUCCESS|FAILURE ID INFO``. Parsing reproduces the C++
stream semantics, quirks included: tokens are split on ASCII whitespace, a non-numeric
ID becomes ``0`` and the payload then starts at the bad token, and the payload is the
rest of the line verbatim once the blanks after the ID (or timestamp) are skipped.

Payload encodings (base64, zlib+base64) are per family and applied by
:mod:`oned.drivers.families`; the helpers here are pure functions.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "DriverMessage",
    "MessageFormatError",
    "b64decode",
    "b64encode",
    "format_line",
    "parse_line",
    "zb64decode",
    "zb64encode",
]

INT_MAX = 2**31 - 1
INT_MIN = -(2**31)

_INT_PREFIX = re.compile(rb"[+-]?[0-9]+")
_FULL_INT = re.compile(rb"-?[0-9]+")
_FIELDS = 3  # TYPE STATUS ID
_ASCII_WS = b" \t\n\r\x0b\x0c"


class MessageFormatError(ValueError):
    """A line cannot be parsed, or a message cannot be written as one line."""


@dataclass(frozen=True, slots=True)
class DriverMessage:
    """One driver line.

    Attributes:
        action: The message type token (``DEPLOY``, ``LOG``, ``INIT`` ...).
        status: ``SUCCESS``/``FAILURE`` in replies, the severity letter in ``LOG``
            lines, ``""`` in core requests (``"-"`` for the monitoring dialects).
        oid: Object or request id.
        payload: The rest of the line (decoded text when the family encodes it).
        timestamp: The timestamp field of the monitoring dialects, else ``None``.
    """

    action: str
    status: str
    oid: int
    payload: str = ""
    timestamp: int | None = None

    @property
    def success(self) -> bool:
        """Whether the STATUS is ``SUCCESS`` (the core's string compare)."""
        return self.status == "SUCCESS"


def _clamp(value: int) -> int:
    return max(INT_MIN, min(INT_MAX, value))


def _read_int(token: bytes) -> tuple[int | None, bytes]:
    """``istream >> int`` on one token: (value or None, unread tail of the token)."""
    match = _INT_PREFIX.match(token)
    if match is None:
        return None, token
    return _clamp(int(match.group())), token[match.end() :]


def parse_line(line: bytes, *, has_timestamp: bool = False) -> DriverMessage:
    """Parse one line (without its ``\\n``) the way the core's ``parse_from`` does.

    Args:
        line: Raw bytes of the line.
        has_timestamp: The family carries a TIMESTAMP field after the id.

    Returns:
        The message; the payload is the raw (not decoded) remainder.

    Raises:
        MessageFormatError: The line is empty or holds nothing after the type
            token (the core then treats the whole line as ``UNDEFINED``).
    """
    if not has_timestamp:
        fast = line.split(None, 3)
        if len(fast) >= _FIELDS and _FULL_INT.fullmatch(fast[2]):
            return DriverMessage(
                action=fast[0].decode("utf-8", "replace"),
                status=fast[1].decode("utf-8", "replace"),
                oid=_clamp(int(fast[2])),
                payload=fast[3].decode("utf-8", "replace") if len(fast) > _FIELDS else "",
            )
    stripped = line.lstrip(_ASCII_WS)
    if not stripped:
        raise MessageFormatError("empty line")
    fields = stripped.split(None, 1)
    action = fields[0]
    if len(fields) == 1 and len(stripped) == len(action):
        # istream hit EOF right after the type token: !is.good() -> UNDEFINED.
        raise MessageFormatError("no fields after the message type")
    rest = fields[1] if len(fields) > 1 else b""
    status = "-"
    oid = -1
    timestamp: int | None = 0 if has_timestamp else None
    payload = b""
    if rest:
        parts = rest.split(None, 1)
        status = parts[0].decode("utf-8", "replace")
        rest = parts[1] if len(parts) > 1 else b""
        if rest:
            parts = rest.split(None, 1)
            value, tail = _read_int(parts[0])
            after = parts[1] if len(parts) > 1 else b""
            if value is None:
                # Failed extraction: id 0, the payload starts at the bad token.
                oid = 0
                payload = rest
            elif tail:
                oid = value
                payload = tail + rest[len(parts[0]) :]
            else:
                oid = value
                payload = after
                if has_timestamp and payload:
                    parts = payload.split(None, 1)
                    ts, ts_tail = _read_int(parts[0])
                    if ts is not None and not ts_tail:
                        timestamp = ts
                        payload = parts[1] if len(parts) > 1 else b""
    return DriverMessage(
        action=action.decode("utf-8", "replace"),
        status=status,
        oid=oid,
        payload=payload.decode("utf-8", "replace"),
        timestamp=timestamp,
    )


def format_line(msg: DriverMessage) -> bytes:
    """Render a message exactly as ``Message::write_to`` does, ``\\n`` included.

    The payload is written as given (encode it first when the family requires it).
    A single trailing ``\\n`` in the payload is allowed: the core's AUTHENTICATE and
    AUTHORIZE payloads end with one, so those requests are followed by a blank line.

    Raises:
        MessageFormatError: The payload holds a line break elsewhere.
    """
    payload = msg.payload
    body = payload[:-1] if payload.endswith("\n") else payload
    if "\n" in body:
        raise MessageFormatError("a driver message must fit on one line")
    head = f"{msg.action} {msg.status} {msg.oid} "
    if msg.timestamp is not None:
        head += f"{msg.timestamp} "
    return (head + payload + "\n").encode("utf-8")


def b64encode(text: str | bytes) -> str:
    """Standard padded base64 without line breaks (``strict_encode64``)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str) -> str:
    """Lenient base64 decode to text: stray characters are ignored, as in the core.

    Undecodable input yields ``""`` rather than an exception.
    """
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def zb64encode(text: str | bytes) -> str:
    """base64 of the zlib-format deflate of ``text`` (the monitoring dialects)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def zb64decode(text: str) -> str:
    """Inverse of :func:`zb64encode`.

    Raises:
        MessageFormatError: The payload is not valid zlib+base64.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=False)
        return zlib.decompress(raw).decode("utf-8", "replace")
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise MessageFormatError(f"bad zlib+base64 payload: {exc}") from exc
