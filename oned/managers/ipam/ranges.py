"""Address-range requests of a network: add, remove, update, free and reserve
(mirrors ``VirtualNetworkAPI::add_ar/rm_ar/update_ar/reserve/free_ar`` with
``AddressRangePool`` and ``AddressRange::update_attributes``).

Each runs under the network's lock (and the parent's, for reservations) and stages
everything, including the NETWORK quota of a reservation's owner, in one unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import ActionError, AuthorizationError, InternalError, NoExistsError
from oned.managers.ipam import leases, lifecycle, quota
from oned.objects import vnet as vs
from oned.objects.address_range import (
    OWNER_NET,
    AddressRange,
    ARError,
    owner_of,
    prefix6_to_i,
)
from oned.objects.vnet import LeaseChanges
from oned.pools.base import Locks

if TYPE_CHECKING:
    from oned.api.context import Call
    from oned.core import Core
    from oned.objects.vnet import VirtualNetwork
    from oned.template import Template

INTERNAL_ATTRS = (
    "USED_LEASES",
    "LEASES",
    "MAC_END",
    "IP_END",
    "IP6_END",
    "IP6_ULA",
    "IP6_ULA_END",
    "IP6_GLOBAL",
    "IP6_GLOBAL_END",
)


async def add_ar(core: Core, call: Call, vn: VirtualNetwork, tmpl: Template) -> None:
    """``VirtualNetwork::add_ar``: the first AR of ``tmpl`` joins ``vn`` (a copy)."""
    request = tmpl.get_vector("AR")
    if request is None:
        raise InternalError("Wrong AR definition. AR vector attribute is missing.")
    attrs = dict(request)
    ipam = vn.template.get("IPAM_MAD") or ""
    if not attrs.get("IPAM_MAD") and ipam:
        attrs["IPAM_MAD"] = ipam
    try:
        vn.ars.append(await lifecycle.new_ar(core, vn, attrs))
    except ARError as exc:
        raise InternalError(str(exc)) from exc


async def rm_ar(core: Core, vn: VirtualNetwork, ar_id: int, force: bool) -> None:
    """``rm_ar_helper``: drop the range (and free the parent's addresses of a
    reservation, giving the owner's quota back). ``vn`` is the committed network."""
    if vn.state not in (vs.READY, vs.UPDATE_FAILURE):
        raise ActionError(
            "Could not remove Adress Range, Virtual Network is in wrong state: "
            f"{vs.state_name(vn.state)}"
        )
    ar = vn.ar(ar_id)
    if ar is None:
        raise InternalError("Address Range does not exist")
    if not force and ar.used() > 0:
        raise InternalError("Address Range has leases in use")
    if ar.ipam_mad() and core.ipam_manager is not None:
        ok, msg = await core.ipam_manager.address_request("UNREGISTER_ADDRESS_RANGE", ar.to_xml())
        if not ok and not force:
            raise InternalError(msg)
    copy = vn.copy()
    copy.ars = [a for a in copy.ars if a.ar_id != ar_id]
    copy.prev_state = copy.state
    unit = core.unit()
    unit.save(core.vnets, copy)
    changes = LeaseChanges()
    parent_ar = ar.parent_ar()
    parent = core.vnets.get(vn.parent) if vn.parent != -1 else None
    if parent is not None and parent_ar != -1:
        par = parent.ar(parent_ar)
        if par is not None:
            owner = owner_of(OWNER_NET, vn.oid)
            start = par.index_of_mac(ar.attrs.get("MAC", ""))
            freed = 0
            if start is not None:
                for index in range(start, min(start + ar.size, par.size)):
                    if changes.free(par, index, owner):
                        freed += 1
            unit.save(core.vnets, parent)
            if freed:
                quota.stage_del(core, unit, vn.uid, vn.gid, {parent.oid: freed}, changes)
    try:
        await unit.commit(f"remove address range {ar_id} of network {vn.oid}")
    except Exception:
        changes.rollback()
        raise


def update_ar(core: Core, call: Call, vn: VirtualNetwork, tmpl: Template) -> None:
    """``update_attributes`` of the AR named by AR_ID (``vn`` is a copy)."""
    requests = tmpl.vectors("AR")
    if not requests:
        raise InternalError("Wrong AR definition. AR vector attribute is missing.")
    vup = {k.upper(): v for k, v in requests[0].items()}
    raw = vup.get("AR_ID", "").strip()
    if not raw.isdigit():
        raise InternalError("AR/AR_ID attribute is missing.")
    index = next((i for i, a in enumerate(vn.ars) if a.ar_id == int(raw)), None)
    if index is None:
        raise InternalError(f"Address Range with ID {raw} was not found.")
    old = vn.ars[index]
    names = set(core.attr_list("VNET_RESTRICTED_ATTR"))
    restricted = {n[3:] for n in names if n.startswith("AR/")}
    if not call.is_admin:
        for key, value in sorted(vup.items()):
            if (key in names or f"AR/{key}" in names) and old.attrs.get(key) != value:
                raise InternalError(f"AR includes a restricted attribute {key}")
        for key in restricted:
            vup.pop(key, None)
    for key in ("TYPE", "SHARED", "MAC"):
        vup[key] = old.attrs.get(key, "")
    if old.ipam_mad() and not old.shared:
        vup["IPAM_MAD"] = old.attrs.get("IPAM_MAD", "")
    vup.pop("IP", None)
    if old.is_ipv4():
        vup["IP"] = old.attrs.get("IP", "")
    vup.pop("IP6", None)
    if old.is_ipv6_static():
        vup["IP6"] = old.attrs.get("IP6", "")
    vup["AR_ID"] = str(old.ar_id)
    for key in (*INTERNAL_ATTRS, "ALLOCATED", "PARENT_NETWORK_AR_ID"):
        vup.pop(key, None)
    if old.is_reservation():
        vup["PARENT_NETWORK_AR_ID"] = old.attrs.get("PARENT_NETWORK_AR_ID", "")
    if not call.is_admin:
        for key in restricted:
            if key in old.attrs:
                vup[key] = old.attrs[key]
    if old.is_ipv6_static():
        if not vup.get("PREFIX_LENGTH", "").strip().lstrip("-").isdigit():
            vup["PREFIX_LENGTH"] = old.attrs.get("PREFIX_LENGTH", "")
    else:
        vup.pop("PREFIX_LENGTH", None)
    if old.is_ipv6():
        if prefix6_to_i(vup.get("GLOBAL_PREFIX", "")) is None:
            raise InternalError("Wrong format for IP6 global address prefix")
        if prefix6_to_i(vup.get("ULA_PREFIX", "")) is None:
            raise InternalError("Wrong format for IP6 unique local address prefix")
        vup.setdefault("GLOBAL_PREFIX", "")
        vup.setdefault("ULA_PREFIX", "")
    else:
        vup.pop("GLOBAL_PREFIX", None)
        vup.pop("ULA_PREFIX", None)
    raw_size = vup.get("SIZE", "").strip()
    if not raw_size:
        new_size = old.size
    elif raw_size.isdigit():
        new_size = int(raw_size)
        if old.is_reservation() and new_size != old.size:
            raise InternalError("The SIZE of a reservation cannot be changed.")
        if any(i >= new_size for i in old.allocated):
            raise InternalError(
                "New SIZE cannot be applied. There are used leases that would fall "
                "outside the range."
            )
    else:
        raise InternalError("Unable to read the SIZE attribute, it must be number >= 0")
    vup["SIZE"] = str(new_size)
    for key in ("PORT_START", "PORT_SIZE"):
        if key in vup and not vup[key].strip().isdigit():
            del vup[key]
    new = old.copy()
    new.attrs = {k: v for k, v in vup.items() if k != "NEXT_INDEX"}
    new.size = new_size
    new.global6 = prefix6_to_i(vup.get("GLOBAL_PREFIX", "")) or 0
    new.ula6 = prefix6_to_i(vup.get("ULA_PREFIX", "")) or 0
    if new.next >= new.size:
        new.next = 0
    new._reset_index()
    vn.ars[index] = new
    inherited = set(core.attr_list("INHERIT_VNET_ATTR"))
    changed = {
        k: old.attrs.get(k, "") for k, v in vup.items() if k in inherited and old.attrs.get(k) != v
    }
    changed.update({k: v for k, v in old.attrs.items() if k in inherited and k not in vup})
    if changed:
        vn.template.set("VNET_UPDATE", changed)
        ids = {(o & 0xFFFFFFFF) for o in old.allocated.values() if o & 0x1000000000}
        vn.outdated |= {i for i in ids if i != 0xFFFFFFFF}
        vn.updated -= ids
        vn.updating -= ids
        vn.error_vms -= ids
        if vn.state == vs.UPDATE_FAILURE:
            vn.state = vs.READY


async def reserve(core: Core, call: Call, oid: int, tmpl: Template) -> int:
    """``VirtualNetworkAPI::reserve``: SIZE addresses of ``oid`` into a new or existing
    reservation network; returns its id."""
    from oned.api.vnet import VNET, create
    from oned.objects.base import Op

    size_raw = (tmpl.get("SIZE") or "").strip()
    try:
        size = int(size_raw)
    except ValueError:
        size = 0
    if size <= 0:
        raise ActionError("Reservation SIZE must be a greater than 0")
    rid_raw = tmpl.get("NETWORK_ID")
    on_existing = rid_raw is not None and rid_raw.strip().lstrip("-").isdigit()
    rid = int(rid_raw.strip()) if on_existing and rid_raw is not None else -1
    target = None
    if on_existing:
        if rid < 0:
            raise ActionError("NETWORK_ID must be equal or greater than 0")
        if rid == oid:
            raise ActionError("Cannot add a reservation from the same network")
        target = core.vnets.get(rid)
        if target is None:
            raise NoExistsError("", rid, "virtual network")
        if target.parent == -1:
            raise ActionError("Cannot add reservations to a non-reservation VNET")
        if target.parent != oid:
            raise ActionError(
                f"New reservations for virtual network {rid} have to be from network "
                f"{target.parent}"
            )
    name = tmpl.get("NAME") or ""
    if not name and not on_existing:
        raise ActionError("NAME for reservation has to be set")
    ar_raw = tmpl.get("AR_ID")
    with_ar = ar_raw is not None and ar_raw.strip().lstrip("-").isdigit()
    ar_id = int(ar_raw.strip()) if with_ar and ar_raw is not None else None
    if ar_id is not None and ar_id < 0:
        raise ActionError("AR_ID must be equal or greater than 0")
    ip, ip6, mac = tmpl.get("IP") or "", tmpl.get("IP6") or "", tmpl.get("MAC") or ""
    if ar_id is None and (ip or mac or ip6):
        raise ActionError("AR_ID must be specified for IP/MAC based reservations")
    parent = core.vnets.get(oid)
    if parent is None:
        raise NoExistsError("", oid, "virtual network")
    if parent.parent != -1:
        raise ActionError("Cannot reserve addresses from a reserved VNET")
    requests = [(Op.USE, VNET.auth(core, parent))]
    if target is not None:
        requests.append((Op.MANAGE, VNET.auth(core, target)))
    core.acl.check_all(call.caller, requests)
    if target is None:
        base = parent.template.copy()
        base.set("NAME", name)
        rid = await create(core, call, base, set(parent.clusters), parent=oid)
    reservation = core.vnets.get(rid)
    if reservation is None:
        raise NoExistsError("", rid, "virtual network")
    failure: Exception | None = None
    async with Locks((core.vnets, oid), (core.vnets, rid)):
        try:
            await _reserve_locked(core, oid, rid, size, ar_id, ip, ip6, mac)
        except (ActionError, AuthorizationError) as exc:
            failure = exc
    if failure is not None:
        if target is None:
            await lifecycle.delete_success(core, rid)
        raise failure
    return rid


async def _reserve_locked(
    core: Core, oid: int, rid: int, size: int, ar_id: int | None, ip: str, ip6: str, mac: str
) -> None:
    parent = core.vnets.get(oid)
    reservation = core.vnets.get(rid)
    if parent is None or reservation is None:
        raise ActionError("Virtual network does not exist")
    unit = core.unit()
    changes = LeaseChanges()
    problem = quota.stage_add(core, unit, reservation.uid, reservation.gid, {oid: size}, changes)
    if problem:
        raise AuthorizationError(problem)
    owner = owner_of(OWNER_NET, rid)
    got = leases.reserve_from(parent, changes, owner, size, ar_id, ip, ip6, mac)
    if got is None:
        changes.rollback()
        if ar_id is None:
            raise ActionError("Not enough free addresses in an address range")
        raise ActionError(
            f"Not enough free addresses in address range {ar_id}, or it does not exist"
        )
    par, start = got
    attrs = leases.reservation_attrs(par, start, size)
    res = reservation.copy()
    try:
        new = AddressRange.from_request(attrs, res.next_ar, lifecycle.mac_prefix(core), True)
    except ARError as exc:
        changes.rollback()
        raise ActionError(str(exc)) from exc
    new.attrs["PARENT_NETWORK_AR_ID"] = str(par.ar_id)
    res.next_ar += 1
    res.ars.append(new)
    parent.prev_state = parent.state
    unit.save(core.vnets, parent)
    unit.save(core.vnets, res)
    try:
        await unit.commit(f"reserve {size} addresses of network {oid} in {rid}")
    except Exception:
        changes.rollback()
        raise
