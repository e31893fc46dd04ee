"""``VirtualNetworkPool::allocate`` and ``VirtualNetwork::insert``: a new network's
name, driver attributes (VN_MAD, PHYDEV, BRIDGE, BRIDGE_TYPE, VLAN ids) and defaults,
inserted in LOCK_CREATE with its cluster membership, then VNET_CREATE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.api import shared
from oned.api.cluster import stage_cluster_side
from oned.errors import InternalError
from oned.managers.ipam import lifecycle
from oned.managers.ipam.lifecycle import VNetError
from oned.objects.base import Permissions
from oned.objects.vnet import VirtualNetwork
from oned.pools.base import Locks

if TYPE_CHECKING:
    from oned.api.context import Call
    from oned.core import Core
    from oned.template import Template


def _yes(value: str | None) -> bool:
    return (value or "").strip().upper() == "YES"


def _vlan(vn: VirtualNetwork, id_name: str, auto_name: str) -> tuple[str, bool]:
    """``parse_vlan_id``: a numeric id wins; else the AUTOMATIC_* flag (erased)."""
    raw = (vn.template.get(id_name) or "").strip()
    try:
        value = str(int(raw))
    except ValueError:
        value = ""
    if value:
        vn.template.set(id_name, value)
        vn.template.erase(auto_name)
        return value, False
    auto = _yes(vn.template.get(auto_name))
    vn.template.erase(auto_name)
    return "", auto


def _check_driver(vn: VirtualNetwork) -> None:
    """``parse_phydev_vlans``: the attributes each driver needs."""
    mad = vn.vn_mad
    if mad not in ("dummy", "802.1Q", "vxlan", "ovswitch_vxlan", "bridge", "ovswitch", "fw"):
        return
    if mad in ("802.1Q", "vxlan") and not vn.phydev:
        raise VNetError(f"PHYDEV is mandatory for driver {mad}")
    if mad == "dummy" and not vn.bridge:
        raise VNetError(f"BRIDGE is mandatory for driver {mad}")
    if mad in ("802.1Q", "vxlan") and not vn.vlan_id_automatic and not vn.vlan_id:
        raise VNetError(f"VLAN_ID (or AUTOMATIC_VLAN_ID) is mandatory for driver {mad}")
    if mad == "ovswitch_vxlan" and not vn.outer_vlan_id_automatic and not vn.outer_vlan_id:
        raise VNetError(f"OUTER_VLAN_ID (or AUTOMATIC) is mandatory for driver {mad}")


def build(core: Core, vn: VirtualNetwork) -> None:
    """``VirtualNetwork::insert``: name, driver attributes and defaults (raises)."""
    tmpl = vn.template
    tmpl.erase("TEMPLATE_ID")
    name = tmpl.get("NAME") or ""
    tmpl.erase("NAME")
    prefix = tmpl.get("TEMPLATE_NAME") or ""
    tmpl.erase("TEMPLATE_NAME")
    if not name and not prefix:
        raise VNetError("No NAME in template for Virtual Network.")
    name = name or f"{prefix}-{vn.oid}"
    problem = shared.validate_name(name)
    if problem:
        raise VNetError(problem)
    vn.name = name
    vn.vn_mad = tmpl.get("VN_MAD") or ""
    tmpl.erase("VN_MAD")
    if not vn.vn_mad:
        raise VNetError("No VN_MAD in template for Virtual Network.")
    tmpl.add("VN_MAD", vn.vn_mad)
    vn.phydev = tmpl.get("PHYDEV") or ""
    tmpl.erase("PHYDEV")
    tmpl.add("PHYDEV", vn.phydev)
    vn.bridge = tmpl.get("BRIDGE") or ""
    tmpl.erase("BRIDGE")
    vn.vlan_id, vn.vlan_id_automatic = _vlan(vn, "VLAN_ID", "AUTOMATIC_VLAN_ID")
    vn.outer_vlan_id, vn.outer_vlan_id_automatic = _vlan(
        vn, "OUTER_VLAN_ID", "AUTOMATIC_OUTER_VLAN_ID"
    )
    _check_driver(vn)
    requested = tmpl.get("BRIDGE_TYPE") or ""
    tmpl.erase("BRIDGE_TYPE")
    vn.bridge_type = lifecycle.parse_bridge_type(core, vn.vn_mad, requested)
    tmpl.add("BRIDGE_TYPE", vn.bridge_type)
    if not vn.bridge and vn.bridge_type != "none":
        vn.bridge = f"onebr.{vn.vlan_id}" if vn.vlan_id else f"onebr{vn.oid}"
    tmpl.add("BRIDGE", vn.bridge)
    raw = tmpl.get("SECURITY_GROUPS") or ""
    tmpl.erase("SECURITY_GROUPS")
    ids = {0}
    for part in raw.split(","):
        if part.strip().lstrip("-").isdigit():
            ids.add(int(part.strip()))
    tmpl.add("SECURITY_GROUPS", ",".join(str(i) for i in sorted(ids)) if raw else "0")


async def create(
    core: Core,
    call: Call,
    tmpl: Template,
    cluster_ids: set[int],
    parent: int = -1,
    template_id: int = -1,
    owner: tuple[int, int, str, str] | None = None,
) -> int:
    """``VirtualNetworkPool::allocate``: insert in LOCK_CREATE, join the clusters, then
    VNET_CREATE. ``owner`` is (uid, gid, uname, gname), the caller by default."""
    caller = call.caller
    uid, gid, uname, gname = owner or (caller.uid, caller.gid, caller.uname, caller.gname)
    name = tmpl.get("NAME") or ""
    if name:
        from oned.api.vnet import VNET

        clash = shared.name_clash(core, VNET, name, uid)
        if clash is not None:
            raise InternalError(f"NAME is already taken by NET {clash.oid}.")
    vlan_lock = core.vnets.lock(-1)
    await vlan_lock.acquire()
    try:
        async with Locks(*((core.clusters, c) for c in cluster_ids)):
            unit = core.unit()
            oid = unit.allocate(core.vnets)
            vn = VirtualNetwork(
                oid=oid,
                name="",
                uid=uid,
                gid=gid,
                uname=uname,
                gname=gname,
                perms=Permissions.for_new_object(
                    uid, gid, caller.umask, core.config.enable_other_permissions
                ),
                clusters=set(cluster_ids),
                parent=parent,
                template_id=template_id,
                template=tmpl,
            )
            try:
                build(core, vn)
                lifecycle.assign_vlans(core, vn)
            except VNetError as exc:
                unit.rollback()
                raise InternalError(str(exc)) from exc
            unit.add(core.vnets, vn)
            from oned.api.vnet import VNETS

            for cid in sorted(cluster_ids):
                cluster = core.clusters.get(cid)
                if cluster is not None:
                    stage_cluster_side(core, unit, VNETS, cluster.copy(), oid, True)
            await unit.commit(f"allocate virtual network {oid}")
    finally:
        vlan_lock.release()
    if core.ipam_manager is not None:
        core.ipam_manager.trigger_vnet_create(vn)
    return oid
