"""Transfer commands and scripts of the disk operations (mirrors
``TransferManager::prolog_transfer_command``, ``epilog_transfer_command``,
``snapshot_transfer_command``, ``resize_command``, ``trigger_prolog_attach``,
``trigger_epilog_detach``, ``trigger_saveas_hot``, ``do_snapshot_action`` and
``trigger_resize``), and the routing of their TRANSFER replies by LCM state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.managers.lifecycle.vmlog import write_vm_log
from oned.managers.transfer.manager import system_dir
from oned.managers.vmm import disk_state as ds
from oned.objects.vm import LcmState as L

if TYPE_CHECKING:
    from oned.managers.transfer.manager import TransferManager
    from oned.objects.vm import VirtualMachine

#: LCM state -> (success, failure) callbacks of the LifeCycleManager for TRANSFER.
ROUTES: dict[int, tuple[str, str]] = {
    L.HOTPLUG_PROLOG_POWEROFF: ("attach_success", "attach_failure"),
    L.HOTPLUG_EPILOG_POWEROFF: ("detach_success", "detach_failure"),
    **{
        s: ("saveas_success", "saveas_failure")
        for s in (
            L.HOTPLUG_SAVEAS,
            L.HOTPLUG_SAVEAS_POWEROFF,
            L.HOTPLUG_SAVEAS_SUSPENDED,
            L.HOTPLUG_SAVEAS_UNDEPLOYED,
            L.HOTPLUG_SAVEAS_STOPPED,
        )
    },
    **{
        s: ("disk_snapshot_success", "disk_snapshot_failure")
        for s in (
            L.DISK_SNAPSHOT_POWEROFF,
            L.DISK_SNAPSHOT_REVERT_POWEROFF,
            L.DISK_SNAPSHOT_DELETE_POWEROFF,
            L.DISK_SNAPSHOT_SUSPENDED,
            L.DISK_SNAPSHOT_DELETE_SUSPENDED,
            L.DISK_SNAPSHOT_DELETE,
        )
    },
    L.DISK_RESIZE_POWEROFF: ("disk_resize_success", "disk_resize_failure"),
    L.RESTORE: ("disk_restore_success", "disk_restore_failure"),
    L.DISK_RESIZE_UNDEPLOYED: ("disk_resize_success", "disk_resize_failure"),
}


class CommandError(ValueError):
    """A disk lacks what its transfer command needs (the text is oned's)."""


class Skipped(CommandError):
    """A volatile disk without SIZE (or FORMAT): oned skips it with a warning."""


def _sys(disk: ds.Disk) -> str:
    tsys = disk.get("TM_MAD_SYSTEM", "")
    return f".{tsys}" if tsys else ""


def _path(tm: TransferManager, vm: VirtualMachine, host: str, did: str) -> str:
    return f"{host}:{system_dir(tm.core, vm)}/disk.{did}"


def prolog_line(tm: TransferManager, vm: VirtualMachine, disk: ds.Disk) -> str:
    """``prolog_transfer_command`` for one disk ("" when there is nothing to do)."""
    current = vm.current
    assert current is not None
    did, dtype = disk.get("DISK_ID", ""), disk.get("TYPE", "").upper()
    target = _path(tm, vm, current.hostname, did)
    if dtype == "SWAP":
        size = disk.get("SIZE", "")
        if not size:
            raise Skipped("No size in swap image")
        return f"MKSWAP {current.tm_mad} {size} {target} {vm.oid} {current.ds_id}"
    if dtype == "FS":
        size, fmt = disk.get("SIZE", ""), disk.get("FORMAT", "")
        if not size or not fmt:
            raise Skipped("No size or format in FS")
        return f"MKIMAGE {current.tm_mad} {size} {fmt} {target} {vm.oid} {current.ds_id}"
    if dtype == "FILESYSTEM":
        return ""
    tm_mad, ds_id = disk.get("TM_MAD", ""), disk.get("DATASTORE_ID", "")
    source, clone = disk.get("SOURCE", ""), disk.get("CLONE", "")
    if not (source and tm_mad and ds_id and clone):
        raise CommandError(
            "missing DISK mandatory attributes (SOURCE, TM_MAD, CLONE, DATASTORE_ID) "
            f"for VM {vm.oid}, DISK {did}"
        )
    word = "CLONE" if clone.upper() == "YES" else "LN"
    if ":" not in source:
        source = f"{tm.frontend}:{source}"
    return f"{word}{_sys(disk)} {tm_mad} {source} {target} {vm.oid} {ds_id}"


def epilog_line(tm: TransferManager, vm: VirtualMachine, host: str, disk: ds.Disk) -> str:
    """``epilog_transfer_command`` for one disk: MVDS when SAVE=YES, else DELETE."""
    current = vm.current
    assert current is not None
    if ds.is_filesystem(disk):
        return ""
    did = disk.get("DISK_ID", "")
    path = _path(tm, vm, host, did)
    if ds.yes(disk, "SAVE"):
        tm_mad, ds_id, source = (
            disk.get("TM_MAD", ""),
            disk.get("DATASTORE_ID", ""),
            disk.get("SOURCE", ""),
        )
        if not ds_id or not tm_mad or not source:
            return ""
        return f"MVDS{_sys(disk)} {tm_mad} {path} {source} {vm.oid} {ds_id}"
    if ds.is_volatile(disk):
        tm_mad, ds_id = current.tm_mad, str(current.ds_id)
    else:
        tm_mad, ds_id = disk.get("TM_MAD", ""), disk.get("DATASTORE_ID", "").strip()
        if not ds_id.lstrip("-").isdigit():
            return ""
    if not tm_mad:
        return ""
    return f"DELETE{_sys(disk)} {tm_mad} {path} {vm.oid} {ds_id}"


def snapshot_line(tm: TransferManager, vm: VirtualMachine, action: str) -> str:
    """``snapshot_transfer_command`` for the disk with DISK_SNAPSHOT_ACTIVE."""
    current = vm.current
    assert current is not None
    disk = ds.flagged(vm, "DISK_SNAPSHOT_ACTIVE")
    if disk is None or not disk.get("TM_MAD") or "DISK_SNAPSHOT_ID" not in disk:
        raise CommandError("Could not get disk information to take snapshot")
    path = _path(tm, vm, current.hostname, disk.get("DISK_ID", ""))
    return (
        f"{action}{_sys(disk)} {disk['TM_MAD']} {path} {disk['DISK_SNAPSHOT_ID']} "
        f"{vm.oid} {disk.get('DATASTORE_ID', '')}"
    )


def resize_line(tm: TransferManager, vm: VirtualMachine, disk: ds.Disk) -> str:
    """``resize_command``: RESIZE of the disk to its new SIZE."""
    current = vm.current
    assert current is not None
    if ds.is_filesystem(disk):
        return ""
    if ds.is_volatile(disk):
        tm_mad, ds_id = current.tm_mad, str(current.ds_id)
    else:
        tm_mad, ds_id = disk.get("TM_MAD", ""), disk.get("DATASTORE_ID", "")
    path = _path(tm, vm, current.hostname, disk.get("DISK_ID", ""))
    return f"RESIZE{_sys(disk)} {tm_mad} {path} {disk.get('SIZE', '')} {vm.oid} {ds_id}"


def cpds_line(tm: TransferManager, vm: VirtualMachine, disk: ds.Disk) -> str:
    """``trigger_saveas_hot``: CPDS of the disk (or snapshot) to the new image."""
    host = vm.current.hostname if vm.current is not None else ""
    if vm.lcm_state in (L.HOTPLUG_SAVEAS_STOPPED, L.HOTPLUG_SAVEAS_UNDEPLOYED):
        host = tm.frontend
    path = _path(tm, vm, host, disk.get("DISK_ID", ""))
    return (
        f"CPDS{_sys(disk)} {disk.get('TM_MAD', '')} {path} "
        f"{disk.get('HOTPLUG_SAVE_AS_SOURCE', '')} {disk.get('HOTPLUG_SAVE_AS_SNAPSHOT_ID', '')} "
        f"{vm.oid} {disk.get('DATASTORE_ID', '')}"
    )


def send_script(
    tm: TransferManager, vm: VirtualMachine, op: str, line: str, fail: str, error: str
) -> None:
    """Write ``transfer.<seq>.<op>`` and send it; on a local error log it and run the
    LCM ``fail`` callback (as ``error_common`` does)."""
    lcm = tm.lcm
    if vm.current is None:
        error = error or f"{op}, the VM has no history"
    if error:
        write_vm_log(tm.core, vm.oid, [("TrM", "E", error)], tm.core.now())
        if lcm is not None:
            lcm.schedule(getattr(lcm, fail), vm.oid, "")
        return
    tm._transfer(vm, op, [line] if line else [])


def prolog_attach(tm: TransferManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "ATTACH")
    line, error = "", ""
    if disk is None:
        error = "prolog_attach, could not find disk to attach"
    else:
        try:
            line = prolog_line(tm, vm, disk)
        except Skipped as exc:
            write_vm_log(tm.core, vm.oid, [("TrM", "W", f"{exc}, skipping")], tm.core.now())
        except CommandError as exc:
            error = f"prolog, {exc}"
    send_script(tm, vm, "prolog_attach", line, "attach_failure", error)


def epilog_detach(tm: TransferManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "ATTACH")
    current = vm.current
    line, error = "", ""
    if disk is None or current is None:
        error = "epilog_detach, could not find disk to detach"
    else:
        line = epilog_line(tm, vm, current.hostname, disk)
    send_script(tm, vm, "epilog_detach", line, "detach_failure", error)


def snapshot_action(tm: TransferManager, vm: VirtualMachine, action: str) -> None:
    line, error = "", ""
    try:
        line = snapshot_line(tm, vm, action)
    except CommandError as exc:
        error = str(exc)
    send_script(tm, vm, "disk_snapshot", line, "disk_snapshot_failure", error)


def resize(tm: TransferManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "RESIZE")
    line = resize_line(tm, vm, disk) if disk is not None else ""
    error = "" if disk is not None else "disk_resize, could not find resize disk"
    send_script(tm, vm, "disk_resize", line, "disk_resize_failure", error)


def saveas_hot(tm: TransferManager, vm: VirtualMachine) -> None:
    disk = ds.flagged(vm, "HOTPLUG_SAVE_AS_ACTIVE")
    ok = disk is not None and all(
        k in disk
        for k in ("HOTPLUG_SAVE_AS_SOURCE", "HOTPLUG_SAVE_AS", "HOTPLUG_SAVE_AS_SNAPSHOT_ID")
    )
    error = "" if ok else "saveas_hot_transfer, could not get disk information to export it"
    line = cpds_line(tm, vm, disk) if ok and disk is not None else ""
    send_script(tm, vm, "disk_saveas", line, "saveas_failure", error)
