"""Lease operations on a network's ranges (mirrors ``AddressRangePool::allocate_*``,
``hold_by_*``, ``free_addr*`` and ``reserve_addr*``).

They change the committed network's ranges in place through a ``LeaseChanges`` (the
caller holds the network's lock, stages the network in a unit and rolls the changes
back if the commit fails). Ranges with an IPAM_MAD ask the driver first
(GET_ADDRESS, ALLOCATE_ADDRESS, FREE_ADDRESS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.objects.address_range import (
    HOLD_OWNER,
    AddressRange,
    ip_to_i,
)
from oned.template import cdata

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vnet import LeaseChanges, VirtualNetwork


class LeaseError(ValueError):
    """A lease that cannot be taken or given back."""


def _candidates(vn: VirtualNetwork, ar_id: int | None) -> list[AddressRange]:
    if ar_id is None:
        return list(vn.ars)
    ar = vn.ar(ar_id)
    return [] if ar is None else [ar]


def find_index(ar: AddressRange, ip: str, ip6: str, mac: str) -> int | None:
    if mac:
        return None if ar.shared else ar.index_of_mac(mac)
    if ip:
        return ar.index_of_ip(ip)
    if ip6:
        return ar.index_of_ip6(ip6)
    return None


async def _ipam(core: Core, ar: AddressRange, action: str, index: int, size: int = 1) -> None:
    """ALLOCATE_ADDRESS/FREE_ADDRESS of an IPAM range (raises on failure)."""
    manager = core.ipam_manager
    if not ar.ipam_mad() or manager is None:
        return
    addr = ar.address(index)
    address = (
        "<ADDRESS>"
        + "".join(f"<{k}>{cdata(addr[k])}</{k}>" for k in ("MAC", "IP", "IP6") if k in addr)
        + f"<SIZE>{size}</SIZE></ADDRESS>"
    )
    ok, info = await manager.address_request(action, ar.to_xml(), address)
    if not ok:
        raise LeaseError(info or f"Error in {action.lower()}")


async def take(
    core: Core,
    vn: VirtualNetwork,
    changes: LeaseChanges,
    owner: int,
    *,
    ip: str = "",
    ip6: str = "",
    mac: str = "",
    ar_id: int | None = None,
) -> tuple[AddressRange, int] | None:
    """Allocate one lease to ``owner``: the given address, else the next free one.

    Returns ``(ar, index)`` or None when no range can give it.
    """
    for ar in _candidates(vn, ar_id):
        if ip or ip6 or mac:
            index = find_index(ar, ip, ip6, mac)
            if index is None or not ar.is_free(index):
                continue
        else:
            if ar.shared:
                continue
            if ar.ipam_mad() and core.ipam_manager is not None:
                index = await _ipam_get(core, ar)
                if index is None:
                    continue
            else:
                before = ar.next
                found = ar.next_free()
                if found is None:
                    continue
                changes.note_next(ar, before)
                index = found
        await _ipam(core, ar, "ALLOCATE_ADDRESS", index)
        changes.allocate(ar, index, owner)
        return ar, index
    return None


async def _ipam_get(core: Core, ar: AddressRange) -> int | None:
    """GET_ADDRESS: the driver names a free IP of the range."""
    from oned.template import TemplateSyntaxError, parse_str_or_xml

    manager = core.ipam_manager
    assert manager is not None
    ok, info = await manager.address_request("GET_ADDRESS", ar.to_xml())
    if not ok:
        return None
    try:
        answer = parse_str_or_xml(info).get_vector("ADDRESS") or {}
    except TemplateSyntaxError:
        return None
    ip = ip_to_i(answer.get("IP", ""))
    if ip is None or ip < ar.ip or ip - ar.ip >= ar.size or not ar.is_free(ip - ar.ip):
        return None
    return ip - ar.ip


async def hold(
    core: Core, vn: VirtualNetwork, changes: LeaseChanges, lease: dict[str, str]
) -> None:
    """``hold_leases``: the address given by IP, IP6 or MAC (in AR_ID if given)."""
    ip, ip6, mac = lease.get("IP", ""), lease.get("IP6", ""), lease.get("MAC", "")
    given = sum(1 for v in (ip, ip6, mac) if v)
    if given == 0:
        raise LeaseError("Missing MAC, IP or IP6.")
    if given > 1:
        raise LeaseError("Only one attribute MAC, IP or IP6 can be set.")
    ar_id = _ar_id(lease)
    try:
        got = await take(core, vn, changes, HOLD_OWNER, ip=ip, ip6=ip6, mac=mac, ar_id=ar_id)
    except LeaseError:
        got = None
    if got is None:
        raise LeaseError("Address is not part of the address range or in use.")


async def release(
    core: Core, vn: VirtualNetwork, changes: LeaseChanges, lease: dict[str, str]
) -> None:
    """``free_leases``: free a held address (silently nothing when it is not held)."""
    ip, ip6, mac = lease.get("IP", ""), lease.get("IP6", ""), lease.get("MAC", "")
    given = sum(1 for v in (ip, ip6, mac) if v)
    if given == 0:
        raise LeaseError("Missing MAC, IP or IP6.")
    if given > 1:
        raise LeaseError("Only one attribute MAC, IP or IP6 can be set.")
    await free(core, vn, changes, HOLD_OWNER, ip=ip, ip6=ip6, mac=mac, ar_id=_ar_id(lease))


async def free(
    core: Core,
    vn: VirtualNetwork,
    changes: LeaseChanges,
    owner: int,
    *,
    ip: str = "",
    ip6: str = "",
    mac: str = "",
    ar_id: int | None = None,
) -> bool:
    """Free the lease ``owner`` has at the address; True when one was freed."""
    for ar in _candidates(vn, ar_id):
        index = find_index(ar, ip, ip6, mac)
        if index is None or ar.allocated.get(index) != owner:
            continue
        try:
            await _ipam(core, ar, "FREE_ADDRESS", index)
        except LeaseError:
            return False
        return changes.free(ar, index, owner)
    return False


def _ar_id(lease: dict[str, str]) -> int | None:
    raw = lease.get("AR_ID", "").strip()
    return int(raw) if raw.isdigit() else None


def reserve_from(
    vn: VirtualNetwork,
    changes: LeaseChanges,
    owner: int,
    size: int,
    ar_id: int | None,
    ip: str = "",
    ip6: str = "",
    mac: str = "",
) -> tuple[AddressRange, int] | None:
    """``reserve_addr*``: ``size`` contiguous free addresses for a reservation."""
    for ar in _candidates(vn, ar_id):
        if ar.shared:
            continue
        if ip or ip6 or mac:
            start = find_index(ar, ip, ip6, mac)
            if start is None or start + size > ar.size:
                continue
            if any(not ar.is_free(i) for i in range(start, start + size)):
                continue
        else:
            if size > ar.free_count():
                continue
            before = ar.next
            found = ar.free_run(size)
            if found is None:
                continue
            changes.note_next(ar, before)
            start = found
        for i in range(start, start + size):
            changes.allocate(ar, i, owner)
        return ar, start
    return None


def reservation_attrs(ar: AddressRange, start: int, size: int) -> dict[str, str]:
    """The AR of the reservation network: the parent's attributes from ``start``."""
    attrs = dict(ar.attrs)
    addr = ar.address(start)
    if "MAC" in addr:
        attrs["MAC"] = addr["MAC"]
    for key in ("EXTERNAL_PORT_RANGE", "INTERNAL_PORT_RANGE"):
        if key in addr:
            attrs[key] = addr[key]
    if ar.is_ipv4():
        attrs["IP"] = addr["IP"]
    if ar.is_ipv6_static():
        attrs["IP6"] = addr["IP6"]
    attrs["SIZE"] = str(size)
    attrs.pop("IPAM_MAD", None)
    return attrs
