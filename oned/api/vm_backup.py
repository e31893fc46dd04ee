"""``one.vm.backup/backupcancel/restore`` (mirrors ``VirtualMachineAPI::backup``,
``backup_cancel`` and ``restore``): checks and authorization here, the state change in
the DispatchManager, the driver work in the LifeCycleManager."""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.vm import VM, action_op, dispatcher, requester
from oned.core import Core
from oned.errors import ActionError, InternalError, NoExistsError, no_exists
from oned.managers.dispatch.backups import backup_datastore
from oned.managers.vmm.backup_config import Backups
from oned.managers.vmm.backup_increments import last_increment_id
from oned.objects.base import Op
from oned.objects.image import BACKUP
from oned.objects.vm import VirtualMachine


@rpc("one.vm.backup", "iib", required=1)
async def backup(core: Core, call: Call, oid: int, ds_id: int = -1, reset: bool = False) -> int:
    """Creates a new backup of the virtual machine."""
    vm: VirtualMachine | None = core.vms.get(oid)
    if vm is None:
        raise no_exists("virtual machine", oid)
    backups = Backups.of(vm)
    job = backups.get_int("BACKUP_JOB_ID")
    if job != -1:
        # oned prints the requested job id (-1), not the VM's.
        raise InternalError(
            "Unable to start an individual backup for the Virtual Machine, "
            "it is part of Backup Job ID -1"
        )
    ds = backup_datastore(core, vm, ds_id, reset)
    core.acl.check_all(
        call.caller,
        [
            (action_op(core, "backup"), VM.auth(core, vm)),
            (Op.USE, shared.owned_auth("DATASTORE")(core, ds)),
        ],
    )
    try:
        await dispatcher(core).backup(oid, ds.oid, reset, requester(call))
    except NoExistsError as exc:
        raise no_exists("virtual machine", oid) from exc
    return oid


@rpc("one.vm.backupcancel", "i")
async def backupcancel(core: Core, call: Call, oid: int) -> int:
    """Cancels an active backup of the virtual machine."""
    shared.get_authorized(core, call, VM, oid, action_op(core, "backup"))
    await dispatcher(core).backup_cancel(oid, requester(call))
    return oid


@rpc("one.vm.restore", "iiii")
async def restore(
    core: Core, call: Call, oid: int, image_id: int, inc_id: int, disk_id: int
) -> int:
    """Restores the disks of a powered-off virtual machine from a backup image."""
    vm: VirtualMachine | None = core.vms.get(oid)
    if vm is None:
        raise no_exists("virtual machine", oid)
    if disk_id != -1 and not any(
        d.get("DISK_ID", "").strip() == str(disk_id) for d in vm.template.vectors("DISK")
    ):
        raise ActionError("VM disk does not exist")
    image = core.images.get(image_id)
    if image is None:
        raise no_exists("image", image_id)
    if image.type != BACKUP:
        raise ActionError("Image has to be of type BACKUP")
    if inc_id > last_increment_id(image):
        raise ActionError("Wrong increment")
    core.acl.check_all(
        call.caller,
        [
            (action_op(core, "restore"), VM.auth(core, vm)),
            (Op.USE, shared.owned_auth("IMAGE")(core, image)),
        ],
    )
    try:
        await dispatcher(core).restore(oid, image_id, inc_id, disk_id, requester(call))
    except NoExistsError as exc:
        raise no_exists("virtual machine", oid) from exc
    return oid
