"""``one.vm.attach/detach/disksnapshot*/disksaveas/diskresize`` (mirrors
``VirtualMachineAPI::disk_attach``, ``disk_detach``, ``disk_snapshot_*``,
``disk_save_as`` and ``disk_resize``): request checks and authorization here, the
state machine in the DispatchManager (``oned.managers.dispatch.disks``).
"""

from __future__ import annotations

import re
from typing import Any

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import ObjectAuth
from oned.api.vm import VM, action_op, dispatcher, requester
from oned.core import Core
from oned.errors import (
    ActionError,
    AllocateError,
    AuthorizationError,
    InternalError,
    NoExistsError,
    no_exists,
)
from oned.managers.image import actions, insert
from oned.managers.vmm import disk_saveas as saveas
from oned.managers.vmm import disk_state as ds
from oned.managers.vmm.backup_config import Backups
from oned.objects import image as im
from oned.objects.base import Op
from oned.objects.vm import VirtualMachine
from oned.template import Template
from oned.template_merge import parse_restricted, restricted_in
from oned.vm_disks import disk_image

#: ``str_cast<long long>``: blanks, a sign and digits up to the end.
_LONG = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def _vm(core: Core, vid: int) -> VirtualMachine:
    vm = core.vms.get(vid)
    if vm is None:
        raise no_exists("virtual machine", vid)
    return vm


def _authorize(
    core: Core, call: Call, vm: VirtualMachine, op_name: str, *extra: tuple[Op, ObjectAuth]
) -> None:
    """``vm_authorization``: the VM with the operation's level, plus ``extra``."""
    requests = [(action_op(core, op_name), VM.auth(core, vm)), *extra]
    core.acl.check_all(call.caller, requests)


def _disk(vm: VirtualMachine, did: int) -> ds.Disk:
    disk = ds.disk_by_id(vm, did)
    if disk is None:
        raise ActionError("VM disk does not exist")
    return disk


def _image_auth(core: Core, iid: int) -> ObjectAuth:
    img = core.images.get(iid)
    if img is None:
        raise no_exists("image", iid)
    return shared.owned_auth("IMAGE")(core, img)


async def _dm(coro: Any, vid: int) -> Any:
    try:
        return await coro
    except NoExistsError as exc:
        raise no_exists("virtual machine", vid) from exc


@rpc("one.vm.attach", "is")
async def attach(core: Core, call: Call, vid: int, text: str) -> int:
    """Attach a disk to a Virtual Machine."""
    vm = _vm(core, vid)
    if vm.current is None:
        raise ActionError("VM is not running in any host")
    if (vm.template.get("VROUTER_ID") or "") != "":
        raise ActionError("Action is not supported for virtual router VMs")
    tmpl = shared.parse_template(text)
    disk = tmpl.get_vector("DISK")
    extra: list[tuple[Op, ObjectAuth]] = []
    img = disk_image(core, disk, call.uid) if disk is not None else None
    if img is not None:
        extra.append((Op.USE, shared.owned_auth("IMAGE")(core, img)))
    _authorize(core, call, vm, "disk-attach", *extra)
    if not call.is_admin:
        found = restricted_in(tmpl, parse_restricted(core.attr_list("VM_RESTRICTED_ATTR")))
        if found is not None:
            raise AuthorizationError(f"DISK includes a restricted attribute {found}")
    iid = int(img.oid) if img is not None else None
    await _dm(dispatcher(core).attach_disk(vid, disk, requester(call), iid), vid)
    return vid


@rpc("one.vm.detach", "ii")
async def detach(core: Core, call: Call, vid: int, did: int) -> int:
    """Detach a disk from a Virtual Machine."""
    vm = _vm(core, vid)
    _authorize(core, call, vm, "disk-detach")
    if (vm.template.get("VROUTER_ID") or "") != "":
        raise ActionError("Action is not supported for virtual router VMs")
    _disk(vm, did)
    await _dm(dispatcher(core).detach_disk(vid, did, requester(call)), vid)
    return vid


@rpc("one.vm.disksnapshotcreate", "iis")
async def disk_snapshot_create(core: Core, call: Call, vid: int, did: int, name: str) -> int:
    """Create a snapshot of a disk of a Virtual Machine."""
    vm = _vm(core, vid)
    backups = Backups.of(vm)
    if backups.config and backups.mode == "INCREMENT":
        raise ActionError(
            'Action "disk-snapshot-create" is not compatible with incremental backups'
        )
    disk = _disk(vm, did)
    if not ds.snapshot_support(disk):
        raise ActionError(f"Cannot make snapshots on disks of type: {disk.get('TYPE', '')}")
    extra = _persistent_image(core, disk)
    _authorize(core, call, vm, "disk-snapshot-create", *extra)
    result: int = await _dm(
        dispatcher(core).disk_snapshot_create(vid, did, name, requester(call)), vid
    )
    return result


def _persistent_image(core: Core, disk: ds.Disk) -> list[tuple[Op, ObjectAuth]]:
    """MANAGE on the image of a disk whose snapshots count on the image's owner."""
    raw = disk.get("IMAGE_ID", "").strip()
    owner = ds.is_persistent(disk) or ds.tm_target(disk) == "NONE"
    if not owner or not raw.isdigit():
        return []
    return [(Op.MANAGE, _image_auth(core, int(raw)))]


@rpc("one.vm.disksnapshotdelete", "iii")
async def disk_snapshot_delete(core: Core, call: Call, vid: int, did: int, sid: int) -> int:
    """Delete a disk snapshot."""
    vm = _vm(core, vid)
    disk = _disk(vm, did)
    if not ds.snapshot_support(disk):
        raise ActionError(f"Snapshots are not supported on disks of type: {disk.get('TYPE', '')}")
    extra: list[tuple[Op, ObjectAuth]] = []
    raw = disk.get("IMAGE_ID", "").strip()
    if ds.is_persistent(disk) and raw.isdigit():
        extra.append((Op.MANAGE, _image_auth(core, int(raw))))
    _authorize(core, call, vm, "disk-snapshot-delete", *extra)
    await _dm(dispatcher(core).disk_snapshot_delete(vid, did, sid, requester(call)), vid)
    return vid


@rpc("one.vm.disksnapshotrevert", "iii")
async def disk_snapshot_revert(core: Core, call: Call, vid: int, did: int, sid: int) -> int:
    """Revert a disk to a snapshot."""
    vm = core.vms.get(vid)
    if vm is not None:
        disk = _disk(vm, did)
        if not ds.snapshot_support(disk):
            raise ActionError(
                f"Snapshots are not supported on disks of type: {disk.get('TYPE', '')}"
            )
    vm = _vm(core, vid)
    _authorize(core, call, vm, "disk-snapshot-revert")
    await _dm(dispatcher(core).disk_snapshot_revert(vid, did, sid, requester(call)), vid)
    return vid


@rpc("one.vm.disksnapshotrename", "iiis")
async def disk_snapshot_rename(
    core: Core, call: Call, vid: int, did: int, sid: int, name: str
) -> int:
    """Rename a disk snapshot."""
    vm = _vm(core, vid)
    _authorize(core, call, vm, "disk-snapshot-rename")
    async with core.vms.lock(vid):
        vm = _vm(core, vid).copy()
        disk = _disk(vm, did)
        if not ds.snapshot_support(disk):
            raise ActionError(
                f"Snapshots are not supported on disks of type: {disk.get('TYPE', '')}"
            )
        all_snaps = ds.vm_snapshots(vm)
        snaps = all_snaps.get(did)
        if snaps is None:
            raise ActionError("The VM does not have any snapshot")
        snap = snaps.get(sid)
        if snap is None:
            raise ActionError("Snapshot does not exist")
        snap["NAME"] = name
        ds.set_vm_snapshots(vm, all_snaps)
        await shared.save(core, VM, vm, f"rename disk snapshot of VM {vid}")
    return vid


@rpc("one.vm.diskresize", "iis")
async def disk_resize(core: Core, call: Call, vid: int, did: int, size_text: str) -> int:
    """Resize a disk of a Virtual Machine."""
    if not _LONG.fullmatch(size_text) or not -(2**63) <= int(size_text) < 2**63:
        raise ActionError("Disk SIZE is not a valid integer")
    size = int(size_text)
    vm = _vm(core, vid)
    _authorize(core, call, vm, "disk-resize")
    disk = _disk(vm, did)
    if size <= ds.to_int(disk.get("SIZE")):
        raise ActionError("New disk size has to be greater than current one")
    raw = disk.get("IMAGE_ID", "").strip()
    img_owner = not ds.is_volatile(disk) and (
        ds.is_persistent(disk) or ds.tm_target(disk) == "NONE"
    )
    if img_owner and raw.isdigit():
        _authorize(core, call, vm, "disk-resize", (Op.MANAGE, _image_auth(core, int(raw))))
    await _dm(dispatcher(core).disk_resize(vid, did, size, requester(call)), vid)
    return vid


@rpc("one.vm.disksaveas", "iissi")
async def disk_saveas(
    core: Core, call: Call, vid: int, did: int, name: str, img_type: str, sid: int
) -> int:
    """Save a Virtual Machine disk as a new image."""
    _vm(core, vid)
    iid_orig, size = await saveas.begin(core, vid, did, sid)
    try:
        return await _new_image(core, call, vid, did, name, img_type, iid_orig, size)
    except Exception:
        await saveas.abort(core, vid)
        raise


async def _new_image(
    core: Core,
    call: Call,
    vid: int,
    did: int,
    name: str,
    img_type: str,
    iid_orig: int,
    size: int,
) -> int:
    orig = core.images.get(iid_orig)
    if orig is None:
        raise no_exists("image", iid_orig)
    if orig.type not in (im.OS, im.DATABLOCK, im.CDROM):
        raise InternalError(f"Cannot save an image of type {im.type_name(orig.type)}")
    store = core.datastores.get(orig.datastore_id)
    if store is None:
        raise no_exists("datastore", orig.datastore_id)
    check, avail = insert.avail_mb(core, store)
    if check and size > avail:
        raise ActionError("Not enough space in datastore")
    tmpl = Template()
    tmpl.add("NAME", name)
    tmpl.add("SIZE", str(size))
    tmpl.add("SAVED_IMAGE_ID", str(iid_orig))
    tmpl.add("SAVED_DISK_ID", str(did))
    tmpl.add("SAVED_VM_ID", str(vid))
    tmpl.add("SAVE_AS_HOT", "YES")
    tmpl.add("TYPE", img_type or im.type_name(orig.type))
    for key in ("TARGET", "DEV_PREFIX"):
        value = orig.template.get(key) or ""
        if value:
            tmpl.add(key, value)
    insert.test_set_persistent(core, tmpl, call.caller.uid, call.caller.gid, False)
    _authorize(
        core,
        call,
        _vm(core, vid),
        "disk-saveas",
        (Op.CREATE, ObjectAuth("IMAGE", -1)),
        (Op.USE, shared.owned_auth("DATASTORE")(core, store)),
    )
    mgr = core.image_manager
    saveas.listen(core)
    try:
        img, action = await actions.create_image(core, call, tmpl, store, size)
    except AllocateError as exc:
        raise AllocateError(exc.message, word="image") from exc
    if mgr is not None and action is not None:
        mgr.send_image_action(action, img)
    return img.oid
