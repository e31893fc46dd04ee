"""Address arithmetic of address ranges (mirrors ``AddressRange::mac_to_i``,
``ip_to_i``, ``ip6_to_i``, ``prefix6_to_i``, the ``*_to_s`` functions and the EUI-64
interface ids of SLAAC addresses).

MACs are 48-bit ints whose low 32 bits wrap when an index is added (oned keeps them
as two unsigned ints); IPv4 addresses parse as oned parses them (digits and dots
only, four parts up to 255); IPv6 goes through the C library like ``inet_pton``.
"""

from __future__ import annotations

import re
import socket

ID_MASK = 0xFFFFFFFF
_MAC_RE = re.compile(r"^([0-9a-fA-F]{1,2}:){5}[0-9a-fA-F]{1,2}$")


def mac_to_i(text: str) -> int | None:
    """48-bit MAC, or None when malformed (``ff:ff:ff:ff:ff:ff`` is refused too)."""
    if not text:
        return 0
    if not _MAC_RE.match(text):
        return None
    value = 0
    for octet in text.split(":"):
        value = (value << 8) | int(octet, 16)
    return None if value == 0xFFFFFFFFFFFF else value


def mac_to_s(mac: int) -> str:
    return ":".join(f"{(mac >> s) & 0xFF:02x}" for s in (40, 32, 24, 16, 8, 0))


def mac_plus(mac: int, index: int) -> int:
    """``mac[0] + index`` with the low 32 bits wrapping as unsigned int."""
    return (mac & 0xFFFF00000000) | ((mac + index) & ID_MASK)


def ip_to_i(text: str) -> int | None:
    if not text or text.strip("0123456789.") != "" or text.count(".") != 3:
        return None
    value = 0
    for part in text.split("."):
        if not part or len(part) > 10 or int(part) > 255:
            return None
        value = (value << 8) | int(part)
    return value


def ip_to_s(ip: int) -> str:
    ip &= ID_MASK
    return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"


def ip6_to_i(text: str) -> int | None:
    if not text:
        return None
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        return None


def prefix6_to_i(text: str) -> int | None:
    """The upper 64 bits of an IPv6 prefix (0 when empty), None when malformed."""
    if not text:
        return 0
    value = ip6_to_i(text)
    return None if value is None else value >> 64


def ip6_to_s(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET6, (value & ((1 << 128) - 1)).to_bytes(16, "big"))


def slaac(prefix: int, mac: int) -> str:
    """``ip6_to_s(prefix, mac)``: the EUI-64 interface id of ``mac`` under ``prefix``."""
    hi, lo = mac >> 32, mac & ID_MASK
    eui1 = ((((hi ^ 0x0200) << 16) & ID_MASK) + ((lo & 0xFF000000) >> 16) + 0xFF) & ID_MASK
    eui0 = (0xFE000000 + (lo & 0x00FFFFFF)) & ID_MASK
    return ip6_to_s((prefix << 64) | (eui1 << 32) | eui0)


def static6_plus(ip6: int, index: int) -> int:
    """``ip6[0] + index`` wrapping in its 32 bits, as ``set_ip6_static`` does."""
    return (ip6 & ~ID_MASK) | ((ip6 + index) & ID_MASK)


def escape(text: str) -> str:
    """Escape for an XML-RPC ``<string>`` (as the codec does)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ulong(raw: str | None) -> int | None:
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or int(raw) >= 1 << 64:
        return None
    return int(raw)
