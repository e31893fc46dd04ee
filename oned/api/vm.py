"""``one.vm.*`` (mirrors ``VirtualMachineAPI`` and ``VirtualMachinePool::allocate``).

Lifecycle actions go through the DispatchManager (``core.dispatch_manager``); in unit
tests without drivers the managers still run, with their driver messages failing as
from a missing driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family, ObjectAuth
from oned.api.vm_context import parse_context
from oned.api.vm_template import automatic_requirements, build_templates, cluster_requirements
from oned.api.vmgroup import join_template as join_vmgroup
from oned.api.vmgroup import use_request as vmgroup_use
from oned.core import Core
from oned.errors import (
    ActionError,
    AllocateError,
    ApiError,
    AuthorizationError,
    InternalError,
    NoExistsError,
    no_exists,
)
from oned.managers.dispatch.manager import Requester
from oned.managers.image.stage import Stage
from oned.managers.lifecycle import quota
from oned.managers.lifecycle.disks import acquire_all as acquire_images
from oned.managers.lifecycle.disks import image_ids
from oned.managers.lifecycle.nics import acquire_all, network_ids, secgroup_ids
from oned.managers.lifecycle.tx import QuotaRefusal, Tx
from oned.managers.lifecycle.vmlog import write_vm_log
from oned.objects.base import Op, Permissions
from oned.objects.datastore import SYSTEM_DS
from oned.objects.history import ACTION_NAMES, VMAction
from oned.objects.host import OFFLINE
from oned.objects.vm import VirtualMachine, VmState
from oned.pools.base import Locks, Pool
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml
from oned.template_merge import parse_restricted, restricted_in

if TYPE_CHECKING:
    from oned.managers.dispatch.manager import DispatchManager


def sched_xml(core: Core, vm: VirtualMachine) -> str:
    from oned.api.vm_sched import sched_xml as render

    return render(core, vm)


def backups_of_template(oid: int, vm_tmpl: Template, user_tmpl: Template) -> str:
    from oned.managers.vmm.backup_config import backups_of_template as parse

    return parse(oid, vm_tmpl, user_tmpl)


def stage_template_actions(core: Core, unit: Any, vid: int, user_tmpl: Template) -> list[int]:
    from oned.api.vm_sched import stage_template_actions as stage

    return stage(core, unit, vid, user_tmpl)


VM = Family[VirtualMachine](
    type_name="VM",
    word="virtual machine",
    pool_root="VM_POOL",
    pool=lambda core: core.vms,
    auth=shared.owned_auth("VM"),
    lockable=True,
    name_scope="none",
    restricted_attr="VM_RESTRICTED_ATTR",
)

declare(VM, "vm", "chmod", "lock", "unlock")

_OPERATION_LISTS = (
    ("VM_ADMIN_OPERATIONS", Op.ADMIN),
    ("VM_MANAGE_OPERATIONS", Op.MANAGE),
    ("VM_USE_OPERATIONS", Op.USE),
)


def dispatcher(core: Core) -> DispatchManager:
    dm = core.dispatch_manager
    if dm is None:
        raise InternalError("Dispatch manager is not running")
    return dm


def action_op(core: Core, name: str) -> Op:
    """The rights ``VM_*_OPERATIONS`` ask for action ``name`` (MANAGE if unlisted)."""
    base = name.removesuffix("-hard")
    for setting, op in _OPERATION_LISTS:
        raw = core.config.get(setting) or ""
        names = {n.strip() for n in raw.replace("\n", ",").split(",") if n.strip()}
        if name in names or base in names:
            return op
    return Op.MANAGE


def requester(call: Call) -> Requester:
    return Requester(call.uid, call.caller.gid, call.req_id)


@rpc("one.vm.allocate", "sb", required=1)
async def allocate(core: Core, call: Call, text: str, hold: bool = False) -> int:
    """Allocates a new virtual machine in OpenNebula."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, ObjectAuth("VM", -1))
    check_restricted(core, call, tmpl)
    return await create_vm(core, call, tmpl, hold)


def check_restricted(core: Core, call: Call, tmpl: Template) -> None:
    if not call.is_admin:
        found = restricted_in(tmpl, parse_restricted(core.attr_list("VM_RESTRICTED_ATTR")))
        if found is not None:
            raise AuthorizationError(f"VM Template includes a restricted attribute {found}")


async def create_vm(
    core: Core, call: Call, tmpl: Template, hold: bool, owner: tuple[int, int] | None = None
) -> int:
    """``VirtualMachinePool::allocate``: checks, quotas (VMS, CPU, MEMORY and the
    RUNNING_* ones), insert; ``InternalError`` with oned's text on a bad template.
    ``owner`` (uid, gid) replaces the caller as owner (AS_UID/AS_GID)."""
    uid, gid = owner if owner is not None else (call.uid, call.caller.gid)
    core.acl.check_all(call.caller, vmgroup_use(core, tmpl, uid))
    user = core.users.get(uid)
    group = core.groups.get(gid)
    owners: list[tuple[Pool[Any], int]] = [(core.users, uid)] if uid > 0 else []
    owners += [(core.groups, gid)] if gid > 0 else []
    vnets = network_ids(core, tmpl.vectors("NIC") + tmpl.vectors("NIC_ALIAS"), uid)
    sgs = secgroup_ids(core, tmpl, uid)
    images = image_ids(core, tmpl.vectors("DISK"), uid)
    async with Locks(
        *owners,
        *((core.vnets, n) for n in vnets),
        *((core.images, i) for i in images),
        *((core.secgroups, s) for s in sgs),
    ):
        stage = Stage(core)
        unit = stage.unit
        oid = unit.allocate(core.vms)
        leases: list[Any] = []
        try:
            name, vm_tmpl, user_tmpl, on_hold = build_templates(oid, tmpl, hold)
            sched_ids = stage_template_actions(core, unit, oid, user_tmpl)
            acquire_images(core, stage, vm_tmpl, oid, uid)
            leases = await acquire_all(core, unit, vm_tmpl, oid, uid, gid)
            backups_xml = backups_of_template(oid, vm_tmpl, user_tmpl)
            owner_vars = {
                "UID": str(uid),
                "UNAME": user.name if user is not None else "",
                "GID": str(gid),
                "GNAME": group.name if group is not None else "",
                "NAME": name,
                "VMID": str(oid),
            }
            parse_context(core, vm_tmpl, user_tmpl, owner_vars)
            join_vmgroup(core, unit, vm_tmpl, user_tmpl, uid, oid)
            automatic_requirements(vm_tmpl, cluster_requirements(vm_tmpl))
            secret = core.attr_list("VM_ENCRYPTED_ATTR")
            if secret:
                vm_tmpl = core.one_key.encrypt_template(vm_tmpl, secret)
                user_tmpl = core.one_key.encrypt_template(user_tmpl, secret)
        except Exception:
            for changes in reversed(leases):
                changes.rollback()
            unit.rollback()
            raise
        umask = core.umask_of(user) if user is not None else core.config.default_umask
        now = core.now()
        state = VmState.HOLD if on_hold else VmState.PENDING
        vm = VirtualMachine(
            oid=oid,
            name=name,
            uid=uid,
            gid=gid,
            uname=user.name if user is not None else "",
            gname=group.name if group is not None else "",
            perms=Permissions.for_new_object(uid, gid, umask, core.config.enable_other_permissions),
            state=state,
            prev_state=state,
            stime=now,
            sched_actions=sched_ids,
            backups_xml=backups_xml,
            template=vm_tmpl,
            user_template=user_tmpl,
        )
        tx = Tx(core, vm, unit, now)
        error = tx.quota_add(quota.usage(vm))
        if error:
            for changes in reversed(leases):
                changes.rollback()
            unit.rollback()
            raise AuthorizationError(error)
        unit.add(core.vms, vm)
        tx.stage_quotas()
        try:
            await stage.commit(f"allocate VM {oid}")
        except Exception:
            for changes in reversed(leases):
                changes.rollback()
            raise
    write_vm_log(core, oid, [("VM", "I", f"New state is {VmState(state).name}")], now)
    if core.scheduler_manager is not None:
        core.scheduler_manager.vm_changed(None, vm)
    return oid


@rpc("one.vm.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns virtual machine instance information."""
    vm: VirtualMachine = shared.get_authorized(core, call, VM, oid, Op.USE, ignore_lock=True)
    secret = core.attr_list("VM_ENCRYPTED_ATTR")
    if decrypt and call.is_admin and secret:
        clear = vm.copy()
        clear.template = core.one_key.decrypt_template(vm.template, secret)
        clear.user_template = core.one_key.decrypt_template(vm.user_template, secret)
        return clear.info_xml(sched_xml(core, vm))
    if vm.sched_actions:
        return vm.info_xml(sched_xml(core, vm))
    return core.vms.info_body(oid)


@rpc("one.vm.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the user template of the virtual machine."""
    shared.get_authorized(core, call, VM, oid, Op.MANAGE)
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    try:
        new = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Cannot update template. Parse error: {exc}") from exc
    async with core.vms.lock(oid):
        vm = shared.get_object(core, VM, oid)
        if not call.is_admin:
            shared.check_restricted(core, VM, vm.user_template, new, merge=mode == 1)
        vm = vm.copy()
        if mode == 0:
            vm.user_template = new
        else:
            vm.user_template.merge(new)
        secret = core.attr_list("VM_ENCRYPTED_ATTR")
        if secret:
            vm.user_template = core.one_key.encrypt_template(vm.user_template, secret)
        await shared.save(core, VM, vm, f"update VM {oid}")
    return oid


@rpc("one.vm.rename", "is")
async def rename(core: Core, call: Call, oid: int, name: str) -> int:
    """Renames a virtual machine."""
    return await shared.rename(core, call, VM, oid, name)


@rpc("one.vm.action", "si")
async def action(core: Core, call: Call, name: str, oid: int) -> int:
    """Performs an action on a virtual machine."""
    op = action_op(core, name) if name in ACTION_NAMES else Op.MANAGE
    shared.get_authorized(core, call, VM, oid, op)
    if name not in ACTION_NAMES:
        raise ActionError(f'Action "{name}" is not supported')
    try:
        await dispatcher(core).action(name, oid, requester(call))
    except QuotaRefusal:
        raise
    except ActionError as exc:
        raise ActionError(f'Error performing action "{name}": {exc.message}') from exc
    except NoExistsError as exc:
        raise no_exists("virtual machine", oid) from exc
    return oid


@rpc("one.vm.deploy", "iibis", required=2)
async def deploy(
    core: Core,
    call: Call,
    oid: int,
    hid: int,
    enforce: bool = False,
    ds_id: int = -1,
    nic_template: str = "",
) -> int:
    """Initiates the instance of the given vmid on the target host."""
    if nic_template:
        try:
            parse_str_or_xml(nic_template)
        except TemplateSyntaxError as exc:
            raise InternalError(f"Parse error: {exc}") from exc
    host = core.hosts.get(hid)
    if host is None:
        raise no_exists("host", hid)
    if host.state == OFFLINE:
        raise ActionError("Host is offline, cannot use it to deploy VM")
    vm = core.vms.get(oid)
    if vm is None:
        raise no_exists("virtual machine", oid)
    current = vm.current
    if (
        current is not None
        and current.action
        in (
            VMAction.STOP,
            VMAction.UNDEPLOY,
            VMAction.UNDEPLOY_HARD,
        )
        and ds_id == -1
    ):
        ds_id = current.ds_id
    ds = _system_ds(core, host.cluster_id, hid, ds_id)
    requests = [
        (action_op(core, "deploy"), VM.auth(core, vm)),
        (Op.MANAGE, shared.system_auth("HOST")(core, host)),
    ]
    if ds_id != -1:
        requests.append((Op.USE, shared.owned_auth("DATASTORE")(core, ds)))
    core.acl.check_all(call.caller, requests)
    tm_mad = ds.template.get("TM_MAD") or ds.tm_mad
    placement = (host.oid, host.name, host.cluster_id, host.vm_mad, tm_mad, ds.oid)
    await dispatcher(core).deploy(oid, placement, enforce or _pinned(vm))
    return oid


def _pinned(vm: VirtualMachine) -> bool:
    from oned.api.vm_template import is_pinned

    return is_pinned(vm.template)


def _system_ds(core: Core, cluster_id: int, hid: int, ds_id: int):  # type: ignore[no-untyped-def]
    if ds_id == -1:
        cluster = core.clusters.get(cluster_id)
        if cluster is None:
            raise no_exists("cluster", cluster_id)
        for did in sorted(cluster.datastores):
            ds = core.datastores.get(did)
            if ds is not None and ds.type == SYSTEM_DS:
                return ds
        raise ActionError(f"cluster [{cluster_id}] does not have any datastore of type SYSTEM_DS.")
    ds = core.datastores.get(ds_id)
    if ds is None:
        raise no_exists("datastore", ds_id)
    if ds.type != SYSTEM_DS:
        raise ActionError(
            f"Trying to use datastore [{ds_id}] to deploy the VM, but it is not of type"
            " system datastore."
        )
    if cluster_id not in ds.clusters:
        raise ActionError(
            f"datastore [{ds_id}] and host [{hid}] are not in the same cluster [{cluster_id}]."
        )
    return ds


@rpc("one.vm.monitoring", "i")
async def monitoring(core: Core, call: Call, oid: int) -> WireParts:
    """Returns the virtual machine monitoring records."""
    shared.get_authorized(core, call, VM, oid, Op.USE)
    from oned.api.vmpool import monitoring_samples  # vmpool imports this module

    return await monitoring_samples(core, [oid], -1)


@rpc("one.template.instantiate", "isbsb", required=2)
async def instantiate(
    core: Core,
    call: Call,
    oid: int,
    name: str,
    hold: bool = False,
    extra: str = "",
    persistent: bool = False,
) -> int:
    """Instantiates a new virtual machine using a template."""
    from oned.api.instantiate import prepare_instantiate

    plan = await prepare_instantiate(core, call, oid, name, hold, extra, persistent)
    try:
        return await create_vm(core, call, plan.template, plan.hold, (plan.uid, plan.gid))
    except InternalError as exc:
        raise AllocateError(exc.message, word="virtual machine") from exc


@rpc("one.vm.recover", "ii")
async def recover(core: Core, call: Call, oid: int, op: int) -> int:
    """Recovers a stuck VM."""
    names = {0: "recover", 1: "recover", 2: "retry", 3: "delete", 4: "delete-recreate", 5: "delete"}
    if op not in names:
        raise ActionError("Wrong recovery operation code")
    shared.get_authorized(core, call, VM, oid, action_op(core, names[op]))
    try:
        await dispatcher(core).recover(oid, op, requester(call))
    except NoExistsError as exc:
        raise no_exists("virtual machine", oid) from exc
    return oid


@rpc("one.vm.chown", "iii")
async def chown(core: Core, call: Call, oid: int, new_uid: int, new_gid: int) -> int:
    """Changes the ownership of a virtual machine (its quota usage moves along)."""
    vm = shared.get_object(core, VM, oid)
    if new_uid == vm.uid:
        new_uid = -1
    if new_gid == vm.gid:
        new_gid = -1
    new_user = core.users.get(new_uid) if new_uid >= 0 else None
    if new_uid >= 0 and new_user is None:
        raise no_exists("user", new_uid)
    new_group = core.groups.get(new_gid) if new_gid >= 0 else None
    if new_gid >= 0 and new_group is None:
        raise no_exists("group", new_gid)
    requests = [(Op.MANAGE, VM.auth(core, vm))]
    if new_user is not None:
        requests.append((Op.MANAGE, shared.user_auth(core, new_user)))
    if new_group is not None:
        requests.append((Op.USE, shared.group_auth(core, new_group)))
    core.acl.check_all(call.caller, requests)
    if new_user is None and new_group is None:
        return oid
    owners: list[tuple[Pool[Any], int]] = [(core.users, u) for u in {vm.uid, new_uid} if u > 0]
    owners += [(core.groups, g) for g in {vm.gid, new_gid} if g > 0]
    async with Locks((core.vms, oid), *owners):
        vm = shared.get_object(core, VM, oid).copy()
        tx = Tx(core, vm, core.unit(), core.now())
        moving = vm.state != VmState.DONE
        amounts = quota.usage(vm, running=vm.state not in quota.OFF_STATES)
        if moving:
            tx.quota_change(amounts, count=False)
        if new_user is not None:
            vm.uid, vm.uname = new_user.oid, new_user.name
        if new_group is not None:
            vm.gid, vm.gname = new_group.oid, new_group.name
        if moving:
            error = tx.quota_add(amounts)
            if error:
                raise AuthorizationError(error)
        tx.stage_quotas()
        tx.unit.save(core.vms, vm)
        await tx.unit.commit(f"chown VM {oid}")
    return oid
