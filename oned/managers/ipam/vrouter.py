"""The NIC seam for virtual routers (mirrors ``VirtualNetwork::vrouter_nic_attribute``
and ``VirtualRouter::release_network_leases``).

A router NIC names its network (NETWORK_ID/NETWORK, as a VM NIC does); only a
``FLOATING_IP=YES`` NIC takes a lease, owned by the router, and counts in the owner's
NETWORK quota (``Quotas::VIRTUALROUTER``). The network lists the router in VROUTERS.
Callers hold ``nic_locks`` for the networks and roll the changes back if their unit
fails, as with ``acquire_nic``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import AuthorizationError, InternalError
from oned.managers.ipam import leases, quota
from oned.managers.ipam.nic import network_of
from oned.objects.address_range import OWNER_VROUTER, owner_of
from oned.objects.vnet import LeaseChanges
from oned.objects.vrouter import is_floating

if TYPE_CHECKING:
    from oned.core import Core
    from oned.pools.base import Unit


async def acquire_router_nic(
    core: Core, unit: Unit, nic: dict[str, str], nic_id: int, uid: int, gid: int, vrid: int
) -> tuple[dict[str, str], LeaseChanges]:
    changes = LeaseChanges()
    out = dict(nic)
    if out.get("NETWORK_MODE", "").strip().upper() == "AUTO":
        raise InternalError("Virtual Router is incompatible with auto mode")
    out["NIC_ID"] = str(nic_id)
    vn = network_of(core, out, uid)
    if vn is None:
        return out, changes
    out["NETWORK"] = vn.name
    out["NETWORK_ID"] = str(vn.oid)
    if is_floating(out):
        ip, ip6, mac = out.get("IP", ""), out.get("IP6", ""), out.get("MAC", "")
        got = None
        if sum(1 for v in (ip, ip6, mac) if v) <= 1:
            try:
                got = await leases.take(
                    core, vn, changes, owner_of(OWNER_VROUTER, vrid), ip=ip, ip6=ip6, mac=mac
                )
            except leases.LeaseError:
                got = None
        if got is None:
            changes.rollback()
            raise InternalError(f"Cannot get IP/MAC lease from virtual network {vn.oid}.")
        ar, index = got
        out.update(ar.address(index))
        out["AR_ID"] = str(ar.ar_id)
        problem = quota.stage_add(core, unit, uid, gid, {vn.oid: 1}, changes)
        if problem:  # oned checks the VIRTUALROUTER quota first: AUTHORIZATION
            changes.rollback()
            raise AuthorizationError(problem)
    if vrid not in vn.vrouters:
        vn.vrouters.add(vrid)
        changes.on_rollback.append(lambda: vn.vrouters.discard(vrid))
    core.vnets.stage_leases(unit, vn, changes)
    return out, changes


async def release_router_nic(
    core: Core, unit: Unit, nic: dict[str, str], vrid: int, uid: int, gid: int
) -> LeaseChanges:
    changes = LeaseChanges()
    raw = nic.get("NETWORK_ID", "").strip()
    vn = core.vnets.get(int(raw)) if raw.lstrip("-").isdigit() else None
    if vn is None:
        return changes
    if is_floating(nic):
        raw_ar = nic.get("AR_ID", "").strip()
        ar_id = int(raw_ar) if raw_ar.isdigit() else None
        freed = await leases.free(
            core,
            vn,
            changes,
            owner_of(OWNER_VROUTER, vrid),
            mac=nic.get("MAC", ""),
            ip=nic.get("IP", "") if not nic.get("MAC") else "",
            ar_id=ar_id,
        )
        if freed:
            quota.stage_del(core, unit, uid, gid, {vn.oid: 1}, changes)
    if vrid in vn.vrouters:
        vn.vrouters.discard(vrid)
        changes.on_rollback.append(lambda: vn.vrouters.add(vrid))
    core.vnets.stage_leases(unit, vn, changes)
    return changes
