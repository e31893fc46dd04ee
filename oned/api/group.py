"""``one.group.*``, ``one.grouppool.info`` and ``one.groupquota.*`` (mirrors ``GroupAPI``)."""

from __future__ import annotations

from oned.api import shared, vdc
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.api.user import _parse_action, store_quotas, tag_vm_quotas, update_defaults
from oned.auth import acl
from oned.core import Core
from oned.errors import ActionError, AuthorizationError, InternalError, OneError, no_exists
from oned.objects.base import Op
from oned.objects.group import Group
from oned.objects.vlans import VlanError, build_rules
from oned.pools.base import Locks, Unit

GROUP = Family[Group](
    type_name="GROUP",
    word="group",
    pool_root="GROUP_POOL",
    pool=lambda core: core.groups,
    auth=shared.group_auth,
    name_scope="global",
    extra_name_chars=" ",
    delete_op=Op.ADMIN,
    restricted_attr="GROUP_RESTRICTED_ATTR",
)


def info_xml(core: Core, group: Group) -> str:
    quotas = core.group_quotas.get(group.oid).to_xml()
    return (
        group.to_xml()[: -len("</GROUP>")]
        + quotas
        + core.group_vlans.body(group.oid)
        + core.group_quotas.defaults_xml()
        + "</GROUP>"
    )


@rpc("one.group.allocate", "s")
async def allocate(core: Core, call: Call, name: str) -> int:
    """Allocates a new group in OpenNebula."""
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("GROUP", -1))
    problem = shared.validate_name(name, " ")
    if problem:
        raise InternalError(problem)
    clash = core.groups.by_name(name)
    if clash is not None:
        raise InternalError(f"NAME is already taken by GROUP {clash.oid}.")
    unit = core.unit()
    oid = unit.allocate(core.groups)
    group = Group(oid, name)
    unit.add(core.groups, group)
    vdc.add_to_default(core, unit, oid)
    try:
        await unit.commit(f"allocate group {name}")
    except Exception as exc:
        raise InternalError(f"NAME is already taken by GROUP {name}.") from exc
    return oid


@rpc("one.group.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes the given group from the pool."""
    group = shared.get_authorized(core, call, GROUP, oid, Op.ADMIN)
    if oid < 100:
        raise ActionError("Cannot delete group. System Groups (ID < 100) cannot be deleted.")
    if group.users:
        raise ActionError(f"Cannot delete group. Group {oid} is not empty.")

    def extra(unit: Unit, _group: Group) -> None:
        unit.sql(core.group_quotas.delete(oid), lambda: core.group_quotas.forget(oid))
        unit.sql(core.group_vlans.delete(oid), lambda: core.group_vlans.forget(oid))
        for rule in list(core.acl.rules.values()):
            res_sel = rule.resource & (acl.SELECTORS | acl.ID_MASK)
            if rule.user == acl.GROUP | oid or res_sel == acl.GROUP | oid:
                core.drop_rule(unit, rule.oid)
        vdc.forget_group(core, unit, oid)

    return await shared.delete(core, call, GROUP, oid, extra)


@rpc("one.group.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns group information."""
    if oid == -1:
        oid = call.caller.gid
    group = shared.get_authorized(core, call, GROUP, oid, Op.USE, ignore_lock=True)
    return info_xml(core, group)


@rpc("one.grouppool.info", "")
async def pool_info(core: Core, call: Call) -> str:
    """Returns the group pool."""
    parts = ["<GROUP_POOL>"]
    for group in shared.filtered(core, call, GROUP):
        parts.append(core.groups.body(group.oid))
        parts.append(core.group_quotas.body(group.oid))
        parts.append(core.group_vlans.body(group.oid))
    parts.append(core.group_quotas.defaults_xml())
    parts.append("</GROUP_POOL>")
    return "".join(parts)


@rpc("one.group.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the group template."""
    shared.get_authorized(core, call, GROUP, oid, Op.ADMIN)
    return await shared.update_template(core, call, GROUP, oid, text, mode)


@rpc("one.group.quota", "is")
async def quota(core: Core, call: Call, oid: int, text: str) -> int:
    """Sets group quota limits."""
    if oid == 0:
        raise ActionError("Cannot set quotas for oneadmin group")
    try:
        shared.get_authorized(core, call, GROUP, oid, Op.ADMIN)
    except OneError as exc:
        message = exc.message if isinstance(exc, AuthorizationError) else ""
        raise AuthorizationError(message, exc.resp_id) from exc
    tmpl = _parse_action(text)
    tag_vm_quotas(tmpl, "GID", oid)
    async with core.groups.lock(oid):
        if core.groups.get(oid) is None:
            raise no_exists("group", oid)
        await store_quotas(core, core.group_quotas, oid, tmpl)
    return oid


async def _admin(core: Core, call: Call, gid: int, uid: int, add: bool) -> int:
    group = core.groups.get(gid)
    if group is None:
        raise no_exists("group", gid)
    user = core.users.get(uid)
    if user is None:
        raise no_exists("user", uid)
    core.acl.check_all(
        call.caller,
        [(Op.ADMIN, shared.group_auth(core, group)), (Op.ADMIN, shared.user_auth(core, user))],
    )
    async with Locks((core.groups, gid)):
        group = shared.get_object(core, GROUP, gid).copy()
        unit = core.unit()
        if add:
            if uid not in group.users:
                raise InternalError(f"Cannot edit group. User {uid} is not part of Group {gid}.")
            if uid in group.admins:
                raise InternalError(
                    f"Cannot edit group. User {uid} is already an administrator of Group {gid}."
                )
            group.admins.add(uid)
            core.stage_admin_rules(unit, uid, gid)
        else:
            if uid not in group.admins:
                raise InternalError(
                    f"Cannot edit group. User {uid} is not an administrator of Group {gid}."
                )
            group.admins.discard(uid)
            core.drop_admin_rules(unit, uid, gid)
        unit.save(core.groups, group)
        await unit.commit(f"{'addadmin' if add else 'deladmin'} group {gid}")
    return gid


@rpc("one.group.addadmin", "ii")
async def addadmin(core: Core, call: Call, gid: int, uid: int) -> int:
    """Adds a user to the group administrators."""
    return await _admin(core, call, gid, uid, True)


@rpc("one.group.deladmin", "ii")
async def deladmin(core: Core, call: Call, gid: int, uid: int) -> int:
    """Removes a user from the group administrators."""
    return await _admin(core, call, gid, uid, False)


@rpc("one.group.vlan", "is")
async def vlan(core: Core, call: Call, oid: int, text: str) -> int:
    """Sets the VLAN rules of a group."""
    shared.get_authorized(core, call, GROUP, oid, Op.ADMIN)
    tmpl = _parse_action(text)
    try:
        rules = build_rules(tmpl)
    except VlanError as exc:
        raise ActionError(str(exc)) from exc
    async with core.groups.lock(oid):
        if core.groups.get(oid) is None:
            raise no_exists("group", oid)
        unit = core.unit()
        unit.sql(core.group_vlans.save(oid, rules), lambda: core.group_vlans.remember(oid, rules))
        await unit.commit(f"vlan group {oid}")
    return oid


@rpc("one.groupquota.info", "")
async def default_quota_info(core: Core, call: Call) -> str:
    """Returns the default group quota limits."""
    return core.group_quotas.defaults_xml()


@rpc("one.groupquota.update", "s")
async def default_quota_update(core: Core, call: Call, text: str) -> str:
    """Updates the default group quota limits."""
    return await update_defaults(core, call, text, core.group_quotas)
