"""XML-RPC wire codec (what xmlrpc-c does for oned).

Requests are parsed with expat through defusedxml: a DOCTYPE, entity declarations and
external references are refused, so entity-expansion bombs cost nothing. Integers are
range-checked while parsing (``<i4>``/``<int>`` 32-bit, ``<i8>`` 64-bit) and remember
their tag, so a handler can tell an ``<i8>`` from an ``<i4>``. Responses are written by
hand: ``<i4>`` for ints, ``<i8>`` where asked, never ``<nil/>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xmlrpc.client import Fault, Unmarshaller

from defusedxml.xmlrpc import DefusedExpatParser as XmlRpcParser

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class I8(int):
    """An integer that arrived as (or must be sent as) ``<i8>``."""


class CallParseError(ValueError):
    """The body is not a proper XML-RPC call."""


class _Unmarshaller(Unmarshaller):
    """Unmarshaller that range-checks integers and keeps ``<i8>`` distinct."""

    dispatch: dict[str, Callable[[Any, str], None]] = dict(Unmarshaller.dispatch)

    def end_int32(self, data: str) -> None:
        value = int(data.strip())
        if not INT32_MIN <= value <= INT32_MAX:
            raise CallParseError(f"Value '{data.strip()}' is out of range for a 32-bit integer")
        self.append(value)
        self._value = False

    def end_int64(self, data: str) -> None:
        value = int(data.strip())
        if not INT64_MIN <= value <= INT64_MAX:
            raise CallParseError(f"Value '{data.strip()}' is out of range for a 64-bit integer")
        self.append(I8(value))
        self._value = False

    dispatch["i4"] = end_int32
    dispatch["int"] = end_int32
    dispatch["i1"] = end_int32
    dispatch["i2"] = end_int32
    dispatch["i8"] = end_int64
    dispatch["biginteger"] = end_int64


def loads_call(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """Parse a ``methodCall``: ``(method name, params)``."""
    target = _Unmarshaller()
    parser = XmlRpcParser(target, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(body)
        parser.close()
        params = target.close()
        method = target.getmethodname()
    except CallParseError:
        raise
    except Exception as exc:  # expat, defusedxml and unmarshaller errors alike
        raise CallParseError(str(exc) or type(exc).__name__) from exc
    if not method:
        raise CallParseError("no methodName element")
    return method, tuple(params)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Escaped(str):
    """A string value already escaped for ``<string>`` (big listings built in slices)."""


class WireParts(list[bytes]):
    """A ``<string>`` value already escaped and UTF-8 encoded, in pieces (pool listings
    joined from cached bodies): the response carries the pieces as they are, so a
    listing of tens of megabytes is never copied into one string."""

    def preview(self, limit: int) -> str:
        """The first ``limit`` characters, as a log line shows them."""
        head = b"".join(self[:4])[: limit * 6].decode("utf-8", "replace")
        return head.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")[:limit]

    @property
    def size(self) -> int:
        return sum(len(piece) for piece in self)


#: Stands for a ``WireParts`` value while the rest of a response is rendered as text;
#: NUL bytes never reach a rendered value (XML cannot carry them).
_WIRE = "\x00\x01wire\x01\x00"


def _value(value: Any, depth: int = 0, wires: list[WireParts] | None = None) -> str:
    if depth > 64:
        raise ValueError("value nested too deeply")
    if isinstance(value, WireParts):
        if wires is None:
            return "<value><string>" + b"".join(value).decode() + "</string></value>"
        wires.append(value)
        return "<value><string>" + _WIRE + "</string></value>"
    if value is True or value is False:
        return f"<value><boolean>{1 if value else 0}</boolean></value>"
    if isinstance(value, I8):
        return f"<value><i8>{int(value)}</i8></value>"
    if isinstance(value, int):
        if INT32_MIN <= value <= INT32_MAX:
            return f"<value><i4>{value}</i4></value>"
        return f"<value><i8>{value}</i8></value>"
    if isinstance(value, Escaped):
        return "<value><string>" + value + "</string></value>"
    if isinstance(value, str):
        return f"<value><string>{_escape(value)}</string></value>"
    if isinstance(value, float):
        return f"<value><double>{value!r}</double></value>"
    if isinstance(value, (list, tuple)):
        inner = "".join(_value(v, depth + 1, wires) for v in value)
        return f"<value><array><data>{inner}</data></array></value>"
    if isinstance(value, dict):
        members = "".join(
            f"<member><name>{_escape(str(k))}</name>{_value(v, depth + 1, wires)}</member>"
            for k, v in value.items()
        )
        return f"<value><struct>{members}</struct></value>"
    if isinstance(value, Fault):
        return _value({"faultCode": value.faultCode, "faultString": value.faultString}, depth)
    raise TypeError(f"cannot marshal {type(value).__name__}")


_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<params>\r\n<param>'
_TAIL = "</param>\r\n</params>\r\n</methodResponse>\r\n"


def dumps_response_parts(value: Any) -> list[bytes]:
    """A ``methodResponse`` carrying one value, as pieces to write in order."""
    wires: list[WireParts] = []
    text = _HEAD + _value(value, 0, wires) + _TAIL
    if not wires:
        return [text.encode("utf-8", "xmlcharrefreplace")]
    out: list[bytes] = []
    for n, piece in enumerate(text.split(_WIRE)):
        out.append(piece.encode("utf-8", "xmlcharrefreplace"))
        if n < len(wires):
            out.extend(wires[n])
    return out


def dumps_response(value: Any) -> bytes:
    """A ``methodResponse`` carrying one value."""
    return b"".join(dumps_response_parts(value))


def dumps_fault(code: int, message: str) -> bytes:
    body = _value({"faultCode": code, "faultString": message})
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<fault>\r\n'
        f"{body}\r\n</fault>\r\n</methodResponse>\r\n"
    ).encode("utf-8", "xmlcharrefreplace")
