"""``one.vrouter.*`` and ``one.vrouterpool.info`` (mirrors ``VirtualRouterAPI`` and
``VirtualRouter``).

A router keeps NICs (floating IPs leased to the router itself, see
``oned.managers.ipam.vrouter``); ``instantiate`` creates N VMs from a ``VROUTER=YES``
template with those NICs (``VROUTER_IP``/``VROUTER_MAC``...), ``VROUTER_ID`` and the
keepalived settings, on hold until all exist. Deleting a router terminates its VMs,
chmod reaches them, and NIC attach/detach goes to the router and then to each VM.
"""

from __future__ import annotations

from typing import Any

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import ActionError, InternalError, NoExistsError, no_exists
from oned.log import logger
from oned.managers.ipam.nic import network_of, nic_locks
from oned.managers.ipam.vrouter import acquire_router_nic, release_router_nic
from oned.objects.base import Op, Permissions
from oned.objects.vnet import LeaseChanges
from oned.objects.vrouter import VirtualRouter, is_floating
from oned.pools.base import Unit
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml

log = logger("ReM")

VROUTER = Family[VirtualRouter](
    type_name="VROUTER",
    word="virtual router",
    pool_root="VROUTER_POOL",
    pool=lambda core: core.vrouters,
    auth=shared.owned_auth("VROUTER"),
    lockable=True,
    name_scope="none",
)

declare(VROUTER, "vrouter", "info", "rename", "chown", "lock", "unlock")


def _net_requests(core: Core, nics: list[dict[str, str]], uid: int) -> list[tuple[Op, Any]]:
    """``authorize_vrouter``: USE on the network of every NIC."""
    requests: list[tuple[Op, Any]] = []
    for nic in nics:
        vn = network_of(core, nic, uid)
        if vn is not None:
            requests.append((Op.USE, shared.owned_auth("NET")(core, vn)))
    return requests


async def _acquire(
    core: Core, unit: Unit, router: VirtualRouter, nics: list[tuple[int, dict[str, str]]]
) -> list[LeaseChanges]:
    """Lease the router's NICs (``get_network_leases``), rolled back on any failure."""
    done: list[LeaseChanges] = []
    try:
        for nic_id, nic in nics:
            filled, changes = await acquire_router_nic(
                core, unit, nic, nic_id, router.uid, router.gid, router.oid
            )
            done.append(changes)
            router.template.add("NIC", filled)
    except Exception:
        for changes in reversed(done):
            changes.rollback()
        raise
    return done


@rpc("one.vrouter.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new virtual router."""
    tmpl = shared.parse_template(text)
    caller = call.caller
    nics = tmpl.vectors("NIC")
    requests = [(Op.CREATE, shared.ObjectAuth("VROUTER", -1))]
    try:
        requests += _net_requests(core, nics, caller.uid)
    except InternalError:
        pass  # the lease step reports the missing network
    core.acl.check_all(caller, requests)
    name = tmpl.get("NAME") or ""
    problem = shared.validate_name(name)
    if problem:
        raise InternalError(problem)
    tmpl.erase("NAME")
    tmpl.erase("NIC")
    async with nic_locks(core, nics, caller.uid):
        unit = core.unit()
        oid = unit.allocate(core.vrouters)
        router = VirtualRouter(
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
        try:
            leases = await _acquire(core, unit, router, list(enumerate(nics)))
        except Exception:
            unit.rollback()
            raise
        unit.add(core.vrouters, router)
        try:
            await unit.commit(f"allocate virtual router {oid}")
        except Exception:
            for changes in reversed(leases):
                changes.rollback()
            raise
    return oid


@rpc("one.vrouterpool.info", "iii")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the virtual router pool."""
    routers = shared.filtered(core, call, VROUTER, filter_flag, start, end)
    return shared.pool_document("VROUTER_POOL", routers, core.vrouters)


@rpc("one.vrouter.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the virtual router template (its NICs are kept as they are)."""
    shared.get_authorized(core, call, VROUTER, oid, Op.MANAGE)
    if mode not in (0, 1):
        raise ActionError("Wrong update type")  # validated by SharedAPI::update
    try:
        new = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(exc.parse_error) from exc
    new.erase("NIC")
    async with core.vrouters.lock(oid):
        router = shared.get_object(core, VROUTER, oid).copy()
        if mode == 0:
            for nic in router.nics():
                new.add("NIC", nic)
            router.template = new
        else:
            router.template.merge(new)
        await shared.save(core, VROUTER, router, f"update virtual router {oid}")
    return oid


@rpc("one.vrouter.chmod", "i" * 10)
async def chmod(core: Core, call: Call, oid: int, *bits: int) -> int:
    """Changes the permissions of the virtual router and of its VMs."""
    from oned.api.vm import VM

    router = shared.get_object(core, VROUTER, oid)
    await shared.chmod(core, call, VROUTER, oid, list(bits))
    failure: Exception | None = None
    for vid in sorted(router.vms):
        try:
            await shared.chmod(core, call, VM, vid, list(bits))
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise failure
    return oid


@rpc("one.vrouter.delete", "i", required=1)
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a virtual router: its leases go back and its VMs are terminated."""
    router = shared.get_authorized(core, call, VROUTER, oid, Op.MANAGE)
    async with nic_locks(core, router.nics(), router.uid), core.vrouters.lock(oid):
        router = shared.get_object(core, VROUTER, oid)
        unit = core.unit()
        released: list[LeaseChanges] = []
        for nic in router.nics():
            released.append(await release_router_nic(core, unit, nic, oid, router.uid, router.gid))
        unit.drop(core.vrouters, oid)
        shared.drop_resource_rules(core, unit, "VROUTER", oid)
        try:
            await unit.commit(f"delete virtual router {oid}")
        except Exception:
            for changes in reversed(released):
                changes.rollback()
            raise
    await _shutdown_vms(core, call, sorted(router.vms))
    return oid


async def _shutdown_vms(core: Core, call: Call, vms: list[int]) -> None:
    """``shutdown_vms``: terminate-hard each VM, or delete it where that is refused."""
    from oned.api.vm import dispatcher, requester

    dm = dispatcher(core)
    who = requester(call)
    for vid in vms:
        try:
            await dm.action("terminate-hard", vid, who)
        except ActionError:
            try:
                await dm.recover(vid, 3, who)
            except Exception as exc:
                log.error("Cannot delete VM {vid}: {exc}", vid=vid, exc=exc)
        except NoExistsError:
            continue


@rpc("one.vrouter.instantiate", "iiisbs")
async def instantiate(
    core: Core,
    call: Call,
    oid: int,
    n_vms: int,
    template_id: int,
    name: str,
    hold: bool,
    extra: str,
) -> int:
    """Instantiates N VMs of the virtual router from a virtual router template."""
    from oned.api.instantiate import _helper
    from oned.api.vm import create_vm, dispatcher, requester

    router = shared.get_object(core, VROUTER, oid)
    extra_tmpl = router.vm_template()
    if template_id == -1:
        raw = router.template.get("TEMPLATE_ID") or ""
        template_id = int(raw) if raw.strip().lstrip("-").isdigit() else -1
    if template_id == -1:
        raise ActionError(
            "A template ID was not provided, and the virtual router does not have a default one"
        )
    shared.authorize(core, call, VROUTER, router, Op.MANAGE)
    source = core.templates.get(template_id)
    if source is None:
        raise no_exists("virtual machine template", template_id)
    if not source.is_vrouter():
        raise ActionError("Only virtual router templates are allowed")
    pattern = name or f"vr-{router.name}-%i"
    dm = dispatcher(core)
    who = requester(call)
    vms: list[int] = []
    for i in range(n_vms):
        try:
            plan = _helper(
                core, call, template_id, pattern.replace("%i", str(i)), True, extra, extra_tmpl
            )
            vid = await create_vm(core, call, plan.template, True, (plan.uid, plan.gid))
        except Exception:
            for done in vms:
                await dm.recover(done, 3, who)
            raise
        vms.append(vid)
    async with core.vrouters.lock(oid):
        current = core.vrouters.get(oid)
        if current is not None:
            current = current.copy()
            current.vms.update(vms)
            current.template.set("TEMPLATE_ID", str(template_id))
            await shared.save(core, VROUTER, current, f"instantiate virtual router {oid}")
    if not hold:
        for vid in vms:
            await dm.action("release", vid, who)
    return oid


@rpc("one.vrouter.attachnic", "is")
async def attachnic(core: Core, call: Call, oid: int, text: str) -> int:
    """Attaches a NIC to the virtual router and to each of its VMs."""
    try:
        tmpl = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(exc.parse_error) from exc
    router = shared.get_object(core, VROUTER, oid)
    nics = tmpl.vectors("NIC")
    requests = [(Op.MANAGE, VROUTER.auth(core, router))]
    try:
        requests += _net_requests(core, nics, call.uid)
    except InternalError:
        pass
    core.acl.check_all(call.caller, requests)
    if tmpl.vectors("NIC_ALIAS"):
        raise ActionError("Alias can't be attached to virtual router.")
    if len(nics) != 1:
        raise ActionError("The template must contain one NIC attribute")
    async with nic_locks(core, nics, router.uid), core.vrouters.lock(oid):
        router = shared.get_object(core, VROUTER, oid).copy()
        nic_id = max((int(n.get("NIC_ID", "-1") or -1) for n in router.nics()), default=-1) + 1
        unit = core.unit()
        try:
            leases = await _acquire(core, unit, router, [(nic_id, nics[0])])
        except InternalError as exc:
            unit.rollback()
            raise ActionError(exc.message) from exc
        except Exception:
            unit.rollback()
            raise
        unit.save(core.vrouters, router)
        try:
            await unit.commit(f"attach NIC to virtual router {oid}")
        except Exception:
            for changes in reversed(leases):
                changes.rollback()
            raise
        added = router.nics()[-1]
    vm_nic = Template()
    from oned.objects.vrouter import nic_for_vm

    vm_nic.add("NIC", nic_for_vm(added))
    from oned.api.vm_nic import attach_nic

    for vid in sorted(router.vms):
        try:
            await attach_nic(core, call, vid, vm_nic)
        except Exception as exc:
            raise ActionError(str(getattr(exc, "message", exc))) from exc
    return oid


@rpc("one.vrouter.detachnic", "ii")
async def detachnic(core: Core, call: Call, oid: int, nic_id: int) -> int:
    """Detaches a NIC from the virtual router and from each of its VMs."""
    router = shared.get_authorized(core, call, VROUTER, oid, Op.MANAGE)
    async with nic_locks(core, router.nics(), router.uid), core.vrouters.lock(oid):
        router = shared.get_object(core, VROUTER, oid).copy()
        found = [n for n in router.nics() if n.get("NIC_ID") == str(nic_id)]
        if not found:
            raise ActionError(f"NIC with NIC_ID {nic_id} does not exist.")
        unit = core.unit()
        changes = await release_router_nic(core, unit, found[0], oid, router.uid, router.gid)
        router.template.items = [
            (n, v)
            for n, v in router.template.items
            if not (n == "NIC" and isinstance(v, dict) and v.get("NIC_ID") == str(nic_id))
        ]
        unit.save(core.vrouters, router)
        try:
            await unit.commit(f"detach NIC {nic_id} of virtual router {oid}")
        except Exception:
            changes.rollback()
            raise
    from oned.api.vm_nic import detach_nic

    for vid in sorted(router.vms):
        await detach_nic(core, call, vid, nic_id)
    return oid


__all__ = ["VROUTER", "is_floating"]
