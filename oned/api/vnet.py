"""``one.vn.*`` and ``one.vnpool.info`` (mirrors ``VirtualNetworkAPI``,
``VirtualNetworkAllocateAPI`` and ``VirtualNetwork::insert``).

A new network is committed in LOCK_CREATE with its cluster membership and then
VNET_CREATE is sent; the IPAM manager's reply makes it READY and builds its address
ranges. Lease calls (hold, release, reserve) change the ranges of the committed
network in place under its lock and roll back if the commit fails. Range and lease
logic lives in ``oned.managers.ipam``; this module holds the request-level checks
with oned's texts. ``one.cluster.addvnet/delvnet`` are registered here too.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from oned.api import shared
from oned.api.cluster import CLUSTER, Membership, _generic
from oned.api.codec import Escaped
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import ActionError, ApiError, AuthorizationError, InternalError
from oned.managers.ipam import leases, lifecycle, ranges, vlanauth
from oned.managers.ipam.allocate import create
from oned.managers.ipam.lifecycle import VNetError
from oned.objects import vnet as vs
from oned.objects.address_range import ARError
from oned.objects.base import Op
from oned.objects.cluster import DEFAULT_CLUSTER_ID
from oned.objects.vnet import LeaseChanges, VirtualNetwork
from oned.pools.base import Locks
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml

VNET = Family[VirtualNetwork](
    type_name="NET",
    word="virtual network",
    pool_root="VNET_POOL",
    pool=lambda core: core.vnets,
    auth=shared.owned_auth("NET"),
    lockable=True,
    name_scope="owner",
    restricted_attr="VNET_RESTRICTED_ATTR",
)

VNETS = Membership(lambda: VNET, lambda c: c.vnets, "cluster_network_relation")


@rpc("one.vn.allocate", "si")
async def allocate(core: Core, call: Call, text: str, cluster_id: int) -> int:
    """Allocates a new virtual network (cluster -1 is the default cluster 0)."""
    tmpl = shared.parse_template(text)
    if cluster_id == -1:
        cluster_id = DEFAULT_CLUSTER_ID
    cluster = shared.get_object(core, CLUSTER, cluster_id)
    core.acl.check_all(
        call.caller,
        [
            (Op.CREATE, shared.ObjectAuth("NET", -1)),
            (Op.ADMIN, CLUSTER.auth(core, cluster)),
        ],
    )
    vlanauth.validate(core, call, tmpl)
    if not call.is_admin:
        restricted = restricted_in(core, tmpl)
        if restricted:
            raise AuthorizationError(f"VNET Template includes a restricted attribute {restricted}")
    return await create(core, call, tmpl, {cluster_id})


def restricted_in(core: Core, tmpl: Template) -> str | None:
    """The first VNET_RESTRICTED_ATTR ``tmpl`` sets (``check_restricted``)."""
    for name in core.attr_list("VNET_RESTRICTED_ATTR"):
        if "/" in name:
            vec, key = name.split("/", 1)
            if any(key in v for v in tmpl.vectors(vec)):
                return name
        elif tmpl.get(name) is not None:
            return name
    return None


def ar_restricted(core: Core, attrs: dict[str, str]) -> str | None:
    names = set(core.attr_list("VNET_RESTRICTED_ATTR"))
    for key in sorted(attrs):
        if key in names or f"AR/{key}" in names:
            return key
    return None


def ready_for(vn: VirtualNetwork, method: str) -> None:
    """``VirtualNetworkAPI::authorize``'s state check (oned's missing space kept)."""
    if vn.state not in (vs.READY, vs.UPDATE_FAILURE):
        raise ActionError(
            f"Could not execute {method}Virtual Network is in wrong state: "
            f"{vs.state_name(vn.state)}"
        )


_SIMPLE_VECTOR = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\[\s*((?:[A-Za-z_][A-Za-z0-9_]*\s*=\s*"[^"\\\n\x00]*"'
    r'\s*,\s*)*[A-Za-z_][A-Za-z0-9_]*\s*=\s*"[^"\\\n\x00]*")\s*\]\s*$'
)
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"\\\n\x00]*)"')
_SPACE = " \t\n\v\f\r"


def _parse(text: str) -> Template:
    """A template; one plain vector (``LEASES=[IP="..."]``, the lease calls) is read
    without the full parser, with the same result."""
    simple = _SIMPLE_VECTOR.match(text)
    if simple is not None:
        vector: dict[str, str] = {}
        for key, value in _PAIR.findall(simple.group(2)):
            vector.setdefault(key.upper(), value.strip(_SPACE))
        return Template([(simple.group(1).upper(), vector)])
    try:
        return parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Parse error: {exc}") from exc


async def _commit_leases(core: Core, vn: VirtualNetwork, changes: LeaseChanges, desc: str) -> None:
    unit = core.unit()
    core.vnets.stage_leases(unit, vn, changes)
    try:
        await unit.commit(desc)
    except Exception:
        changes.rollback()
        raise


async def _held_lease(core: Core, call: Call, oid: int, text: str, action: Any, word: str) -> int:
    """``one.vn.hold``/``one.vn.release``: one LEASES=[IP|IP6|MAC, AR_ID?] lease."""
    shared.get_authorized(core, call, VNET, oid, Op.MANAGE)
    tmpl = _parse(text)
    async with core.vnets.lock(oid):
        vn = shared.get_object(core, VNET, oid)
        ready_for(vn, call.method)
        lease = tmpl.get_vector("LEASES")
        if lease is None:
            raise InternalError("Empty lease description.")
        changes = LeaseChanges()
        try:
            await action(core, vn, changes, lease)
        except leases.LeaseError as exc:
            changes.rollback()
            raise InternalError(str(exc)) from exc
        await _commit_leases(core, vn, changes, f"{word} lease in network {oid}")
    return oid


@rpc("one.vn.hold", "is")
async def hold(core: Core, call: Call, oid: int, text: str) -> int:
    """Holds a lease (LEASES=[IP|IP6|MAC, AR_ID?])."""
    return await _held_lease(core, call, oid, text, leases.hold, "hold")


@rpc("one.vn.release", "is")
async def release(core: Core, call: Call, oid: int, text: str) -> int:
    """Releases a held lease."""
    return await _held_lease(core, call, oid, text, leases.release, "release")


@rpc("one.vn.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns virtual network information (ranges with their leases)."""
    vn = shared.get_authorized(core, call, VNET, oid, Op.USE, ignore_lock=True)
    if core.acl.authorize(call.caller, Op.MANAGE, VNET.auth(core, vn)):
        return Escaped(vn.escaped_extended())
    return str(vn.to_xml_extended(visible_owners(core, call)))


def visible_owners(core: Core, call: Call) -> list[int]:
    """Lease owners a caller without MANAGE sees: reservations and VMs it can use."""
    from oned.objects.address_range import OWNER_NET, OWNER_VM, owner_of

    out = [
        owner_of(OWNER_NET, other.oid)
        for other in core.vnets.objects()
        if other.parent != -1 and core.acl.authorize(call.caller, Op.USE, VNET.auth(core, other))
    ]
    vms = getattr(core, "vms", None)
    if vms is not None:
        out += [owner_of(OWNER_VM, vm.oid) for vm in vms.objects() if vm.uid == call.uid]
    return out


@rpc("one.vnpool.info", "iii")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> str:
    """Returns the virtual network pool (stored ranges, no leases)."""
    nets = shared.filtered(core, call, VNET, filter_flag, start, end)
    body = core.vnets.escaped_body
    return Escaped("&lt;VNET_POOL&gt;" + "".join(body(n.oid) for n in nets) + "&lt;/VNET_POOL&gt;")


@rpc("one.vn.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Replaces (0) or merges (1) the network template."""
    shared.get_authorized(core, call, VNET, oid, Op.MANAGE)
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    try:
        new = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Cannot update template. {exc}") from exc
    vlanauth.validate(core, call, new, shared.get_object(core, VNET, oid).template_id)
    async with core.vnets.lock(oid):
        vn = shared.get_object(core, VNET, oid)
        if not call.is_admin:
            shared.check_restricted(core, VNET, vn.template, new, merge=mode == 1)
        vn = vn.copy()
        values = {n: v for n, v in new.items if isinstance(v, str)}
        changed = lifecycle.updated_attributes(vn, values, removed=mode == 0)
        new.erase("VNET_UPDATE")
        if changed:
            new.add("VNET_UPDATE", changed)
        if mode == 0:
            kept = [(n, v) for n, v in vn.template.items if n in _restricted_names(core)]
            vn.template = new
            if not call.is_admin:
                for name, value in kept:
                    if name not in vn.template:
                        vn.template.add(name, value)
        else:
            vn.template.merge(new)
        try:
            lifecycle.post_update(core, vn)
        except VNetError as exc:
            raise InternalError(f"Cannot update template. {exc}") from exc
        vn.prev_state = vn.state
        await shared.save(core, VNET, vn, f"update virtual network {oid}")
    if vn.template.get_vector("VNET_UPDATE") is not None:
        trigger_updatevnet(core, oid)
    return oid


class NetworkUpdater(Protocol):
    """What the VM side offers to push changed network attributes to its VMs."""

    def trigger_updatevnet(self, vnet_id: int) -> None: ...


def trigger_updatevnet(core: Core, vnet_id: int) -> None:
    """``LifeCycleManager::trigger_updatevnet`` once the VM family provides it."""
    lcm: NetworkUpdater | None = getattr(core, "lifecycle_manager", None)
    if lcm is not None and hasattr(lcm, "trigger_updatevnet"):
        lcm.trigger_updatevnet(vnet_id)


def _restricted_names(core: Core) -> set[str]:
    return {n for n in core.attr_list("VNET_RESTRICTED_ATTR") if "/" not in n}


@rpc("one.vn.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a virtual network (VNET_DELETE through the IPAM driver)."""
    shared.get_authorized(core, call, VNET, oid, Op.MANAGE)
    async with core.vnets.lock(oid):
        vn = shared.get_object(core, VNET, oid)
        if vn.used_leases() > 0:
            raise ActionError(
                "Cannot delete virtual network. Can not remove a virtual network with leases in use"
            )
        if vn.state in (vs.LOCK_CREATE, vs.LOCK_DELETE, vs.DONE):
            raise ActionError(
                "Cannot delete virtual network. Can not remove a Virtual Network, wrong "
                f"state {vs.state_name(vn.state)}"
            )
        vn = vn.copy()
        manager = core.ipam_manager
        for ar in list(vn.ars):
            if ar.ipam_mad() and manager is not None:
                ok, msg = await manager.address_request("UNREGISTER_ADDRESS_RANGE", ar.to_xml())
                if not ok:
                    raise ActionError(f"Cannot delete virtual network. {msg}")
            vn.ars.remove(ar)
        vn.state = vn.prev_state = vs.LOCK_DELETE
        unit = core.unit()
        unit.save(core.vnets, vn)
        shared.drop_resource_rules(core, unit, "NET", oid)
        await unit.commit(f"delete virtual network {oid}")
    if manager is not None:
        manager.trigger_vnet_delete(oid, vn.to_xml())
    return oid


_RECOVER = {0: "recover failure", 1: "recover success", 2: "recover delete", 3: "recover retry"}


@rpc("one.vn.recover", "ii")
async def recover(core: Core, call: Call, oid: int, operation: int) -> int:
    """Recovers a network stuck in a driver operation (0 fail, 1 ok, 2 delete, 3 retry)."""
    if operation not in _RECOVER:
        raise ActionError("Wrong recovery operation code")
    shared.get_authorized(core, call, VNET, oid, Op.MANAGE)
    vn = shared.get_object(core, VNET, oid)
    state = vn.state
    allowed = {
        0: (vs.INIT, vs.LOCK_CREATE, vs.LOCK_DELETE),
        1: (vs.INIT, vs.LOCK_CREATE, vs.ERROR, vs.LOCK_DELETE, vs.UPDATE_FAILURE),
        2: (vs.INIT, vs.LOCK_CREATE, vs.LOCK_DELETE, vs.ERROR),
        3: (vs.UPDATE_FAILURE,),
    }[operation]
    if state not in allowed:
        raise InternalError(
            f"Could not perform '{_RECOVER[operation]}' on VN {oid}, wrong state "
            f"{vs.state_name(state)}."
        )
    if (operation == 1 and state == vs.LOCK_DELETE) or operation == 2:
        xml = vn.to_xml()
        await lifecycle.delete_success(core, oid)
        if operation == 2 and core.ipam_manager is not None:
            core.ipam_manager.trigger_vnet_delete(oid, xml)
        return oid
    async with core.vnets.lock(oid):
        vn = shared.get_object(core, VNET, oid).copy()
        if operation == 0:
            vn.state = vs.ERROR
            vn.set_error("Failure forced by user", core.clock.seconds())
        elif operation == 1:
            vn.clear_error()
            if vn.state == vs.UPDATE_FAILURE:
                vn.updated |= vn.outdated
                vn.outdated.clear()
            vn.state = vs.READY
        else:
            vn.outdated |= vn.updating | vn.error_vms
            vn.updating.clear()
            vn.error_vms.clear()
            vn.state = vs.READY
        vn.prev_state = vn.state
        await shared.save(core, VNET, vn, f"recover virtual network {oid}")
    return oid


@rpc("one.cluster.addvnet", "ii")
async def addvnet(core: Core, call: Call, oid: int, vnet_id: int) -> int:
    """Adds a virtual network to the cluster."""
    return await _generic(core, call, oid, vnet_id, VNETS, True)


@rpc("one.cluster.delvnet", "ii")
async def delvnet(core: Core, call: Call, oid: int, vnet_id: int) -> int:
    """Removes a virtual network from the cluster."""
    return await _generic(core, call, oid, vnet_id, VNETS, False)


__all__ = ["VNET", "VNETS", "ARError", "create"]

declare(VNET, "vn", "rename", "chmod", "chown", "lock", "unlock")


def _ar_auth(core: Core, call: Call, oid: int) -> VirtualNetwork:
    """ADMIN on networks not made from a VN template, MANAGE otherwise."""
    vn: VirtualNetwork = shared.get_object(core, VNET, oid)
    op = Op.ADMIN if vn.template_id == -1 else Op.MANAGE
    shared.authorize(core, call, VNET, vn, op)
    return vn


@rpc("one.vn.add_ar", "is")
async def add_ar(core: Core, call: Call, oid: int, text: str) -> int:
    """Adds an address range (AR=[...])."""
    _ar_auth(core, call, oid)
    tmpl = _parse(text)
    async with core.vnets.lock(oid):
        vn = shared.get_object(core, VNET, oid)
        ready_for(vn, call.method)
        if not call.is_admin:
            for attrs in tmpl.vectors("AR"):
                name = ar_restricted(core, attrs)
                if name:
                    raise AuthorizationError(f"AR includes a restricted attribute {name}")
        vlanauth.validate(core, call, tmpl, vn.template_id)
        vn = vn.copy()
        await ranges.add_ar(core, call, vn, tmpl)
        vn.prev_state = vn.state
        await shared.save(core, VNET, vn, f"add address range to network {oid}")
    return oid


@rpc("one.vn.rm_ar", "iib", required=2)
async def rm_ar(core: Core, call: Call, oid: int, ar_id: int, force: bool = False) -> int:
    """Removes an address range (force: even with leases in use)."""
    _ar_auth(core, call, oid)
    return await _rm_ar(core, oid, ar_id, force)


async def _rm_ar(core: Core, oid: int, ar_id: int, force: bool) -> int:
    vn = shared.get_object(core, VNET, oid)
    targets = [(core.vnets, oid)] + ([(core.vnets, vn.parent)] if vn.parent != -1 else [])
    async with Locks(*targets):
        vn = shared.get_object(core, VNET, oid)
        await ranges.rm_ar(core, vn, ar_id, force)
    return oid


@rpc("one.vn.free_ar", "ii")
async def free_ar(core: Core, call: Call, oid: int, ar_id: int) -> int:
    """Frees a reserved address range."""
    shared.get_authorized(core, call, VNET, oid, Op.MANAGE)
    return await _rm_ar(core, oid, ar_id, False)


@rpc("one.vn.update_ar", "is")
async def update_ar(core: Core, call: Call, oid: int, text: str) -> int:
    """Updates the attributes of an address range (AR=[AR_ID=...])."""
    shared.get_authorized(core, call, VNET, oid, Op.MANAGE)
    tmpl = _parse(text)
    async with core.vnets.lock(oid):
        vn = shared.get_object(core, VNET, oid)
        ready_for(vn, call.method)
        vlanauth.validate(core, call, tmpl, vn.template_id)
        vn = vn.copy()
        ranges.update_ar(core, call, vn, tmpl)
        vn.prev_state = vn.state
        await shared.save(core, VNET, vn, f"update address range of network {oid}")
    if vn.template.get_vector("VNET_UPDATE") is not None:
        trigger_updatevnet(core, oid)
    return oid


@rpc("one.vn.reserve", "is")
async def reserve(core: Core, call: Call, oid: int, text: str) -> int:
    """Reserves addresses into a new or existing reservation network."""
    try:
        tmpl = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise ActionError(f"Parse error: {exc}") from exc
    return await ranges.reserve(core, call, oid, tmpl)
