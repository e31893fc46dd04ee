"""One address range of a virtual network (mirrors ``AddressRange.cc``,
``AddressRangeInternal.cc``).

An AR keeps its attributes as oned stores them (sorted keys, ``ALLOCATED`` as
``" index owner"`` pairs in index order, ``NEXT_INDEX``), and the leases as a dict
from index to packed owner (``type bits | id``). Leases are allocated next-fit from
NEXT_INDEX. A byte map of used indexes (ranges up to ``BITMAP_LIMIT`` addresses) makes
the next free index a C-speed ``find``; the ALLOCATED text and the LEASE elements are
cached per block of ``BLOCK`` indexes, so one lease change re-renders one block and
costs the same with 60,000 leases as with none.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from oned.objects.addresses import (
    ID_MASK,
    _ulong,
    escape,
    ip6_to_i,
    ip6_to_s,
    ip_to_i,
    ip_to_s,
    mac_plus,
    mac_to_i,
    mac_to_s,
    prefix6_to_i,
    slaac,
    static6_plus,
)
from oned.template import cdata

__all__ = [
    "BITMAP_LIMIT",
    "BLOCK",
    "HOLD_OWNER",
    "ID_MASK",
    "OWNER_NET",
    "OWNER_VM",
    "OWNER_VROUTER",
    "TYPES",
    "ARError",
    "AddressRange",
    "escape",
    "ip6_to_i",
    "ip6_to_s",
    "ip_to_i",
    "ip_to_s",
    "mac_plus",
    "mac_to_i",
    "mac_to_s",
    "owner_of",
    "prefix6_to_i",
    "slaac",
    "split_owner",
    "static6_plus",
]

#: ``PoolObjectSQL::ObjectType`` bits used as lease owners.
OWNER_VM = 0x0000001000000000
OWNER_NET = 0x0000004000000000
OWNER_VROUTER = 0x0004000000000000
HOLD_OWNER = OWNER_VM | ID_MASK

TYPES = ("ETHER", "IP4", "IP6", "IP6_STATIC", "IP4_6", "IP4_6_STATIC")
BLOCK = 64
BITMAP_LIMIT = 1 << 22


class ARError(ValueError):
    """An address range that cannot be built or changed (oned's text)."""


def owner_of(kind: int, oid: int) -> int:
    return kind | (oid & ID_MASK)


def split_owner(owner: int) -> tuple[str, int]:
    """("VM" | "VNET" | "VROUTER", signed id) of a packed owner."""
    raw = owner & ID_MASK
    oid = raw - (1 << 32) if raw & 0x80000000 else raw
    if owner & OWNER_VM:
        return "VM", oid
    if owner & OWNER_NET:
        return "VNET", oid
    return "VROUTER", oid


@dataclass
class AddressRange:
    """One ``AR`` of a network's ``AR_POOL``."""

    attrs: dict[str, str]
    ar_id: int = 0
    type: str = "IP4"
    size: int = 0
    mac: int = 0
    ip: int = 0
    ip6: int = 0
    global6: int = 0
    ula6: int = 0
    shared: bool = False
    next: int = 0
    allocated: dict[int, int] = field(default_factory=dict)
    has_allocated: bool = False
    _bitmap: bytearray | None = None
    _alloc_blocks: dict[int, str] = field(default_factory=dict)
    _lease_blocks: dict[int, str] = field(default_factory=dict)
    _block_count: dict[int, int] = field(default_factory=dict)
    _escaped_blocks: dict[int, str] = field(default_factory=dict)

    # -- kinds --------------------------------------------------------------------

    def is_ipv4(self) -> bool:
        return self.type in ("IP4", "IP4_6", "IP4_6_STATIC")

    def is_ipv6(self) -> bool:
        return self.type in ("IP6", "IP4_6")

    def is_ipv6_static(self) -> bool:
        return self.type in ("IP6_STATIC", "IP4_6_STATIC")

    def ipam_mad(self) -> str:
        mad = self.attrs.get("IPAM_MAD", "")
        return "" if mad == "internal" else mad

    def is_reservation(self) -> bool:
        return "PARENT_NETWORK_AR_ID" in self.attrs

    def parent_ar(self) -> int:
        try:
            return int(self.attrs.get("PARENT_NETWORK_AR_ID", "-1"))
        except ValueError:
            return -1

    # -- construction (from_attr / from_vattr_db) ---------------------------------

    @classmethod
    def from_request(
        cls, attrs: dict[str, str], ar_id: int, mac_prefix: int, reservation: bool = False
    ) -> AddressRange:
        """``AddressRange::from_attr``: validate a client AR (raises ``ARError``)."""
        attrs = {k.upper(): v for k, v in attrs.items()}
        kind = attrs.get("TYPE", "").upper()
        if kind not in TYPES:
            raise ARError("Unknown or missing address range TYPE.")
        attrs["TYPE"] = kind
        ar = cls(attrs=attrs, ar_id=ar_id, type=kind)
        ar.shared = attrs.get("SHARED", "").strip().upper() == "YES"
        attrs["SHARED"] = "YES" if ar.shared else "NO"
        if ar.shared:
            if kind not in ("IP4", "IP6_STATIC"):
                raise ARError("Shared ARs can be only of type IP4 or IP6_STATIC.")
            if attrs.get("IPAM_MAD", "") not in ("", "internal"):
                raise ARError("Shared ARs cannot use an external IPAM")
        ar._init_addresses()
        ar._init_mac(mac_prefix)
        size = _ulong(attrs.get("SIZE"))
        if size is None:
            raise ARError("Wrong SIZE for address range")
        ar.size = size
        attrs["NEXT_INDEX"] = "0"
        attrs["AR_ID"] = str(ar_id)
        attrs["SIZE"] = str(size)
        for key in ("ALLOCATED", "USED_LEASES", "LEASES", "PARENT_NETWORK_AR_ID", "PARENT_NETWORK"):
            attrs.pop(key, None)
        ar._reset_index()
        return ar

    def _init_addresses(self) -> None:
        attrs = self.attrs
        if self.is_ipv4():
            ip = ip_to_i(attrs.get("IP", ""))
            if ip is None:
                raise ARError("Wrong or empty IP attribute")
            self.ip = ip
        else:
            attrs.pop("IP", None)
        if self.is_ipv6():
            glob = prefix6_to_i(attrs.get("GLOBAL_PREFIX", ""))
            if glob is None:
                raise ARError("Wrong format for IP6 global address prefix")
            ula = prefix6_to_i(attrs.get("ULA_PREFIX", ""))
            if ula is None:
                raise ARError("Wrong format for IP6 unique local address prefix")
            self.global6, self.ula6 = glob, ula
        else:
            attrs.pop("GLOBAL_PREFIX", None)
            attrs.pop("ULA_PREFIX", None)
        if self.is_ipv6_static():
            ip6 = ip6_to_i(attrs.get("IP6", ""))
            if ip6 is None:
                raise ARError("Wrong or empty IP6 attribute")
            self.ip6 = ip6
            try:
                plen = int(attrs.get("PREFIX_LENGTH", "").strip())
            except ValueError:
                raise ARError("Wrong or empty PREFIX_LENGTH") from None
            if not attrs.get("SIZE"):
                size = (1 << 64) - 1 if plen <= 64 else 1 << max(128 - plen, 0)
                mask = size if plen <= 64 else size - 1
                first = ip6 & ((1 << 64) - 1) & mask
                attrs["SIZE"] = str(size - first)
        else:
            attrs.pop("IP6", None)

    def _init_mac(self, mac_prefix: int) -> None:
        if self.shared:
            self.mac = 0
            self.attrs["MAC"] = mac_to_s(0)
            return
        raw = self.attrs.get("MAC", "")
        if not raw:
            low = self.ip if self.is_ipv4() else random.getrandbits(32)
            self.mac = (mac_prefix << 32) | low
        else:
            mac = mac_to_i(raw)
            if mac is None:
                raise ARError(f"Wrong format for MAC attribute: {raw}")
            self.mac = mac
        self.attrs["MAC"] = mac_to_s(self.mac)

    @classmethod
    def from_stored(cls, attrs: dict[str, str]) -> AddressRange:
        """``from_vattr_db``: an AR read back from a stored VNET body."""
        attrs = dict(attrs)
        allocated_s = attrs.pop("ALLOCATED", None)
        ar = cls(attrs=attrs, ar_id=int(attrs.get("AR_ID", "0") or 0))
        ar.type = attrs.get("TYPE", "IP4")
        ar.shared = attrs.get("SHARED", "NO").upper() == "YES"
        ar.size = _ulong(attrs.get("SIZE")) or 0
        ar.next = _ulong(attrs.get("NEXT_INDEX")) or 0
        if ar.next >= ar.size:
            ar.next = 0
        ar.mac = mac_to_i(attrs.get("MAC", "")) or 0
        if ar.is_ipv4():
            ar.ip = ip_to_i(attrs.get("IP", "")) or 0
        if ar.is_ipv6_static():
            ar.ip6 = ip6_to_i(attrs.get("IP6", "")) or 0
        ar.global6 = prefix6_to_i(attrs.get("GLOBAL_PREFIX", "")) or 0
        ar.ula6 = prefix6_to_i(attrs.get("ULA_PREFIX", "")) or 0
        if allocated_s is not None:
            ar.has_allocated = True
            words = allocated_s.split()
            for i in range(0, len(words) - 1, 2):
                ar.allocated[int(words[i])] = int(words[i + 1])
        ar._reset_index()
        return ar

    def _reset_index(self) -> None:
        self._alloc_blocks.clear()
        self._lease_blocks.clear()
        self._escaped_blocks.clear()
        self._block_count.clear()
        for index in self.allocated:
            block = index // BLOCK
            self._block_count[block] = self._block_count.get(block, 0) + 1
        self._bitmap = None

    def copy(self) -> AddressRange:
        """An independent copy (attribute changes: ``update_ar``); leases are copied."""
        twin = AddressRange.from_stored(self.stored_attrs())
        twin.allocated = dict(self.allocated)
        twin.has_allocated = self.has_allocated
        twin._reset_index()
        return twin

    # -- leases ---------------------------------------------------------------------

    def used(self) -> int:
        return len(self.allocated)

    def free_count(self) -> int:
        return max(self.size - len(self.allocated), 0)

    def is_free(self, index: int) -> bool:
        return index not in self.allocated

    def _touch(self, index: int) -> None:
        block = index // BLOCK
        self._alloc_blocks.pop(block, None)
        self._lease_blocks.pop(block, None)
        self._escaped_blocks.pop(block, None)
        self.has_allocated = True

    def set_allocated(self, index: int, owner: int) -> None:
        if index not in self.allocated:
            block = index // BLOCK
            self._block_count[block] = self._block_count.get(block, 0) + 1
        self.allocated[index] = owner
        if self._bitmap is not None and index < self.size:
            self._bitmap[index] = 1
        self._touch(index)

    def free_index(self, index: int, owner: int | None = None) -> bool:
        """Release ``index`` (only when held by ``owner``, if given)."""
        current = self.allocated.get(index)
        if current is None or (owner is not None and current != owner):
            return False
        del self.allocated[index]
        block = index // BLOCK
        left = self._block_count.get(block, 1) - 1
        if left:
            self._block_count[block] = left
        else:
            self._block_count.pop(block, None)
        if self._bitmap is not None and index < self.size:
            self._bitmap[index] = 0
        self._touch(index)
        return True

    def _index_map(self) -> bytearray | None:
        """The byte map of used indexes, built on first use (ranges up to BITMAP_LIMIT)."""
        if self._bitmap is None and 0 < self.size <= BITMAP_LIMIT:
            bitmap = bytearray(self.size)
            for index in self.allocated:
                if index < self.size:
                    bitmap[index] = 1
            self._bitmap = bitmap
        return self._bitmap

    def next_free(self) -> int | None:
        """``get_single_addr``: next-fit from NEXT_INDEX (advances it)."""
        if self.size == 0 or len(self.allocated) >= self.size:
            return None
        bitmap = self._index_map()
        if bitmap is not None:
            found = bitmap.find(0, self.next)
            if found < 0:
                found = bitmap.find(0, 0, self.next)
            if found < 0:
                return None
        else:
            found = self.next
            while found in self.allocated:
                found = (found + 1) % self.size
        self.next = (found + 1) % self.size
        return found

    def free_run(self, rsize: int) -> int | None:
        """``get_range_addr``: first run of ``rsize`` free indexes from NEXT_INDEX."""
        if rsize <= 0 or rsize > self.size:
            return None
        bitmap = self._index_map()
        if bitmap is not None:
            zeros = bytes(rsize)
            found = bitmap.find(zeros, self.next)
            if found < 0:
                found = bitmap.find(zeros, 0, min(self.next + rsize - 1, self.size))
            if found < 0:
                return None
        else:
            found = -1
            for start in range(self.size - rsize + 1):
                if all(i not in self.allocated for i in range(start, start + rsize)):
                    found = start
                    break
            if found < 0:
                return None
        self.next = (found + rsize) % self.size
        return found

    def index_of_mac(self, text: str) -> int | None:
        mac = mac_to_i(text)
        if mac is None or mac >> 32 != self.mac >> 32 or (mac & ID_MASK) < (self.mac & ID_MASK):
            return None
        index = (mac & ID_MASK) - (self.mac & ID_MASK)
        return index if index < self.size else None

    def index_of_ip(self, text: str) -> int | None:
        if not self.is_ipv4():
            return None
        ip = ip_to_i(text)
        if ip is None or ip < self.ip:
            return None
        index = ip - self.ip
        return index if index < self.size else None

    def index_of_ip6(self, text: str) -> int | None:
        if not self.is_ipv6_static():
            return None
        ip6 = ip6_to_i(text)
        if ip6 is None or ip6 >> 32 != self.ip6 >> 32 or (ip6 & ID_MASK) < (self.ip6 & ID_MASK):
            return None
        index = (ip6 & ID_MASK) - (self.ip6 & ID_MASK)
        return index if index < self.size else None

    def indexes_of(self, owner: int) -> list[int]:
        return [i for i, o in self.allocated.items() if o == owner]

    # -- what a lease looks like -------------------------------------------------------

    def address(self, index: int) -> dict[str, str]:
        """The address attributes of ``index`` (``set_mac``/``set_ip``/``set_ip6*``)."""
        out: dict[str, str] = {}
        mac = mac_plus(self.mac, index)
        if not self.shared:
            out["MAC"] = mac_to_s(mac)
        port_start = _ulong(self.attrs.get("PORT_START")) or 0
        port_size = _ulong(self.attrs.get("PORT_SIZE")) or 0
        if port_start and port_size:
            first = port_start + index * port_size + 1
            out["EXTERNAL_PORT_RANGE"] = f"{first}:{first + port_size - 1}"
            out["INTERNAL_PORT_RANGE"] = f"1-{port_size}/{first}"
        if self.is_ipv4():
            out["IP"] = ip_to_s(self.ip + index)
        if self.is_ipv6():
            out["IP6_LINK"] = slaac(0xFE80000000000000, mac)
            if self.ula6:
                out["IP6_ULA"] = slaac(self.ula6, mac)
            if self.global6:
                out["IP6_GLOBAL"] = slaac(self.global6, mac)
        if self.is_ipv6_static():
            out["IP6"] = ip6_to_s(static6_plus(self.ip6, index))
        return out

    def _lease_xml(self, index: int, owner: int) -> str:
        lease = self.address(index)
        kind, oid = split_owner(owner)
        lease[kind] = str(oid)
        inner = "".join(f"<{k}>{cdata(lease[k])}</{k}>" for k in sorted(lease))
        return f"<LEASE>{inner}</LEASE>"

    def _block_indexes(self, block: int) -> list[int]:
        lo, hi = block * BLOCK, (block + 1) * BLOCK
        if len(self.allocated) > BLOCK * 64:
            return [i for i in range(lo, hi) if i in self.allocated]
        return sorted(i for i in self.allocated if lo <= i < hi)

    def _blocks(self) -> list[int]:
        return sorted(self._block_count)

    def allocated_parts(self) -> list[str]:
        """``allocated_to_attr``: ``" index owner"`` pairs in index order, per block."""
        parts = []
        for block in self._blocks():
            text = self._alloc_blocks.get(block)
            if text is None:
                text = "".join(f" {i} {self.allocated[i]}" for i in self._block_indexes(block))
                self._alloc_blocks[block] = text
            parts.append(text)
        return parts

    def allocated_text(self) -> str:
        return "".join(self.allocated_parts())

    def leases_xml(self, visible: Iterable[int] | None = None) -> str:
        """``<LEASES>`` of the extended form; ``visible`` filters owners (None: all)."""
        if not self.allocated:
            return "<LEASES/>"
        if visible is not None:
            allowed = set(visible)
            inner = "".join(
                self._lease_xml(i, self.allocated[i])
                for i in sorted(self.allocated)
                if self.allocated[i] in allowed
            )
            return f"<LEASES>{inner}</LEASES>"
        return "<LEASES>" + "".join(self._lease_block(b) for b in self._blocks()) + "</LEASES>"

    # -- documents -------------------------------------------------------------------

    def stored_attrs(self) -> dict[str, str]:
        out = dict(self.attrs)
        out["NEXT_INDEX"] = str(self.next)
        return out

    def xml_parts(self) -> list[str]:
        """The stored form (``VNET_POOL`` and the database) as pieces: sorted, CDATA
        values, the cached ALLOCATED blocks inserted as they are (digits only)."""
        out = ["<AR>"]
        attrs = self.stored_attrs()
        keys = sorted([*attrs, "ALLOCATED"] if self.has_allocated else attrs)
        for key in keys:
            if key == "ALLOCATED":
                out.append("<ALLOCATED><![CDATA[")
                out.extend(self.allocated_parts())
                out.append("]]></ALLOCATED>")
            else:
                out.append(f"<{key}>{cdata(attrs[key])}</{key}>")
        out.append("</AR>")
        return out

    def to_xml(self) -> str:
        return "".join(self.xml_parts())

    def _lease_block(self, block: int) -> str:
        text = self._lease_blocks.get(block)
        if text is None:
            text = "".join(
                self._lease_xml(i, self.allocated[i]) for i in self._block_indexes(block)
            )
            self._lease_blocks[block] = text
        return text

    def escaped_extended(self) -> str:
        """``to_xml_extended()`` escaped for an XML-RPC ``<string>``, from cached
        escaped LEASE blocks (only changed blocks are escaped again)."""
        if not self.allocated:
            return escape(self.to_xml_extended())
        head = self.to_xml_extended(leases=False)[: -len("</AR>")]
        parts = [escape(head), "&lt;LEASES&gt;"]
        for block in self._blocks():
            text = self._escaped_blocks.get(block)
            if text is None:
                text = self._escaped_blocks[block] = escape(self._lease_block(block))
            parts.append(text)
        parts.append("&lt;/LEASES&gt;&lt;/AR&gt;")
        return "".join(parts)

    def to_xml_extended(self, visible: Iterable[int] | None = None, leases: bool = True) -> str:
        """The ``one.vn.info`` form: computed ends, USED_LEASES and LEASES (``leases``
        False: without the LEASES element)."""
        attrs = self.stored_attrs()
        out = ["<AR>"]
        out.extend(f"<{k}>{cdata(attrs[k])}</{k}>" for k in sorted(attrs))
        mac_end = 0 if self.shared else mac_plus(self.mac, self.size - 1)
        out.append(f"<MAC_END>{cdata(mac_to_s(mac_end))}</MAC_END>")
        if self.is_ipv4() and ip_to_i(attrs.get("IP", "")) is not None:
            out.append(f"<IP_END>{cdata(ip_to_s(self.ip + self.size - 1))}</IP_END>")
        if self.is_ipv6():
            for tag, prefix in (("IP6_ULA", self.ula6), ("IP6_GLOBAL", self.global6)):
                if prefix:
                    out.append(f"<{tag}>{cdata(slaac(prefix, self.mac))}</{tag}>")
                    out.append(f"<{tag}_END>{cdata(slaac(prefix, mac_end))}</{tag}_END>")
        if self.is_ipv6_static():
            last = self.ip6 + (((self.size - 1) >> 32) << 32)
            last = static6_plus(last, self.size - 1)
            out.append(f"<IP6_END>{cdata(ip6_to_s(last))}</IP6_END>")
        out.append(f"<USED_LEASES>{self.used()}</USED_LEASES>")
        if leases:
            out.append(self.leases_xml(visible))
        out.append("</AR>")
        return "".join(out)
