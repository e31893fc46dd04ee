"""``one.vm.schedadd/schedupdate/scheddelete`` (scheduled actions; mirrors
``VirtualMachineAPI::sched_add``, ``sched_update``, ``sched_delete``).

A scheduled action is an object of ``schedaction_pool`` whose id the VM lists in
``SCHED_ACTIONS``; ``one.vm.info`` shows the actions at the end of ``TEMPLATE``. A
relative ``TIME`` (``+N``) counts from the VM's ``STIME``. The VM and the action change
in one transaction.
"""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.vm import VM, action_op
from oned.core import Core
from oned.errors import ActionError, InternalError, NoExistsError, no_exists
from oned.objects.schedaction import SchedActionError
from oned.objects.vm import VirtualMachine, VmState
from oned.pools.base import Locks, Unit
from oned.template import Template


def sched_xml(core: Core, vm: VirtualMachine) -> str:
    """The VM's scheduled actions as ``one.vm.info`` ends its TEMPLATE with them."""
    if not vm.sched_actions:
        return ""
    return core.sched_actions.dump(vm.sched_actions)


def stage_template_actions(core: Core, unit: Unit, vid: int, user_tmpl: Template) -> list[int]:
    """``pool_allocate``: the SCHED_ACTION vectors of an allocate template become
    scheduled actions of the new VM (relative times from now, the VM's STIME).

    Raises:
        InternalError: with oned's text for the first malformed vector.
    """
    vectors = user_tmpl.vectors("SCHED_ACTION")
    if not vectors:
        return []
    user_tmpl.erase("SCHED_ACTION")
    origin = core.now()
    ids = []
    for va in vectors:
        try:
            ids.append(core.sched_actions.stage_new(unit, "VM", vid, origin, va).oid)
        except SchedActionError as exc:
            raise InternalError(str(exc)) from exc
    return ids


def _sched_vector(text: str) -> dict[str, str] | None:
    tmpl = shared.parse_template(text)
    return tmpl.get_vector("SCHED_ACTION")


@rpc("one.vm.schedadd", "is")
async def schedadd(core: Core, call: Call, oid: int, text: str) -> int:
    """Adds a scheduled action to a virtual machine."""
    vm: VirtualMachine = shared.get_authorized(core, call, VM, oid, action_op(core, "sched-action"))
    if vm.state == VmState.DONE:
        raise InternalError(
            f"Unable to create Scheduled Action for Virtual Machine {oid}, it's in DONE state",
            oid,
            keep_id=True,
        )
    va = _sched_vector(text)
    if va is None:
        raise ActionError("No SCHED_ACTION attribute in template")
    pool = core.sched_actions
    async with core.vms.lock(oid):
        vm = core.vms.get(oid)  # type: ignore[assignment]
        if vm is None:
            raise no_exists("virtual machine", oid)
        unit = core.unit()
        try:
            sa = pool.stage_new(unit, "VM", oid, vm.stime, va)
        except SchedActionError as exc:
            unit.rollback()
            raise ActionError(str(exc)) from exc
        vm = vm.copy()
        vm.sched_actions.append(sa.oid)
        unit.save(core.vms, vm)
        await unit.commit(f"schedadd VM {oid}")
    return sa.oid


@rpc("one.vm.schedupdate", "iis")
async def schedupdate(core: Core, call: Call, oid: int, sa_id: int, text: str) -> int:
    """Updates a scheduled action of a virtual machine."""
    shared.get_authorized(core, call, VM, oid, action_op(core, "sched-action"))
    va = _sched_vector(text)
    if va is None:
        raise InternalError("No SCHED_ACTION attribute in template")
    pool = core.sched_actions
    async with Locks((core.vms, oid), (pool, sa_id)):
        vm = core.vms.get(oid)
        if vm is None:
            raise no_exists("virtual machine", oid)
        if sa_id not in vm.sched_actions:
            raise InternalError(f"SCHED_ACTION with id = {sa_id} doesn't exist")
        sa = pool.get(sa_id)
        if sa is None:
            raise InternalError(
                f"Unable to get Scheduled Action id = {sa_id}. It doesn't exist or is malformed."
            )
        sa = sa.copy()
        try:
            sa.parse(va, vm.stime)
        except SchedActionError as exc:
            raise InternalError(str(exc)) from exc
        unit = core.unit()
        pool.save_in(unit, sa)
        await unit.commit(f"schedupdate {sa_id} of VM {oid}")
    return sa_id


@rpc("one.vm.scheddelete", "ii")
async def scheddelete(core: Core, call: Call, oid: int, sa_id: int) -> int:
    """Deletes a scheduled action of a virtual machine."""
    shared.get_authorized(core, call, VM, oid, action_op(core, "sched-action"))
    pool = core.sched_actions
    async with Locks((core.vms, oid), (pool, sa_id)):
        vm = core.vms.get(oid)
        if vm is None:
            raise no_exists("virtual machine", oid)
        if sa_id not in vm.sched_actions:
            raise NoExistsError("", sa_id, "scheduled action")
        vm = vm.copy()
        vm.sched_actions.remove(sa_id)
        unit = core.unit()
        unit.save(core.vms, vm)
        if pool.get(sa_id) is not None:
            unit.drop(pool, sa_id)
        await unit.commit(f"scheddelete {sa_id} of VM {oid}")
    return oid
