"""VMM BACKUP / BACKUPCANCEL messages (mirrors ``VirtualMachineManager::trigger_backup``
and ``trigger_backup_cancel``): the TM line the driver runs itself goes in TM_COMMAND,
and DATASTORE is the backup datastore."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.drivers.message import b64decode, b64encode
from oned.managers.transfer.manager import system_dir
from oned.managers.vmm.backup_config import Backups, backup_disk_ids

if TYPE_CHECKING:
    from oned.managers.vmm.manager import VirtualMachineManager
    from oned.objects.vm import VirtualMachine

_END = "</VMM_DRIVER_ACTION_DATA>"


def backup_command(vmm: VirtualMachineManager, vm: VirtualMachine, backups: Backups) -> str:
    """``BACKUP tm_mad host:dir DISK_ID:... deploy_id job_id|- vid ds``."""
    current = vm.current
    assert current is not None
    job = backups.config.get("BACKUP_JOB_ID", "").strip() or "-"
    if job == "-1":
        job = "-"
    disks = ":".join(str(i) for i in backup_disk_ids(vm, backups))
    return (
        f"BACKUP {current.tm_mad} {current.hostname}:{system_dir(vmm.core, vm)} {disks} "
        f"{vm.deploy_id} {job} {vm.oid} {current.ds_id}\n"
    )


def _with_datastore(
    vmm: VirtualMachineManager, vm: VirtualMachine, payload: str, ds_id: int
) -> str:
    """The action data with the backup datastore in place of the system one."""
    current = vm.current
    assert current is not None
    core = vmm.core
    doc = b64decode(payload)
    system = core.datastores.get(current.ds_id)
    tail = (core.datastores.body(system.oid) if system is not None else "") + _END
    backup = core.datastores.get(ds_id)
    if backup is not None and doc.endswith(tail):
        doc = doc[: -len(tail)] + core.datastores.body(backup.oid) + _END
    return b64encode(doc)


def send_backup(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    """BACKUP to the VM's VM_MAD; a missing backup datastore fails the backup."""
    backups = Backups.of(vm)
    ds_id = backups.get_int("LAST_DATASTORE_ID")
    if vmm.core.datastores.get(ds_id) is None:
        vmm._local_failure(vm.oid, "BACKUP", f"backup, backup datastore {ds_id} does not exist")
        return
    payload = vmm.format_message(vm, tm_command=backup_command(vmm, vm, backups))
    vmm._send("BACKUP", vm, _with_datastore(vmm, vm, payload, ds_id))


def send_backup_cancel(vmm: VirtualMachineManager, vm: VirtualMachine) -> None:
    current = vm.current
    assert current is not None
    command = (
        f"BACKUPCANCEL {current.tm_mad} {current.hostname}:{system_dir(vmm.core, vm)} "
        f"{vm.deploy_id}\n"
    )
    ds_id = Backups.of(vm).get_int("LAST_DATASTORE_ID")
    payload = vmm.format_message(vm, tm_command=command)
    vmm._send("BACKUPCANCEL", vm, _with_datastore(vmm, vm, payload, ds_id))
