"""DispatchManager: backup, backupcancel and restore (``DispatchManager::backup``,
``backup_cancel``, ``restore``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.errors import ActionError, AuthorizationError, InternalError
from oned.managers.lifecycle.tx import Tx, state_str
from oned.managers.vmm.backup import send_backup_cancel
from oned.managers.vmm.backup_config import Backups, reserved_usage
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.objects.datastore import Datastore
    from oned.objects.vm import VirtualMachine


def backup_datastore(core: Core, vm: VirtualMachine, ds_id: int, reset: bool) -> Datastore:
    """The checks ``VirtualMachineAPI::backup`` makes for every backup, a user's or a
    backup job's: no FILESYSTEM disk, an ongoing increment chain keeps its datastore, a
    BACKUP datastore with room for the VM's disks. Returns that datastore."""
    from oned.errors import no_exists
    from oned.managers.image.insert import avail_mb
    from oned.managers.vmm.backup_config import backup_size, has_filesystem_disk
    from oned.objects.datastore import BACKUP_DS

    backups = Backups.of(vm)
    if has_filesystem_disk(vm):
        raise ActionError("Cannot backup VM with FILESYSTEM disks")
    if backups.mode == "INCREMENT" and not reset and backups.get_int("LAST_INCREMENT_ID") != -1:
        chain = backups.get_int("INCREMENTAL_BACKUP_ID")
        image = core.images.get(chain)
        if image is None:
            raise no_exists("image", chain)
        ds_id = image.datastore_id
    ds = core.datastores.get(ds_id)
    if ds is None:
        raise no_exists("datastore", ds_id)
    if ds.type != BACKUP_DS:
        raise ActionError("Datastore needs to be of type BACKUP")
    check, free = avail_mb(core, ds)
    if check and free < backup_size(vm, backups):
        raise ActionError("Not enough free space on target datastore")
    return ds


#: ``VMActions::BACKUP_ACTION`` and ``RESTORE_ACTION`` (HISTORY/ACTION).
BACKUP_ACTION = 50
RESTORE_ACTION = 60


def quiet_state(tx: Tx, state: int) -> None:
    """``set_state`` between POWEROFF and ACTIVE for a backup or restore: the VM does
    not run meanwhile, so RUNNING_* quotas do not move."""
    tx.vm.set_state(state)
    tx.log("VM", "I", f"New state is {S(state).name}")


def close_cp_history(tx: Tx, action: int, who: Any) -> None:
    """``close_cp_history``: the action on the open record, which is closed, and a copy
    opened on the same host (running again only if it was running)."""
    record = tx.history
    record.action, record.uid, record.gid, record.req_id = action, who.uid, who.gid, who.req_id
    running = not record.retime
    record.etime = tx.now
    if running:
        record.retime = tx.now
    new = record.successor(len(tx.vm.history), tx.now)
    if not running:
        new.rstime = 0
    tx.add_history(new)


class DispatchBackups:
    """Mixed into ``DispatchManager``, which provides ``_run`` and ``_act``."""

    core: Core
    lcm: LifeCycleManager

    async def _run(self, vid: int, step: Any, desc: str) -> VirtualMachine:
        raise NotImplementedError

    def _act(self, tx: Tx, action: int, who: Any) -> None:
        raise NotImplementedError

    async def backup(self, vid: int, ds_id: int, reset: bool, who: Any) -> None:
        """``backup``: BACKUP (RUNNING) or BACKUP_POWEROFF, then the VMM BACKUP.
        Refusals are ``InternalError`` with oned's text."""

        def step(tx: Tx) -> None:
            vm = tx.vm
            backups = Backups.of(vm)
            prefix = f"Could not create a new backup for VM {vid}"
            if backups.config.get("ACTIVE_FLATTEN", "").upper() == "YES":
                raise InternalError(f"{prefix}, consolidating backup increments")
            if vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING:
                tx.lcm(L.BACKUP)
            elif vm.state == S.POWEROFF:
                quiet_state(tx, S.ACTIVE)
                tx.lcm(L.BACKUP_POWEROFF)
            else:
                raise InternalError(f"{prefix}, wrong state {state_str(vm)}.")
            if reset:
                backups.config["LAST_INCREMENT_ID"] = "-1"
                backups.config["INCREMENTAL_BACKUP_ID"] = "-1"
            # The datastore quota reserves the whole size now (the real one on success).
            error = tx.image_stage().quota_add(
                vm.uid, vm.gid, ds_id, reserved_usage(vm, backups, reset)
            )
            if error:
                raise AuthorizationError(error)
            backups.config["LAST_DATASTORE_ID"] = str(ds_id)
            backups.store(vm)
            vm.resched = 0
            close_cp_history(tx, BACKUP_ACTION, who)
            tx.then(lambda: self.lcm.send_backup(vm))

        await self._run(vid, step, f"backup VM {vid}")

    async def backup_cancel(self, vid: int, who: Any) -> None:
        vm = self.core.vms.get(vid)
        if vm is None:
            raise InternalError(f"Could not cancel backup for VM {vid}, VM does not exist")
        if vm.lcm_state not in (L.BACKUP, L.BACKUP_POWEROFF):
            raise InternalError(f"Could not cancel backup for VM {vid}, no backup in progress")
        send_backup_cancel(self.lcm.vmm, vm)

    async def restore(self, vid: int, img_id: int, inc_id: int, disk_id: int, who: Any) -> None:
        """``restore``: a POWEROFF VM goes to RESTORE and the TM copies the backup."""

        def step(tx: Tx) -> None:
            vm = tx.vm
            if vm.state != S.POWEROFF:
                raise ActionError("Could not restore VM, it must be in poweroff")
            quiet_state(tx, S.ACTIVE)
            tx.lcm(L.RESTORE)
            close_cp_history(tx, RESTORE_ACTION, who)
            tx.then(lambda: self.lcm.send_restore(vm, img_id, inc_id, disk_id))

        vm = self.core.vms.get(vid)
        if vm is None:
            raise ActionError("Could not restore VM, it does not exist")
        await self._run(vid, step, f"restore VM {vid}")
