"""``one.vdc.*`` and ``one.vdcpool.info`` (mirrors ``VdcAPI`` and ``Vdc``'s resource
sets).

A VDC gives its groups ACL rules on its resources: for every (group, resource) pair
``@gid HOST/#id MANAGE #zone`` and so on, with the rights of oned.conf's
``DEFAULT_VDC_*_ACL`` settings (a cluster gives three rules: hosts, networks and
datastores by ``%cid``; ``ALL`` (-10) gives ``*``). Adding or removing a group or a
resource adds or removes exactly those rules, in the same transaction as the VDC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oned.api import shared
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.auth import acl
from oned.core import Core
from oned.errors import InternalError, no_exists
from oned.objects.base import Op
from oned.objects.vdc import ALL_RESOURCES, DEFAULT_VDC_ID, RESOURCE_SETS, Vdc
from oned.pools.base import Unit


def _drop_check(_core: Core, vdc: Vdc) -> str | None:
    return "System VDCs (ID < 100) cannot be deleted." if vdc.oid < 100 else None


VDC = Family[Vdc](
    type_name="VDC",
    word="VDC",
    pool_root="VDC_POOL",
    pool=lambda core: core.vdcs,
    auth=shared.system_auth("VDC"),
    name_scope="global",
    delete_op=Op.ADMIN,
    drop_check=_drop_check,
)

declare(VDC, "vdc", "info", "pool", "update", "rename")

#: Resource set -> (pool, word of its NO_EXISTS error, ACL type).
_RESOURCES: dict[str, tuple[Callable[[Core], Any], str, str]] = {
    "CLUSTER": (lambda core: core.clusters, "cluster", "CLUSTER"),
    "HOST": (lambda core: core.hosts, "host", "HOST"),
    "DATASTORE": (lambda core: core.datastores, "datastore", "DATASTORE"),
    "VNET": (lambda core: core.vnets, "virtual network", "NET"),
}
#: How ``PoolObjectSQL::type_to_str`` names each set in the VDC's error texts.
_TYPE_STR = {"CLUSTER": "CLUSTER", "HOST": "HOST", "DATASTORE": "DATASTORE", "VNET": "NET"}


def _rights(core: Core, setting: str) -> str:
    """``insert_default_rules``: the ``+``-separated rights of a setting ("" for none)."""
    raw = str(core.config.get(setting) or "")
    ops = [p.strip().upper() for p in raw.split("+")]
    return "+".join(p for p in ops if p in ("USE", "MANAGE", "ADMIN", "CREATE"))


def _rule_texts(core: Core, kind: str, gid: int, zone: int, rid: int) -> list[str]:
    if rid == ALL_RESOURCES:
        selector = "*"
    elif kind == "CLUSTER":
        selector = f"%{rid}"
    else:
        selector = f"#{rid}"
    texts = []
    for type_name, setting in RESOURCE_SETS[kind][1]:
        rights = _rights(core, setting)
        if rights:
            texts.append(f"@{gid} {type_name}/{selector} {rights} #{zone}")
    return texts


def stage_rules(
    core: Core, unit: Unit, kind: str, gid: int, zone: int, rid: int, add: bool
) -> None:
    """``ResourceSet::add_rule``/``del_rule`` for one group and one resource."""
    for text in _rule_texts(core, kind, gid, zone, rid):
        if add:
            core.stage_rule(unit, text)
            continue
        rule = core.acl.find(acl.parse_rule_string(text, core.config.zone_id))
        if rule is not None:
            core.drop_rule(unit, rule.oid)


def stage_group_rules(core: Core, unit: Unit, vdc: Vdc, gid: int, add: bool) -> None:
    for kind in RESOURCE_SETS:
        for zone, rid in sorted(vdc.resources[kind]):
            stage_rules(core, unit, kind, gid, zone, rid, add)


def add_group(core: Core, unit: Unit, vdc: Vdc, gid: int) -> None:
    """``Vdc::add_group`` on a copy staged in ``unit``."""
    if gid in vdc.groups:
        raise InternalError(f"Group {gid} is already assigned to the VDC {vdc.oid}")
    vdc.groups.add(gid)
    stage_group_rules(core, unit, vdc, gid, True)
    unit.save(core.vdcs, vdc)


def add_to_default(core: Core, unit: Unit, gid: int) -> None:
    """A new group joins the default VDC (``GroupAllocateAPI::pool_allocate``)."""
    vdc = core.vdcs.get(DEFAULT_VDC_ID)
    if vdc is not None:
        add_group(core, unit, vdc.copy(), gid)


def forget_group(core: Core, unit: Unit, gid: int) -> None:
    """A deleted group leaves every VDC (its rules go with the group's own)."""
    for found in core.vdcs.objects():
        if gid in found.groups:
            vdc = found.copy()
            vdc.groups.discard(gid)
            stage_group_rules(core, unit, vdc, gid, False)
            unit.save(core.vdcs, vdc)


def forget_resource(core: Core, unit: Unit, kind: str, rid: int) -> None:
    """A deleted cluster or datastore leaves every VDC of the local zone. Its rules are
    not touched here: the delete drops every rule on ``%cid`` or ``DATASTORE/#id``."""
    zone = core.config.zone_id
    for found in core.vdcs.objects():
        if (zone, rid) in found.resources[kind]:
            vdc = found.copy()
            vdc.resources[kind].discard((zone, rid))
            unit.save(core.vdcs, vdc)


def _add_resource(core: Core, unit: Unit, vdc: Vdc, kind: str, zone: int, rid: int) -> None:
    pairs = vdc.resources[kind]
    if (zone, rid) in pairs:
        raise InternalError(
            f"{_TYPE_STR[kind]} {rid} from Zone {zone} is already assigned to the VDC"
        )
    pairs.add((zone, rid))
    for gid in sorted(vdc.groups):
        stage_rules(core, unit, kind, gid, zone, rid, True)
    if rid == ALL_RESOURCES:
        for other_zone, other in sorted(pairs):
            if other_zone == zone and other != ALL_RESOURCES:
                _del_resource(core, unit, vdc, kind, zone, other)


def _del_resource(core: Core, unit: Unit, vdc: Vdc, kind: str, zone: int, rid: int) -> None:
    pairs = vdc.resources[kind]
    if (zone, rid) not in pairs:
        raise InternalError(f"{_TYPE_STR[kind]} {rid} from Zone {zone} is not assigned to the VDC ")
    pairs.discard((zone, rid))
    for gid in sorted(vdc.groups):
        stage_rules(core, unit, kind, gid, zone, rid, False)


@rpc("one.vdc.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new VDC."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("VDC", -1))
    async with core.vdcs.lock(-1):
        name = tmpl.get("NAME") or ""
        shared.check_new_name(core, VDC, name, -1, "Vdc")
        tmpl.erase("NAME")
        unit = core.unit()
        oid = unit.allocate(core.vdcs)
        unit.add(core.vdcs, Vdc(oid, name, template=tmpl))
        await unit.commit(f"allocate VDC {name}")
    return oid


@rpc("one.vdc.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a VDC and the rules it gave its groups."""

    def extra(unit: Unit, vdc: Vdc) -> None:
        for gid in sorted(vdc.groups):
            stage_group_rules(core, unit, vdc, gid, False)

    return await shared.delete(core, call, VDC, oid, extra)


async def _edit_group(core: Core, call: Call, oid: int, gid: int, add: bool) -> int:
    vdc = shared.get_object(core, VDC, oid)
    group = core.groups.get(gid)
    if group is None and add:
        raise no_exists("group", gid)
    requests = [(Op.ADMIN, VDC.auth(core, vdc))]
    if group is not None:
        requests.append((Op.ADMIN, shared.group_auth(core, group)))
    core.acl.check_all(call.caller, requests)
    async with core.vdcs.lock(oid):
        vdc = shared.get_object(core, VDC, oid).copy()
        unit = core.unit()
        if add:
            add_group(core, unit, vdc, gid)
        else:
            if gid not in vdc.groups:
                raise InternalError(f"Group {gid} is not assigned to the VDC {oid}")
            vdc.groups.discard(gid)
            stage_group_rules(core, unit, vdc, gid, False)
            unit.save(core.vdcs, vdc)
        await unit.commit(f"{'add' if add else 'del'} group {gid} VDC {oid}")
    return oid


@rpc("one.vdc.addgroup", "ii")
async def addgroup(core: Core, call: Call, oid: int, gid: int) -> int:
    """Adds a group to the VDC."""
    return await _edit_group(core, call, oid, gid, True)


@rpc("one.vdc.delgroup", "ii")
async def delgroup(core: Core, call: Call, oid: int, gid: int) -> int:
    """Deletes a group from the VDC."""
    return await _edit_group(core, call, oid, gid, False)


async def _edit_resource(
    core: Core, call: Call, kind: str, oid: int, zone_id: int, rid: int, add: bool
) -> int:
    """``VdcAPI::edit_resource``: ADMIN on the VDC, the zone and the resource (the
    last two when they exist; adding needs them to)."""
    vdc = shared.get_object(core, VDC, oid)
    zone = core.zones.get(zone_id)
    if zone is None and add:
        raise no_exists("zone", zone_id)
    requests = [(Op.ADMIN, VDC.auth(core, vdc))]
    if zone is not None:
        requests.append((Op.ADMIN, shared.system_auth("ZONE")(core, zone)))
    if rid != ALL_RESOURCES and zone_id == core.config.zone_id:
        pool, word, type_name = _RESOURCES[kind]
        obj = pool(core).get(rid)
        if obj is None and add:
            raise no_exists(word, rid)
        if obj is not None:
            requests.append((Op.ADMIN, _resource_auth(core, type_name, obj)))
    core.acl.check_all(call.caller, requests)
    async with core.vdcs.lock(oid):
        vdc = shared.get_object(core, VDC, oid).copy()
        unit = core.unit()
        if add:
            _add_resource(core, unit, vdc, kind, zone_id, rid)
        else:
            _del_resource(core, unit, vdc, kind, zone_id, rid)
        unit.save(core.vdcs, vdc)
        await unit.commit(f"{'add' if add else 'del'} {kind} {rid} VDC {oid}")
    return oid


def _resource_auth(core: Core, type_name: str, obj: Any) -> shared.ObjectAuth:
    if type_name in ("CLUSTER", "HOST"):
        return shared.system_auth(type_name)(core, obj)
    return shared.owned_auth(type_name)(core, obj)


def _declare_resource(kind: str, noun: str) -> None:
    async def add(core: Core, call: Call, oid: int, zone_id: int, rid: int) -> int:
        return await _edit_resource(core, call, kind, oid, zone_id, rid, True)

    async def delete(core: Core, call: Call, oid: int, zone_id: int, rid: int) -> int:
        return await _edit_resource(core, call, kind, oid, zone_id, rid, False)

    add.__doc__ = f"Adds a {noun} to the VDC"
    delete.__doc__ = f"Deletes a {noun} from the VDC"
    rpc(f"one.vdc.add{noun}", "iii")(add)
    rpc(f"one.vdc.del{noun}", "iii")(delete)


for _kind, _noun in (
    ("CLUSTER", "cluster"),
    ("HOST", "host"),
    ("DATASTORE", "datastore"),
    ("VNET", "vnet"),
):
    _declare_resource(_kind, _noun)
