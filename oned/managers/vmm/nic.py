"""VMM messages of NIC hotplug and security groups (mirrors ``trigger_attach_nic``,
``trigger_detach_nic``, ``updatesg``, ``updatenic`` of ``VirtualMachineManager.cc`` and
``_updatesg``/``_updatenic`` of ``VirtualMachineManagerProtocol.cc``).

ATTACHNIC and DETACHNIC carry the CONTEXT command (the context disk is rebuilt with the
new ``ETH<n>_*`` variables); UPDATESG carries ``SECURITY_GROUP_ID`` and UPDATENIC
``VIRTUAL_NETWORK_ID``, which the driver echoes as the first word of its answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.drivers.families import Family
from oned.drivers.message import b64encode
from oned.log import logger
from oned.objects.base import esc

if TYPE_CHECKING:
    from oned.core import Core
    from oned.drivers.message import DriverMessage
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.managers.vmm.manager import VirtualMachineManager
    from oned.objects.vm import VirtualMachine

#: Replies whose first word names the object they are about.
NIC_REPLIES = ("UPDATESG", "UPDATENIC")

_log = logger("VMM")


def _tag(name: str, value: str) -> str:
    return f"<{name}>{value}</{name}>" if value else f"<{name}/>"


def is_cold_nic_attach(core: Core, vm_mad: str) -> bool:
    """``VirtualMachineManagerDriver::is_cold_nic_attach`` (COLD_NIC_ATTACH of VM_MAD)."""
    found = [c for c in core.config.vectors("VM_MAD") if c.get("NAME", "") == vm_mad]
    return bool(found) and found[-1].get("COLD_NIC_ATTACH", "").strip().lower() in ("yes", "true")


def message(
    vmm: VirtualMachineManager,
    vm: VirtualMachine,
    *,
    tm_command: str = "",
    disk_path: str = "",
    sg_id: int = -1,
    vnet_id: int = -1,
) -> str:
    """``format_message`` with the NIC/SG fields."""
    current = vm.current
    assert current is not None
    ds = vmm.core.datastores.get(current.ds_id)
    ds_xml = vmm.core.datastores.body(ds.oid) if ds is not None else ""
    extra = f"<SECURITY_GROUP_ID>{sg_id}</SECURITY_GROUP_ID>" if sg_id != -1 else ""
    extra += f"<VIRTUAL_NETWORK_ID>{vnet_id}</VIRTUAL_NETWORK_ID>" if vnet_id != -1 else ""
    doc = (
        f"<VMM_DRIVER_ACTION_DATA><HOST>{esc(current.hostname)}</HOST><MIGR_HOST/>"
        f"{_tag('DEPLOY_ID', esc(vm.deploy_id))}<LOCAL_DEPLOYMENT_FILE/>"
        f"<REMOTE_DEPLOYMENT_FILE/><CHECKPOINT_FILE/>{_tag('TM_COMMAND', esc(tm_command))}"
        f"<TM_COMMAND_ROLLBACK/>{_tag('DISK_TARGET_PATH', esc(disk_path))}{extra}"
        f"{vm.to_xml()}{ds_xml}</VMM_DRIVER_ACTION_DATA>"
    )
    return b64encode(doc)


def _hotplug(vmm: VirtualMachineManager, action: str, vm: VirtualMachine) -> None:
    command = vmm.context_command(vm)
    disk_path = ""
    context = vm.template.get_vector("CONTEXT")
    if command and context is not None:
        disk_path = f"{vmm.remote_dir(vm)}/disk.{context.get('DISK_ID', '0')}"
    vmm._send(action, vm, message(vmm, vm, tm_command=command, disk_path=disk_path))


def attach_nic(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    """ATTACHNIC (a missing driver fails the attach as oned's ``error_driver``)."""
    _hotplug(vmm, "ATTACHNIC", vm)


def detach_nic(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    _hotplug(vmm, "DETACHNIC", vm)


def _send_quiet(vmm: VirtualMachineManager, action: str, vm: VirtualMachine, payload: str) -> bool:
    current = vm.current
    if vmm.drivers is None or current is None:
        return False
    return bool(vmm.drivers.send(Family.VMM, action, vm.oid, payload, name=current.vm_mad))


def updatesg(vmm: VirtualMachineManager, vm: VirtualMachine, sg_id: int) -> None:
    """UPDATESG; nothing is sent without history or driver (oned's -1, ignored)."""
    if vm.current is not None:
        _send_quiet(vmm, "UPDATESG", vm, message(vmm, vm, sg_id=sg_id))


def updatenic(vmm: VirtualMachineManager, vm: VirtualMachine, vnet_id: int) -> None:
    if vm.current is not None:
        _send_quiet(vmm, "UPDATENIC", vm, message(vmm, vm, vnet_id=vnet_id))


def on_reply(lcm: LifeCycleManager, msg: DriverMessage) -> None:
    """``_updatesg``/``_updatenic``: the first word of the answer is the object id."""
    words = msg.payload.split()
    try:
        oid = int(words[0]) if words else None
    except ValueError:
        oid = None
    if oid is None:
        what = "security group" if msg.action == "UPDATESG" else "Virtual Network"
        _log.error("Missing or wrong {what} id in driver message", what=what)
        return
    text = msg.action
    if msg.payload and not msg.payload.startswith("-"):
        text += f": {msg.payload}"
    if msg.action == "UPDATESG":
        lcm.schedule(lcm.updatesg_reply, msg.oid, oid, msg.success, text)
    else:
        lcm.schedule(lcm.updatenic_reply, msg.oid, oid, msg.success, text)
