"""The network state machine on driver replies and the attributes oned derives on
create and update (mirrors ``IPAMManager::_vnet_create``/``_vnet_delete``,
``VirtualNetworkPool::delete_success``, ``VirtualNetwork::post_update_template``,
``parse_bridge_type`` and ``VirtualNetworkPool::set_vlan_id``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.log import logger
from oned.objects import vnet as vs
from oned.objects.address_range import OWNER_NET, AddressRange, ARError, owner_of
from oned.objects.vnet import LeaseChanges
from oned.pools.base import Locks

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vnet import VirtualNetwork
    from oned.pools.base import Pool, Unit

log = logger("IPM")

BRIDGE_TYPES = ("linux", "openvswitch", "openvswitch_dpdk", "none")
VLAN_DRIVERS = ("802.1Q", "ovswitch", "ovswitch_vxlan")
UPDATE_ATTRIBUTES = (
    "PHYDEV",
    "MTU",
    "VLAN_ID",
    "QINQ_TYPE",
    "CVLANS",
    "VLAN_TAGGED_ID",
    "OUTER_VLAN_ID",
    "INBOUND_AVG_BW",
    "INBOUND_PEAK_BW",
    "INBOUND_PEAK_KB",
    "OUTBOUND_AVG_BW",
    "OUTBOUND_PEAK_BW",
    "OUTBOUND_PEAK_KB",
    "SPOOFCHK",
    "TRUST",
)


class VNetError(ValueError):
    """A network definition oned refuses (its text)."""


def mac_prefix(core: Core) -> int:
    """``MAC_PREFIX`` ("02:00") as 16 bits; a malformed prefix gives 00:01."""
    raw = (core.config.get("MAC_PREFIX") or "02:00").strip().strip('"')
    parts = raw.split(":")
    try:
        if len(parts) == 2:
            return ((int(parts[0], 16) & 0xFF) << 8) | (int(parts[1], 16) & 0xFF)
    except ValueError:
        pass
    return 1


def parse_bridge_type(core: Core, vn_mad: str, requested: str) -> str:
    """The BRIDGE_TYPE a network of ``vn_mad`` gets (``VN_MAD_CONF``)."""
    conf = next((v for v in core.config.vectors("VN_MAD_CONF") if v.get("NAME") == vn_mad), None)
    if conf is None:
        raise VNetError(f'VN_MAD named "{vn_mad}" is not defined in oned.conf')
    bad = VNetError(
        f"Attribute bridge type in VN_MAD_CONF for {vn_mad} is missing or has wrong "
        "value in oned.conf"
    )
    raw = conf.get("BRIDGE_TYPE")
    if raw is None:
        raise bad
    valid = [t.strip() for t in raw.split(",")]
    if not valid or any(t not in BRIDGE_TYPES for t in valid):
        raise bad
    requested = requested.strip()
    if not requested:
        return valid[0]
    if requested in valid:
        return requested
    raise VNetError(
        f'Attribute BRIDGE_TYPE has wrong value "{requested}" for VN_MAD_CONF {vn_mad} in oned.conf'
    )


def _erase(vn: VirtualNetwork, name: str) -> str:
    value = vn.template.get(name) or ""
    vn.template.erase(name)
    return value


def post_update(core: Core, vn: VirtualNetwork) -> None:
    """``post_update_template``: driver attributes back from the template (raises)."""
    vn.template.erase("TEMPLATE_ID")
    new_mad = _erase(vn, "VN_MAD")
    if not new_mad:
        vn.template.add("VN_MAD", vn.vn_mad)
        raise VNetError("No VN_MAD in template for Virtual Network.")
    new_type = _erase(vn, "BRIDGE_TYPE")
    if new_mad != vn.vn_mad and new_type == vn.bridge_type:
        new_type = ""
    try:
        vn.bridge_type = parse_bridge_type(core, new_mad, new_type)
    except VNetError:
        vn.template.add("VN_MAD", vn.vn_mad)
        vn.template.add("BRIDGE_TYPE", vn.bridge_type)
        raise
    vn.vn_mad = new_mad
    vn.template.add("VN_MAD", vn.vn_mad)
    vn.template.add("BRIDGE_TYPE", vn.bridge_type)
    vn.phydev = _erase(vn, "PHYDEV")
    vn.template.add("PHYDEV", vn.phydev)
    vn.template.erase("AUTOMATIC_VLAN_ID")
    vn.template.erase("AUTOMATIC_OUTER_VLAN_ID")
    if not vn.vlan_id_automatic:
        vn.vlan_id = _erase(vn, "VLAN_ID")
        vn.template.add("VLAN_ID", vn.vlan_id)
    else:
        vn.template.erase("VLAN_ID")
    if not vn.outer_vlan_id_automatic:
        vn.outer_vlan_id = _erase(vn, "OUTER_VLAN_ID")
        vn.template.add("OUTER_VLAN_ID", vn.outer_vlan_id)
    else:
        vn.template.erase("OUTER_VLAN_ID")
    bridge = _erase(vn, "BRIDGE")
    if bridge:
        vn.bridge = bridge
    vn.template.add("BRIDGE", vn.bridge)
    if vn.template.get_vector("VNET_UPDATE") is not None:
        vn.outdated |= vn.updated | vn.updating | vn.error_vms
        vn.updated.clear()
        vn.updating.clear()
        vn.error_vms.clear()
        if vn.state == vs.UPDATE_FAILURE:
            vn.state = vs.READY


def updated_attributes(vn: VirtualNetwork, new: dict[str, str], removed: bool) -> dict[str, str]:
    """``set_updated_attributes``: old values of the NIC attributes that change."""
    out: dict[str, str] = {}
    for name, value in new.items():
        old = vn.template.get(name)
        if name in UPDATE_ATTRIBUTES and (old is None or old != value):
            out[name] = old or ""
    if removed:
        for name in UPDATE_ATTRIBUTES:
            old = vn.template.get(name)
            if old and name not in new:
                out[name] = old
    return out


async def new_ar(
    core: Core, vn: VirtualNetwork, attrs: dict[str, str], reservation: bool = False
) -> AddressRange:
    """``AddressRangePool::from_vattr``: the next AR_ID, validated; an IPAM_MAD range
    is registered with the driver first (its answer replaces the request)."""
    ar_id = vn.next_ar
    attrs = {k.upper(): v for k, v in attrs.items()}
    ipam = attrs.get("IPAM_MAD", "")
    if ipam and ipam != "internal" and not reservation:
        attrs = await register_range(core, attrs)
    ar = AddressRange.from_request(attrs, ar_id, mac_prefix(core), reservation)
    vn.next_ar = ar_id + 1
    return ar


async def register_range(core: Core, attrs: dict[str, str]) -> dict[str, str]:
    """REGISTER_ADDRESS_RANGE: the driver's AR replaces the requested one."""
    from oned.template import TemplateSyntaxError, cdata, parse_str_or_xml

    manager = core.ipam_manager
    if manager is None:
        raise ARError("IPAM driver is not available")
    ar_xml = "<AR>" + "".join(f"<{k}>{cdata(v)}</{k}>" for k, v in sorted(attrs.items())) + "</AR>"
    ok, info = await manager.address_request("REGISTER_ADDRESS_RANGE", ar_xml)
    if not ok:
        raise ARError(info or "Error registering address range")
    try:
        answer = parse_str_or_xml(info).get_vector("AR")
    except TemplateSyntaxError as exc:
        raise ARError(f"Error parsing IPAM driver response: {exc}") from exc
    if answer is None:
        raise ARError("IPAM driver response does not include an AR")
    merged = dict(answer)
    merged.setdefault("IPAM_MAD", attrs.get("IPAM_MAD", ""))
    return merged


# -- VLAN ids --------------------------------------------------------------------------


def _reserved(raw: str) -> set[int]:
    out: set[int] = set()
    for part in raw.replace(" ", "").split(","):
        for sep in ("..", ":", "-"):
            if sep in part:
                lo, _, hi = part.partition(sep)
                if lo.isdigit() and hi.isdigit():
                    out.update(range(int(lo), int(hi) + 1))
                break
        else:
            if part.isdigit():
                out.add(int(part))
    return out


def assign_vlans(core: Core, vn: VirtualNetwork) -> None:
    """``set_vlan_id``: automatic VLAN_ID (802.1Q pool) and VXLAN ids (raises)."""
    if vn.vn_mad in VLAN_DRIVERS and vn.vlan_id_automatic and not vn.vlan_id:
        vn.vlan_id = str(_free_vlan(core, vn.oid))
    if vn.vn_mad == "ovswitch_vxlan" and vn.outer_vlan_id_automatic and not vn.outer_vlan_id:
        vn.outer_vlan_id = str(_vxlan_start(core) + vn.oid)
    if vn.vn_mad == "vxlan" and vn.vlan_id_automatic and not vn.vlan_id:
        vn.vlan_id = str(_vxlan_start(core) + vn.oid)


def _vxlan_start(core: Core) -> int:
    conf = (core.config.vectors("VXLAN_IDS") or [{}])[-1]
    start = conf.get("START", "2").strip()
    return int(start) if start.isdigit() else 2


def _free_vlan(core: Core, vnid: int) -> int:
    conf = (core.config.vectors("VLAN_IDS") or [{}])[-1]
    raw = conf.get("START", "2").strip()
    start = int(raw) if raw.isdigit() else 2
    taken = _reserved(conf.get("RESERVED", ""))
    for other in core.vnets.objects():
        if other.vlan_id_automatic and other.vn_mad in VLAN_DRIVERS and other.vlan_id.isdigit():
            taken.add(int(other.vlan_id))
    span = max(4095 - start, 1)
    hint = start + (vnid % span)
    for vlan in [*range(hint, 4096), *range(start, hint)]:
        if vlan not in taken:
            return int(vlan)
    raise VNetError("Cannot automatically assign VLAN_ID to network.")


# -- driver replies --------------------------------------------------------------------


async def create_reply(core: Core, oid: int, success: bool, info: str) -> None:
    """``_vnet_create``: READY with the driver's info merged and the ARs built, or ERROR."""
    from oned.template import TemplateSyntaxError, parse_str_or_xml

    async with core.vnets.lock(oid):
        vn = core.vnets.get(oid)
        if vn is None:
            log.error("Received VNET_CREATE response for non-existing VNET {oid}", oid=oid)
            return
        if vn.state != vs.LOCK_CREATE:
            log.error(
                "Received VNET_CREATE but VNET {oid} is in wrong state {state}",
                oid=oid,
                state=vs.state_name(vn.state),
            )
            return
        vn = vn.copy()
        now = core.clock.seconds()
        if not success:
            vn.state = vs.ERROR
            vn.set_error(info, now)
            log.error("VNET {oid}, vnet_create failed: {info}", oid=oid, info=info)
        else:
            error = ""
            if info:
                try:
                    if info.strip() != "-":
                        vn.template.merge(parse_str_or_xml(info))
                    post_update(core, vn)
                except (TemplateSyntaxError, VNetError) as exc:
                    error = str(exc)
            if error:
                vn.state = vs.ERROR
                vn.set_error(error, now)
            else:
                vn.state = vs.READY
                vn.clear_error()
                requests = vn.template.vectors("AR")
                vn.template.erase("AR")
                ipam = vn.template.get("IPAM_MAD") or ""
                for request in requests:
                    attrs = dict(request)
                    if ipam and not attrs.get("IPAM_MAD"):
                        attrs["IPAM_MAD"] = ipam
                    try:
                        vn.ars.append(await new_ar(core, vn, attrs))
                    except ARError as exc:
                        vn.state = vs.ERROR
                        vn.set_error(str(exc), now)
                        log.error(
                            "Error creating address range for VNET {oid}: {e}", oid=oid, e=exc
                        )
        vn.prev_state = vn.state
        unit = core.unit()
        unit.save(core.vnets, vn)
        await unit.commit(f"VNET_CREATE reply of network {oid}")


async def delete_reply(core: Core, oid: int, success: bool, info: str) -> None:
    """``_vnet_delete``: dropped on success, ERROR otherwise."""
    vn = core.vnets.get(oid)
    if vn is None:
        log.error("Received VNET_DELETE response for non-existing VNET {oid}", oid=oid)
        return
    if vn.state != vs.LOCK_DELETE:
        log.error(
            "Received VNET_DELETE but VNET {oid} is in wrong state {state}",
            oid=oid,
            state=vs.state_name(vn.state),
        )
        return
    if success:
        await delete_success(core, oid)
        return
    async with core.vnets.lock(oid):
        vn = core.vnets.get(oid)
        if vn is None or vn.state != vs.LOCK_DELETE:
            return
        vn = vn.copy()
        vn.state = vn.prev_state = vs.ERROR
        vn.set_error(info, core.clock.seconds())
        unit = core.unit()
        unit.save(core.vnets, vn)
        await unit.commit(f"VNET_DELETE failure of network {oid}")
    log.error("VNET {oid}, vnet_delete failed: {info}", oid=oid, info=info)


async def delete_success(core: Core, oid: int) -> None:
    """``VirtualNetworkPool::delete_success``: drop it, leave its clusters, give the
    parent's addresses back (and the owner's NETWORK quota)."""
    vn = core.vnets.get(oid)
    if vn is None:
        return
    targets: list[tuple[Pool[Any], int]] = [(core.vnets, oid)]
    targets += [(core.clusters, c) for c in vn.clusters]
    if vn.parent != -1:
        targets.append((core.vnets, vn.parent))
    async with Locks(*targets):
        vn = core.vnets.get(oid)
        if vn is None:
            return
        unit = core.unit()
        changes = stage_drop(core, unit, vn)
        try:
            await unit.commit(f"delete network {oid}")
        except Exception:
            changes.rollback()
            raise


def stage_drop(core: Core, unit: Unit, vn: VirtualNetwork) -> LeaseChanges:
    """Stage the drop of ``vn`` with its cluster, ACL, parent and quota side effects
    (the parent's freed leases are returned, to roll back if the commit fails)."""
    from oned.api.cluster import stage_cluster_side
    from oned.api.shared import drop_resource_rules
    from oned.api.vnet import VNETS
    from oned.managers.ipam import quota

    unit.drop(core.vnets, vn.oid)
    for cid in sorted(vn.clusters):
        cluster = core.clusters.get(cid)
        if cluster is not None:
            stage_cluster_side(core, unit, VNETS, cluster.copy(), vn.oid, False)
    drop_resource_rules(core, unit, "NET", vn.oid)
    changes = LeaseChanges()
    if vn.parent == -1:
        return changes
    parent = core.vnets.get(vn.parent)
    if parent is None:
        log.error(
            "VN {oid} unable to free resources from parent network id={pid}, it doesn't exists",
            oid=vn.oid,
            pid=vn.parent,
        )
        return changes
    owner = owner_of(OWNER_NET, vn.oid)
    freed = 0
    for ar in parent.ars:
        for index in ar.indexes_of(owner):
            if changes.free(ar, index, owner):
                freed += 1
    unit.save(core.vnets, parent)
    if freed:
        quota.stage_del(core, unit, vn.uid, vn.gid, {vn.parent: freed}, changes)
    return changes
