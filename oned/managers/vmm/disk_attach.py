"""Changes the disk operations make to a VM working copy before their driver step
(mirrors ``VirtualMachineDisks::set_up_attach``, ``ImagePool::acquire_disk``,
``VirtualMachineDisk::create_snapshot``, ``set_active_snapshot`` and
``set_up_resize``). Refusals raise ``ActionError`` with oned's text; the caller's
transaction then commits nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import ActionError
from oned.managers.image import usage
from oned.managers.lifecycle.disks import _assign
from oned.managers.vmm import disk_state as ds
from oned.objects import image as im
from oned.objects.image import Snapshots
from oned.vm_disks import (
    datastore_disk_attribute,
    disk_image,
    disk_uid,
    image_disk_attribute,
)

if TYPE_CHECKING:
    from oned.managers.lifecycle.tx import Tx
    from oned.objects.vm import VirtualMachine


def volatile_info(tx: Tx, disk: ds.Disk) -> None:
    """``set_volatile_disk_info``: a volatile disk takes the system datastore's data."""
    current = tx.vm.current
    if ds.is_volatile(disk) and current is not None:
        datastore_disk_attribute(tx.core, disk, current.ds_id)


def _acquire(tx: Tx, disk: ds.Disk) -> tuple[str, int, Snapshots | None]:
    """``ImagePool::acquire_disk`` for an attach: device prefix, image id (-1 for a
    volatile disk) and the image's snapshots."""
    core, vm = tx.core, tx.vm
    if "IMAGE_ID" not in disk and "IMAGE" not in disk:
        dtype = disk.get("TYPE", "").upper()
        if dtype not in ("SWAP", "FS"):
            raise ActionError(f"Unknown disk type {dtype}")
        if ds.to_int(disk.get("SIZE"), 0) <= 0:
            raise ActionError("SIZE attribute must be a positive integer value.")
        if not disk.get("DEV_PREFIX"):
            disk["DEV_PREFIX"] = (core.config.get("DEFAULT_DEVICE_PREFIX") or "hd").strip()
        return disk["DEV_PREFIX"], -1, None
    found = disk_image(core, disk, vm.uid)
    if found is None:
        if "IMAGE_ID" in disk:
            raise ActionError(f"Image with ID: {disk['IMAGE_ID'].strip()} does not exist")
        owner = disk_uid(core, disk, vm.uid)
        raise ActionError(
            f"User {vm.uid if owner == -1 else owner} does not own an image with name: "
            f"{disk.get('IMAGE', '')} . Set IMAGE_UNAME or IMAGE_UID of owner in DISK."
        )
    iid = int(found.oid)
    stage = tx.image_stage()
    error = usage.acquire(stage, vm.oid, iid, attach=True)
    if error:
        raise ActionError(error)
    img = stage.image(iid)
    assert img is not None
    if "SIZE" in disk:
        size = ds.to_int(disk.get("SIZE"), 0)
        if img.persistent and size != img.size:
            raise ActionError(f"SIZE attribute is not supported for persistent image [{iid}].")
        if img.type == im.CDROM and size != img.size:
            raise ActionError(f"SIZE attribute is not supported for CDROM image [{iid}].")
        if size < img.size:
            raise ActionError(
                f"SIZE of {size}MB is less than the image [{iid}] size of {img.size}MB."
            )
    image_disk_attribute(core, disk, img)
    datastore_disk_attribute(core, disk, img.datastore_id)
    snaps = img.snapshots.copy() if img.snapshots.items else None
    prefix = disk.get("DEV_PREFIX", "")
    if img.type == im.CDROM and not prefix:
        prefix = "hd"
    return prefix, iid, snaps


def set_up_attach(tx: Tx, disk: ds.Disk) -> None:
    """``set_up_attach``: the new disk, its image taken, TARGET and DISK_ID set,
    flagged ATTACH and added to the VM template."""
    vm = tx.vm
    used: set[str] = set()
    max_id = -1
    for other in ds.disks(vm):
        if other.get("TARGET"):
            used.add(other["TARGET"])
        max_id = max(max_id, ds.to_int(other.get("DISK_ID"), -1))
    context = vm.template.get_vector("CONTEXT")
    if context is not None:
        if context.get("TARGET"):
            used.add(context["TARGET"])
        max_id = max(max_id, ds.to_int(context.get("DISK_ID"), -1))
    did = max_id + 1
    tsys = vm.template.get("TM_MAD_SYSTEM") or ""
    if tsys:
        disk["TM_MAD_SYSTEM"] = tsys
    else:
        disk.pop("TM_MAD_SYSTEM", None)
    volatile_info(tx, disk)
    prefix, iid, snaps = _acquire(tx, disk)
    if ds.is_filesystem(disk):
        raise ActionError(f"Can not attach disks {disk.get('TYPE', '')}")
    target = disk.get("TARGET", "")
    if target:
        if target in used:
            raise ActionError(f"Target {target} is already in use.")
    else:
        _assign([(prefix, disk)], used)
    clusters = disk.get("CLUSTER_ID", "")
    current = vm.current
    if clusters and current is not None:
        ids = {ds.to_int(c, -99) for c in clusters.split(",")}
        if current.cid not in ids:
            raise ActionError(f"Image [{iid}] is not part of cluster [{current.cid}]")
    disk["DISK_ID"] = str(did)
    disk["ATTACH"] = "YES"
    vm.template.add("DISK", disk)
    if snaps is not None:
        all_snaps = ds.vm_snapshots(vm)
        all_snaps[did] = snaps
        ds.set_vm_snapshots(vm, all_snaps)
    tx.touch_history()


def new_snapshot(tx: Tx, did: int, name: str) -> int:
    """``VirtualMachineDisk::create_snapshot``: the new snapshot id (the driver step
    then works on the disk flagged DISK_SNAPSHOT_ACTIVE)."""
    vm = tx.vm
    disk = ds.disk_by_id(vm, did)
    if disk is None:
        raise ActionError("VM disk does not exist")
    if ds.is_volatile(disk):
        raise ActionError("Cannot make snapshots on volatile disks")
    size = disk.get("SIZE", "").strip()
    if not size.lstrip("-").isdigit():
        raise ActionError("Wrong size in disk")
    if ds.yes(disk, "READONLY"):
        raise ActionError("Cannot make snapshots on readonly disks")
    tx.touch_history()
    all_snaps = ds.vm_snapshots(vm)
    mode = ds.allow_orphans(disk)
    snaps = all_snaps.get(did)
    if snaps is None:
        snaps = Snapshots(allow_orphans=mode)
    sid = ds.create(snaps, mode, name, int(size), tx.now)
    if sid == -1:
        raise ActionError("")
    all_snaps[did] = snaps
    ds.set_vm_snapshots(vm, all_snaps)
    disk["DISK_SNAPSHOT_ACTIVE"] = "YES"
    disk["DISK_SNAPSHOT_ID"] = str(sid)
    disk["DISK_SNAPSHOT_TOTAL_SIZE"] = str(snaps.total_size())
    return sid


def disk_snapshots(vm: VirtualMachine, did: int) -> Snapshots:
    """``get_disk_snapshots``: the disk's snapshots or oned's refusal."""
    if ds.disk_by_id(vm, did) is None:
        raise ActionError("VM disk does not exist")
    snaps = ds.vm_snapshots(vm).get(did)
    if snaps is None:
        raise ActionError("Snapshot does not exist")
    return snaps


def set_snapshot_disk(vm: VirtualMachine, did: int, sid: int) -> bool:
    """``set_active_snapshot``: flag the disk for the snapshot driver step."""
    disk = ds.disk_by_id(vm, did)
    snaps = ds.vm_snapshots(vm).get(did)
    if disk is None or snaps is None or snaps.get(sid) is None:
        return False
    disk["DISK_SNAPSHOT_ACTIVE"] = "YES"
    disk["DISK_SNAPSHOT_ID"] = str(sid)
    return True


def set_up_resize(vm: VirtualMachine, did: int, size: int) -> None:
    """``set_up_resize``: SIZE_PREV kept, the new SIZE, the disk flagged RESIZE."""
    disk = ds.disk_by_id(vm, did)
    if disk is None:
        raise ActionError("Disk not found")
    if ds.is_filesystem(disk):
        raise ActionError("FILESYSTEM disks can not be resized")
    prev = disk.get("SIZE", "").strip()
    if not prev.lstrip("-").isdigit():
        raise ActionError("Wrong format for disk SIZE")
    if size <= int(prev):
        raise ActionError("New size has to be bigger than current one")
    disk["SIZE_PREV"] = prev
    disk["SIZE"] = str(size)
    disk["RESIZE"] = "YES"
