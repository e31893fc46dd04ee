"""The NIC seam for VMs (mirrors ``VirtualNetworkPool::nic_attribute`` and
``VirtualNetwork::nic_attribute``/``free_addr``).

``acquire_nic`` resolves the NIC's network (NETWORK_ID, or NETWORK owned by the VM
owner / NETWORK_UNAME / NETWORK_UID), takes a lease for the VM (the given IP, IP6 or
MAC, else the next free address of the first range that has one), charges the NETWORK quota and
stages the network in the caller's ``Unit``; it returns the NIC attributes oned fills
(IP/MAC/IP6_*, AR_ID, BRIDGE, BRIDGE_TYPE, VN_MAD, PHYDEV, VLAN_ID, NETWORK,
NETWORK_ID, CLUSTER_ID, TARGET, SECURITY_GROUPS and the INHERIT_VNET_ATTR values).
``release_nic`` gives the lease back exactly once. Both must run while the caller
holds ``nic_locks`` for those networks; if the unit's commit fails, call
``rollback()`` on the returned ``LeaseChanges``. A NIC with ``NETWORK_MODE=auto`` and
no network is returned unchanged (the scheduler picks its network later).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from oned.errors import InternalError
from oned.managers.ipam import leases, quota
from oned.objects.address_range import OWNER_VM, owner_of
from oned.objects.vnet import LeaseChanges
from oned.pools.base import Locks

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vnet import VirtualNetwork
    from oned.pools.base import Unit

__all__ = ["acquire_nic", "network_of", "nic_locks", "release_nic"]


def network_of(core: Core, nic: dict[str, str], uid: int) -> VirtualNetwork | None:
    """The network a NIC names (raises ``InternalError`` with oned's texts).

    Returns None for a NIC without NETWORK/NETWORK_ID (auto mode or no network).
    """
    net_id = nic.get("NETWORK_ID", "").strip()
    if net_id:
        vn = core.vnets.get(int(net_id)) if net_id.lstrip("-").isdigit() else None
        if vn is None:
            raise InternalError(f"Virtual network with ID: {net_id} does not exist")
        return vn
    name = nic.get("NETWORK", "")
    if not name:
        return None
    owner = uid
    if nic.get("NETWORK_UID", "").strip().lstrip("-").isdigit():
        owner = int(nic["NETWORK_UID"].strip())
    elif nic.get("NETWORK_UNAME"):
        user = core.users.by_name(nic["NETWORK_UNAME"])
        if user is None:
            raise InternalError(f'User "{nic["NETWORK_UNAME"]}" does not exist')
        owner = user.oid
    for vn in core.vnets.objects():
        if vn.name == name and vn.uid == owner:
            return vn
    raise InternalError(
        f"User {owner} does not own a network with name: {name} . Set NETWORK_UNAME or "
        "NETWORK_UID of owner in NIC."
    )


def nic_locks(core: Core, nics: list[dict[str, str]], uid: int) -> Locks:
    """The locks of every network ``nics`` name (take them around acquire/release)."""
    ids = set()
    for nic in nics:
        try:
            vn = network_of(core, nic, uid)
        except InternalError:
            continue
        if vn is not None:
            ids.add(vn.oid)
    return Locks(*((core.vnets, i) for i in sorted(ids)))


async def acquire_nic(
    core: Core,
    unit: Unit,
    nic: dict[str, str],
    vm_id: int,
    uid: int,
    gid: int,
    nic_id: int = 0,
    charge_quota: bool = True,
) -> tuple[dict[str, str], LeaseChanges]:
    """Fill ``nic`` with a lease of its network for VM ``vm_id`` (staged in ``unit``)."""
    changes = LeaseChanges()
    out = dict(nic)
    vn = network_of(core, out, uid)
    if vn is None:
        return out, changes
    out["NIC_ID"] = out.get("NIC_ID") or str(nic_id)
    out["NETWORK"] = vn.name
    out["NETWORK_ID"] = str(vn.oid)
    out["BRIDGE"] = vn.bridge
    for key, value in (
        ("VN_MAD", vn.vn_mad),
        ("PHYDEV", vn.phydev),
        ("VLAN_ID", vn.vlan_id),
        ("OUTER_VLAN_ID", vn.outer_vlan_id),
        ("BRIDGE_TYPE", vn.bridge_type),
    ):
        if value:
            out[key] = value
    if vn.parent != -1:
        out["PARENT_NETWORK_ID"] = str(vn.parent)
    if not out.get("TARGET"):
        out["TARGET"] = f"one-{vm_id}-{out['NIC_ID']}"
    out["CLUSTER_ID"] = ",".join(str(c) for c in sorted(vn.clusters))
    ip, ip6, mac = out.get("IP", ""), out.get("IP6", ""), out.get("MAC", "")
    if sum(1 for v in (ip, ip6, mac) if v) > 1:
        raise InternalError(f"Cannot get IP/MAC lease from virtual network {vn.oid}.")
    try:
        # As oned, every range is tried in order (a NIC's AR_ID is an output).
        got = await leases.take(
            core, vn, changes, owner_of(OWNER_VM, vm_id), ip=ip, ip6=ip6, mac=mac
        )
    except leases.LeaseError:
        got = None
    if got is None:
        changes.rollback()
        raise InternalError(f"Cannot get IP/MAC lease from virtual network {vn.oid}.")
    ar, index = got
    out.update(ar.address(index))
    out["AR_ID"] = str(ar.ar_id)
    inherit = core.attr_list("INHERIT_VNET_ATTR")
    for key in ("VN_MAD", "BRIDGE", "PHYDEV", "VLAN_ID"):
        if ar.attrs.get(key):
            out[key] = ar.attrs[key]
    for name in inherit:
        value = ar.attrs.get(name, "")
        if value and not out.get(name):
            out[name] = value
    for name in inherit:
        vector = vn.template.get_vector(name)
        if vector is not None:
            for key, value in vector.items():
                if value and not out.get(key):
                    out[key] = value
        else:
            value = vn.template.get(name) or ""
            if value and not out.get(name):
                out[name] = value
    sgs = {int(p) for p in out.get("SECURITY_GROUPS", "").split(",") if p.strip().isdigit()}
    sgs.update(vn.security_groups())
    out["SECURITY_GROUPS"] = ",".join(str(s) for s in sorted(sgs))
    if charge_quota:
        problem = quota.stage_add(core, unit, uid, gid, {vn.oid: 1}, changes)
        if problem:
            changes.rollback()
            raise InternalError(problem)
    vn.updated.add(vm_id)
    changes.on_rollback.append(lambda: vn.updated.discard(vm_id))
    core.vnets.stage_leases(unit, vn, changes)
    return out, changes


async def release_nic(
    core: Core,
    unit: Unit,
    nic: dict[str, str],
    vm_id: int,
    uid: int,
    gid: int,
    charge_quota: bool = True,
) -> LeaseChanges:
    """Give back the lease VM ``vm_id`` holds for ``nic`` (staged in ``unit``)."""
    changes = LeaseChanges()
    raw = nic.get("NETWORK_ID", "").strip()
    vn = core.vnets.get(int(raw)) if raw.lstrip("-").isdigit() else None
    if vn is None:
        return changes
    raw_ar = nic.get("AR_ID", "").strip()
    ar_id = int(raw_ar) if raw_ar.isdigit() else None
    owner = owner_of(OWNER_VM, vm_id)
    ar = vn.ar(ar_id) if ar_id is not None else None
    if ar is not None and ar.shared:
        freed = await leases.free(
            core, vn, changes, owner, ip=nic.get("IP", ""), ip6=nic.get("IP6", ""), ar_id=ar_id
        )
    else:
        freed = await leases.free(core, vn, changes, owner, mac=nic.get("MAC", ""), ar_id=ar_id)
    lists = [ids for ids in (vn.updated, vn.updating, vn.error_vms, vn.outdated) if vm_id in ids]
    for ids in lists:
        ids.discard(vm_id)
    changes.on_rollback.extend(partial(ids.add, vm_id) for ids in lists)
    core.vnets.stage_leases(unit, vn, changes)
    if freed and charge_quota:
        quota.stage_del(core, unit, uid, gid, {vn.oid: 1}, changes)
    return changes
