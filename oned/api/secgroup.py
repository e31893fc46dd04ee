"""``one.secgroup.*`` and ``one.secgrouppool.info`` (mirrors ``SecurityGroupAPI``).

Security groups use the shared machinery for info, rename, chmod, chown and the pool;
allocate, clone, update, delete and commit are their own: every RULE is validated with
oned's texts and exact duplicates are dropped, group 0 cannot be deleted, a group used
by VMs cannot be deleted, and an update (or ``commit``) moves the group's VMs to
OUTDATED_VMS and asks the VM side to push the rules again (``trigger_updatesg``: the
seam the VM family plugs into).
"""

from __future__ import annotations

from typing import Protocol

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import ActionError, ApiError, InternalError
from oned.objects.base import Op, Permissions
from oned.objects.secgroup import DEFAULT_SECGROUP_ID, RuleError, SecurityGroup, check_and_dedup
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml

SECGROUP = Family[SecurityGroup](
    type_name="SECGROUP",
    word="security group",
    pool_root="SECURITY_GROUP_POOL",
    pool=lambda core: core.secgroups,
    auth=shared.owned_auth("SECGROUP"),
    name_scope="owner",
)


class SecurityGroupUpdater(Protocol):
    """What the VM side offers to push a group's rules to its VMs."""

    def trigger_updatesg(self, sg_id: int) -> None: ...


def trigger_updatesg(core: Core, sg_id: int) -> None:
    """``LifeCycleManager::trigger_updatesg``: the group's OUTDATED VMs get its rules
    (without VM managers, as in some unit tests, nothing is pushed)."""
    lcm: SecurityGroupUpdater | None = getattr(core, "lifecycle_manager", None)
    if lcm is not None:
        lcm.trigger_updatesg(sg_id)


#: Pool lock key that serialises allocations (name check, then insert), as the pool
#: mutex does in oned: two concurrent calls cannot both take a free name.
ALLOCATION = -1


async def insert(core: Core, call: Call, tmpl: Template) -> int:
    """``SecurityGroupPool::allocate`` under the allocation lock."""
    async with core.secgroups.lock(ALLOCATION):
        return await _insert(core, call, tmpl)


async def _insert(core: Core, call: Call, tmpl: Template) -> int:
    """``SecurityGroupPool::allocate``: name checks, rule checks, insert (INTERNAL errors)."""
    caller = call.caller
    name = tmpl.get("NAME") or ""
    shared.check_new_name(core, SECGROUP, name, caller.uid, "SecurityGroup")
    tmpl.erase("NAME")
    try:
        check_and_dedup(tmpl)
    except RuleError as exc:
        raise InternalError(str(exc)) from exc
    unit = core.unit()
    oid = unit.allocate(core.secgroups)
    group = SecurityGroup(
        oid=oid,
        name=name,
        uid=caller.uid,
        gid=caller.gid,
        uname=caller.uname,
        gname=caller.gname,
        perms=Permissions.for_new_object(
            caller.uid, caller.gid, caller.umask, core.config.enable_other_permissions
        ),
        template=tmpl,
    )
    unit.add(core.secgroups, group)
    await unit.commit(f"allocate security group {oid}")
    return oid


@rpc("one.secgroup.allocate", "s", help="Allocates a new security group")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new security group."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("SECGROUP", -1))
    return await insert(core, call, tmpl)


@rpc("one.secgroup.clone", "is", help="Clone a security group")
async def clone(core: Core, call: Call, oid: int, name: str) -> int:
    """Clones an existing security group."""
    source = shared.get_object(core, SECGROUP, oid)
    tmpl = source.template.copy()
    tmpl.set("NAME", name)
    core.acl.check_all(
        call.caller,
        [
            (Op.CREATE, SECGROUP.auth(core, source)),
            (Op.CREATE, shared.ObjectAuth("SECGROUP", -1)),
        ],
    )
    return await insert(core, call, tmpl)


@rpc("one.secgroup.update", "isi", required=2, help="Updates a security group template")
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the security group template (rules are validated)."""
    shared.get_authorized(core, call, SECGROUP, oid, Op.MANAGE)
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    try:
        new = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Cannot update template. {exc.parse_error}") from exc
    async with core.secgroups.lock(oid):
        group = shared.get_object(core, SECGROUP, oid).copy()
        if mode == 0:
            group.template = new
        else:
            group.template.merge(new)
        try:
            check_and_dedup(group.template)
        except RuleError as exc:
            raise InternalError(f"Cannot update template. {exc}") from exc
        group.commit(False)
        await shared.save(core, SECGROUP, group, f"update security group {oid}")
    trigger_updatesg(core, oid)
    return oid


@rpc("one.secgroup.commit", "ib", help="Commit security group changes to VMs")
async def commit(core: Core, call: Call, oid: int, recover: bool) -> int:
    """Commits security group changes to its VMs (recover: only the unfinished ones)."""
    shared.get_authorized(core, call, SECGROUP, oid, Op.MANAGE)
    async with core.secgroups.lock(oid):
        group = shared.get_object(core, SECGROUP, oid).copy()
        group.commit(recover)
        await shared.save(core, SECGROUP, group, f"commit security group {oid}")
    trigger_updatesg(core, oid)
    return oid


@rpc("one.secgroup.delete", "i", help="Deletes a security group")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a security group (not group 0, not one VMs use)."""
    shared.get_authorized(core, call, SECGROUP, oid, Op.MANAGE)
    group = shared.get_object(core, SECGROUP, oid)
    if group.oid == DEFAULT_SECGROUP_ID:
        raise ActionError(
            "Cannot delete security group. The default security group (ID 0) cannot be deleted."
        )
    if group.vm_count() > 0:
        raise ActionError("Cannot delete security group. The security group has VMs using it")
    return await shared.delete(core, call, SECGROUP, oid)


@rpc("one.secgrouppool.info", "iii", help="Returns the security group pool")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the security group pool."""
    groups = shared.filtered(core, call, SECGROUP, filter_flag, start, end)
    return shared.pool_document("SECURITY_GROUP_POOL", groups, core.secgroups)


@rpc("one.secgroup.info", "ib", required=1, help="Returns security group information")
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    group = shared.get_authorized(core, call, SECGROUP, oid, Op.USE, ignore_lock=True)
    return shared.info_body(core, call, SECGROUP, group, decrypt)


@rpc("one.secgroup.rename", "is", help="Renames a security group")
async def rename(core: Core, call: Call, oid: int, name: str) -> int:
    return await shared.rename(core, call, SECGROUP, oid, name)


@rpc("one.secgroup.chmod", "i" * 10, help="Changes permission bits of a security group")
async def chmod(core: Core, call: Call, oid: int, *bits: int) -> int:
    return await shared.chmod(core, call, SECGROUP, oid, list(bits))


@rpc("one.secgroup.chown", "iii", help="Changes ownership of a security group")
async def chown(core: Core, call: Call, oid: int, uid: int, gid: int) -> int:
    return await shared.chown(core, call, SECGROUP, oid, uid, gid)
