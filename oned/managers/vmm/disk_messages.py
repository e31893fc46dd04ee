"""VMM actions of the live disk operations (mirrors ``VirtualMachineManager::
trigger_attach``, ``trigger_detach``, ``trigger_disk_snapshot_create`` and
``trigger_disk_resize``): the TM line the driver runs itself goes in ``TM_COMMAND``
(and the undo of an attach in ``TM_COMMAND_ROLLBACK``), the disk path in
``DISK_TARGET_PATH``. A request that cannot be built fails the operation as oned does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.managers.lifecycle.vmlog import write_vm_log
from oned.managers.transfer import disk_commands as cmd
from oned.managers.transfer.manager import system_dir
from oned.managers.vmm import disk_state as ds

if TYPE_CHECKING:
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager
    from oned.objects.vm import VirtualMachine


def _fail(vmm: VirtualMachineManager, vm: VirtualMachine, callback: str, text: str) -> None:
    write_vm_log(vmm.core, vm.oid, [("VMM", "E", text)], vmm.core.now())
    lcm = vmm.lcm
    if lcm is not None:
        lcm.schedule(getattr(lcm, callback), vm.oid, "")


def _tm(vmm: VirtualMachineManager) -> TransferManager:
    lcm = vmm.lcm
    assert lcm is not None
    return lcm.tm


def _line(text: str) -> str:
    return f"{text}\n" if text else ""


def attach(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "ATTACH")
    if vm.current is None or disk is None:
        _fail(vmm, vm, "attach_failure", "attach_action, could not find disk to attach")
        return
    tm = _tm(vmm)
    try:
        prolog = cmd.prolog_line(tm, vm, disk)
    except cmd.CommandError as exc:
        prolog, error = "", str(exc)
    else:
        error = ""
    if not prolog:
        _fail(vmm, vm, "attach_failure", f"Cannot set disk to attach it to VM: {error}")
        return
    epilog = cmd.epilog_line(tm, vm, vm.current.hostname, disk)
    path = f"{system_dir(vmm.core, vm)}/disk.{disk.get('DISK_ID', '')}"
    payload = vmm.format_message(
        vm, tm_command=_line(prolog), tm_rollback=_line(epilog), disk_path=path
    )
    vmm._send("ATTACHDISK", vm, payload)


def detach(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "ATTACH")
    if vm.current is None or disk is None:
        _fail(vmm, vm, "detach_failure", "detach_action, could not find disk to detach")
        return
    epilog = cmd.epilog_line(_tm(vmm), vm, vm.current.hostname, disk)
    path = f"{system_dir(vmm.core, vm)}/disk.{disk.get('DISK_ID', '')}"
    payload = vmm.format_message(vm, tm_command=_line(epilog), disk_path=path)
    vmm._send("DETACHDISK", vm, payload)


def disk_snapshot_create(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "DISK_SNAPSHOT_ACTIVE")
    if vm.current is None or disk is None:
        _fail(
            vmm,
            vm,
            "disk_snapshot_failure",
            "disk_snapshot_create, could not find disk to take snapshot",
        )
        return
    try:
        line = cmd.snapshot_line(_tm(vmm), vm, "SNAP_CREATE")
    except cmd.CommandError:
        _fail(vmm, vm, "disk_snapshot_failure", "Cannot set disk for snapshot.")
        return
    path = f"{system_dir(vmm.core, vm)}/disk.{disk.get('DISK_ID', '')}"
    payload = vmm.format_message(vm, checkpoint=True, tm_command=_line(line), disk_path=path)
    vmm._send("DISKSNAPSHOTCREATE", vm, payload)


def disk_resize(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "RESIZE")
    if vm.current is None or disk is None:
        _fail(
            vmm,
            vm,
            "disk_resize_failure",
            "disk_snapshot_create, could not find disk to take snapshot",
        )
        return
    line = cmd.resize_line(_tm(vmm), vm, disk)
    if not line:
        _fail(vmm, vm, "disk_resize_failure", "Cannot set disk for snapshot.")
        return
    path = f"{system_dir(vmm.core, vm)}/disk.{disk.get('DISK_ID', '')}"
    payload = vmm.format_message(vm, tm_command=_line(line), disk_path=path)
    vmm._send("RESIZEDISK", vm, payload)
