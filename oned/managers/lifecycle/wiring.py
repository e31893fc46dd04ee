"""Builds the VM managers (DM, LCM, VMM, TM) and wires them to each other and to the
``Core`` (``Nebula::start``/``init_managers`` for these four)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.managers.dispatch.manager import DispatchManager
from oned.managers.lifecycle.manager import LifeCycleManager
from oned.managers.transfer.manager import TransferManager
from oned.managers.vmm.manager import VirtualMachineManager

if TYPE_CHECKING:
    from oned.core import Core


def attach_vm_managers(core: Core, drivers: Any = None) -> LifeCycleManager:
    """Create the managers (without drivers their messages fail as from a missing one)."""
    vmm = VirtualMachineManager(core, drivers)
    tm = TransferManager(core, drivers)
    lcm = LifeCycleManager(core, vmm, tm)
    core.vm_manager = vmm
    core.transfer_manager = tm
    core.lifecycle_manager = lcm
    core.dispatch_manager = DispatchManager(core, lcm)
    from oned.managers.scheduler.manager import SchedulerManager

    core.scheduler_manager = SchedulerManager(core, drivers)
    return lcm


def use_drivers(core: Core, drivers: Any) -> LifeCycleManager:
    """Point the VM managers at the driver manager (``build_managers``)."""
    lcm: LifeCycleManager | None = core.lifecycle_manager
    if lcm is None:
        lcm = attach_vm_managers(core, drivers)
    lcm.vmm.drivers = drivers
    lcm.tm.drivers = drivers
    core.scheduler_manager.drivers = drivers
    return lcm
