"""VMM actions of system snapshots, live resize, live updateconf and guest exec
(mirrors ``VirtualMachineManager::trigger_snapshot_create/revert/delete``,
``trigger_resize``, ``trigger_update_conf``, ``trigger_exec``/``trigger_exec_cancel``).

Each sends ``ACTION <vid> <b64 VMM_DRIVER_ACTION_DATA>`` with the VM's DEPLOY_ID to the
VM_MAD of its current history record; UPDATECONF carries the TM ``CONTEXT`` command and
the context disk path, as DEPLOY does. Replies are routed by ``ROUTES`` in
``oned.managers.vmm.manager`` to the LifeCycleManager (``LcmSystem``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.vmm.manager import VirtualMachineManager
    from oned.objects.vm import VirtualMachine


def vm_mad_flag(core: Core, vm_mad: str, name: str) -> bool:
    """A boolean of the VM_MAD section (``KEEP_SNAPSHOTS``, ``LIVE_RESIZE``...)."""
    value = ""
    for vector in core.config.template.vectors("VM_MAD"):
        if vector.get("NAME", "") == vm_mad:
            value = vector.get(name, "")
    return value.strip().upper() in ("YES", "TRUE")


def _simple(vmm: VirtualMachineManager, action: str, vm: VirtualMachine) -> None:
    if vm.current is None:
        vmm._local_failure(vm.oid, action, f"{action.lower()}_action, VM has no history")
        return
    vmm._send(action, vm, vmm.format_message(vm))


def snapshot_create(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    _simple(vmm, "SNAPSHOTCREATE", vm)


def snapshot_revert(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    _simple(vmm, "SNAPSHOTREVERT", vm)


def snapshot_delete(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    _simple(vmm, "SNAPSHOTDELETE", vm)


def resize(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    _simple(vmm, "RESIZE", vm)


def exec_command(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    _simple(vmm, "EXEC", vm)


def exec_cancel(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    _simple(vmm, "EXEC_CANCEL", vm)


def update_conf(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    """UPDATECONF with the context disk rebuilt (``do_context_command``)."""
    current = vm.current
    if current is None:
        vmm._local_failure(vm.oid, "UPDATECONF", "update_conf_action, VM has no history")
        return
    command = vmm.context_command(vm)
    disk_path = ""
    if command:
        context = vm.template.get_vector("CONTEXT") or {}
        disk_path = f"{vmm.remote_dir(vm)}/disk.{context.get('DISK_ID', '0')}"
    vmm._send("UPDATECONF", vm, vmm.format_message(vm, tm_command=command, disk_path=disk_path))
