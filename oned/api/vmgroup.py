"""``one.vmgroup.*`` and ``one.vmgrouppool.info`` (mirrors ``VMGroupAPI``), and the VM
side of a group: ``VMGROUP=[VMGROUP_ID|VMGROUP_NAME, ROLE]`` in a VM template joins a
role at allocation (``VMGroupPool::vmgroup_attribute``), ``one.vm.vmgroupadd/del``
move a VM in and out, and a VM leaves its role when it is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import ActionError, InternalError, OneError, no_exists
from oned.managers.lifecycle.vmgroups import group_of, join, leave
from oned.objects.base import Op, Permissions
from oned.objects.vm import VmState
from oned.objects.vmgroup import MAX_ROLES, VMGroup, VMGroupError
from oned.pools.base import Unit
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml

if TYPE_CHECKING:
    from oned.objects.vm import VirtualMachine


def _on_update(_core: Core, _unit: Unit, group: VMGroup) -> None:
    """``VMGroup::post_update_template``: no VMs, ROLE stays out, rules consistent."""
    vms = group.vm_count()
    if vms > 0:
        raise InternalError(f"VM Group has {vms} VMs")
    group.template.erase("ROLE")
    _consistent(group, InternalError)


VMGROUP = Family[VMGroup](
    type_name="VMGROUP",
    word="vm group",
    pool_root="VM_GROUP_POOL",
    pool=lambda core: core.vmgroups,
    auth=shared.owned_auth("VMGROUP"),
    lockable=True,
    name_scope="owner",
    on_update=_on_update,
)

declare(
    VMGROUP, "vmgroup", "info", "update", "rename", "chmod", "chown", "lock", "unlock", "delete"
)


def _consistent(group: VMGroup, error: type[OneError]) -> None:
    try:
        group.check_consistency()
    except VMGroupError as exc:
        raise error(str(exc)) from exc


@rpc("one.vmgroup.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new VM group."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("VMGROUP", -1))
    caller = call.caller
    async with core.vmgroups.lock(-1):
        name = tmpl.get("NAME") or ""
        shared.check_new_name(core, VMGROUP, name, caller.uid, "VMGroup")
        tmpl.erase("NAME")
        roles = tmpl.vectors("ROLE")
        tmpl.erase("ROLE")
        group = VMGroup(
            oid=-1,
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
        if len(roles) > MAX_ROLES:
            raise InternalError("Maximum number of roles in a VM Group reached")
        try:
            for role in roles:
                group.add_role(role)
        except VMGroupError as exc:
            raise InternalError(str(exc)) from exc
        _consistent(group, InternalError)
        unit = core.unit()
        group.oid = unit.allocate(core.vmgroups)
        unit.add(core.vmgroups, group)
        await unit.commit(f"allocate VM group {name}")
    return group.oid


@rpc("one.vmgrouppool.info", "iii")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the VM group pool."""
    groups = shared.filtered(core, call, VMGROUP, filter_flag, start, end)
    return shared.pool_document("VM_GROUP_POOL", groups, core.vmgroups)


def _role_vector(text: str) -> dict[str, str]:
    try:
        tmpl = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise ActionError(exc.parse_error) from exc
    roles = tmpl.vectors("ROLE")
    if not roles:
        raise ActionError("No ROLE attribute in template")
    return dict(roles[0])


async def _edit_roles(core: Core, call: Call, oid: int, change: Any) -> int:
    shared.get_authorized(core, call, VMGROUP, oid, Op.MANAGE)
    async with core.vmgroups.lock(oid):
        group = shared.get_object(core, VMGROUP, oid).copy()
        try:
            change(group)
            group.check_consistency()
        except VMGroupError as exc:
            raise ActionError(str(exc)) from exc
        await shared.save(core, VMGROUP, group, f"roles of VM group {oid}")
    return oid


@rpc("one.vmgroup.roleadd", "is")
async def roleadd(core: Core, call: Call, oid: int, text: str) -> int:
    """Adds a role to a VM group."""
    shared.get_authorized(core, call, VMGROUP, oid, Op.MANAGE)
    vector = _role_vector(text)
    return await _edit_roles(core, call, oid, lambda g: g.add_role(vector))


@rpc("one.vmgroup.roledelete", "ii")
async def roledelete(core: Core, call: Call, oid: int, role_id: int) -> int:
    """Deletes a role from a VM group."""

    def drop(group: VMGroup) -> None:
        role = group.role(role_id)
        if role is None:
            raise VMGroupError(f"Unable to delete role {role_id}, the role doesn't exists")
        if group.vms_of(role):
            raise VMGroupError(f"Unable to delete role {role_id}, the role has assigned VMs ")
        group.roles.remove(role)

    return await _edit_roles(core, call, oid, drop)


@rpc("one.vmgroup.roleupdate", "iis")
async def roleupdate(core: Core, call: Call, oid: int, role_id: int, text: str) -> int:
    """Updates a role of a VM group."""
    shared.get_authorized(core, call, VMGROUP, oid, Op.MANAGE)
    vector = _role_vector(text)

    def update(group: VMGroup) -> None:
        role = group.role(role_id)
        if role is None:
            raise VMGroupError(f"VMGroup {oid} doesn't have role {role_id}")
        if group.vms_of(role):
            raise VMGroupError(f"VMGroup {oid} Role {role_id} has VMs, unable to update")
        new_name = vector.get("NAME", "")
        if new_name and new_name != role.get("NAME"):
            if group.role(new_name) is not None:
                raise VMGroupError(
                    f"VMGroup {oid} Role {role_id} can not update name, role with name "
                    f"{new_name} already exists"
                )
        role.update({k: v for k, v in vector.items() if k not in ("VMS", "ID")})

    return await _edit_roles(core, call, oid, update)


# -- the VM side ------------------------------------------------------------------------


def use_request(core: Core, tmpl: Template, uid: int) -> list[tuple[Op, Any]]:
    """``VMGroupPool::authorize``: USE on the group a VM template names, if it exists."""
    vectors = tmpl.vectors("VMGROUP")
    group = group_of(core, vectors[0], uid) if vectors else None
    return [] if group is None else [(Op.USE, VMGROUP.auth(core, group))]


def join_template(
    core: Core, unit: Unit, vm_tmpl: Template, user_tmpl: Template, uid: int, vid: int
) -> None:
    """``VirtualMachine::get_vmgroup`` at allocation: the first VMGROUP of the user
    template joins its role and moves to the VM template (``InternalError`` if not)."""
    vectors = user_tmpl.vectors("VMGROUP") or vm_tmpl.vectors("VMGROUP")
    if not vectors:
        return
    user_tmpl.erase("VMGROUP")
    vm_tmpl.erase("VMGROUP")
    try:
        vm_tmpl.add("VMGROUP", join(core, unit, dict(vectors[0]), uid, vid))
    except VMGroupError as exc:
        raise InternalError(str(exc)) from exc


@rpc("one.vm.vmgroupadd", "iis")
async def vmgroupadd(core: Core, call: Call, vid: int, oid: int, role: str) -> int:
    """Adds a VM to a VM group role."""
    from oned.api.vm import VM, action_op

    shared.get_authorized(core, call, VM, vid, action_op(core, "vmgroup"))
    group = core.vmgroups.get(oid)
    if group is None:
        raise no_exists("vm group", oid)
    core.acl.check(call.caller, Op.USE, VMGROUP.auth(core, group))
    async with core.vms.lock(vid), core.vmgroups.lock(oid):
        vm = shared.get_object(core, VM, vid).copy()
        current = vm.current
        if vm.state == VmState.ACTIVE and current is not None and current.hid != -1:
            error = check_affinity(core, shared.get_object(core, VMGROUP, oid), vm, role)
            if error:
                raise ActionError(error)
        unit = core.unit()
        leave(core, unit, vm)
        try:
            vector = join(core, unit, {"VMGROUP_ID": str(oid), "ROLE": role}, vm.uid, vid)
        except VMGroupError as exc:
            raise ActionError(str(exc)) from exc
        vm.template.erase("VMGROUP")
        vm.template.add("VMGROUP", vector)
        unit.save(core.vms, vm)
        await unit.commit(f"VM {vid} joins VM group {oid}")
    return vid


@rpc("one.vm.vmgroupdel", "i")
async def vmgroupdel(core: Core, call: Call, vid: int) -> int:
    """Removes a VM from its VM group."""
    from oned.api.vm import VM, action_op

    shared.get_authorized(core, call, VM, vid, action_op(core, "vmgroup"))
    async with core.vms.lock(vid):
        vm = shared.get_object(core, VM, vid).copy()
        unit = core.unit()
        leave(core, unit, vm)
        vm.template.erase("VMGROUP")
        unit.save(core.vms, vm)
        await unit.commit(f"VM {vid} leaves its VM group")
    return vid


def _host_of(core: Core, vid: int) -> int:
    other = core.vms.get(vid)
    if other is None or other.state != VmState.ACTIVE or other.current is None:
        return -1
    return other.current.hid


def check_affinity(core: Core, group: VMGroup, vm: VirtualMachine, role_name: str) -> str:
    """``VMGroup::check_affinity``: "" when the VM's host keeps every rule, else why."""
    role = group.role(role_name)
    if role is None:
        return "Role does not exist in VM Group"
    assert vm.current is not None
    vid, my_hid = vm.oid, vm.current.hid
    policy = role.get("POLICY", "").upper()
    for other in group.vms_of(role):
        hid = -1 if other == vid else _host_of(core, other)
        if hid == -1:
            continue
        if policy == "AFFINED" and hid != my_hid:
            return (
                f"VM {vid} is on host {my_hid} but role {role_name} is AFFINED and VM "
                f"{other} is on host {hid}"
            )
        if policy == "ANTI_AFFINED" and hid == my_hid:
            return (
                f"VM {vid} is on host {my_hid} but role {role_name} is ANTI_AFFINED and VM "
                f"{other} is on the same host"
            )
    my_id = int(role["ID"])
    for rules, word in ((group.rules("AFFINED"), "AFFINED"), (group.rules("ANTI_AFFINED"), "")):
        for rule in rules:
            if my_id not in rule:
                continue
            for rid in sorted(rule - {my_id}):
                other_role = group.role(rid)
                if other_role is None:
                    continue
                for other in group.vms_of(other_role):
                    hid = _host_of(core, other)
                    if hid == -1:
                        continue
                    if word and hid != my_hid:
                        return (
                            f"VM {vid} is on host {my_hid} but it is AFFINED with role "
                            f"{other_role['NAME']} and VM {other} is on host {hid}"
                        )
                    if not word and hid == my_hid:
                        return (
                            f"VM {vid} is on host {my_hid} but it is ANTI_AFFINED with role "
                            f"{other_role['NAME']} and VM {other} is on the same host"
                        )
    return ""
