"""LifeCycleManager: backups and restores (mirrors ``LifeCycleStates.cc``
``trigger_backup_success/failure``, ``create_backup_image`` and
``trigger_disk_restore_success/failure``).

A backup reply moves the VM back to RUNNING (BACKUP) or POWEROFF (BACKUP_POWEROFF); a
successful one creates the BACKUP image in the backup datastore (``<vid> <date>``,
READY, persistent, the VM in its VMS, the disks in BACKUP_DISK_IDS) and adds it to the
VM's BACKUP_IDS and the datastore's IMAGES, all in one transaction. After a restart a
VM in BACKUP/BACKUP_POWEROFF gets its BACKUP re-sent; an interrupted RESTORE fails back
to POWEROFF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from oned.managers.backupjob.links import job_backup_done
from oned.managers.lifecycle.tx import Tx, transition
from oned.managers.transfer.manager import system_dir
from oned.managers.vmm.backup import send_backup
from oned.managers.vmm.backup_config import Backups, backup_disk_ids, reserved_usage
from oned.managers.vmm.backup_increments import FULL, INCREMENT, add_increment
from oned.objects.base import Permissions
from oned.objects.image import BACKUP, READY, Image
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S
from oned.pools.base import Locks

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager


def _back_from_backup(tx: Tx, verb: str) -> bool:
    """BACKUP -> RUNNING, BACKUP_POWEROFF -> POWEROFF (False: wrong state, logged)."""
    if tx.vm.lcm_state == L.BACKUP:
        tx.lcm(L.RUNNING)
    elif tx.vm.lcm_state == L.BACKUP_POWEROFF:
        _quiet_state(tx, S.POWEROFF)
        tx.lcm(L.LCM_INIT)
    else:
        tx.log("LCM", "E", f"{verb}, VM in wrong state")
        return False
    return True


def _quiet_state(tx: Tx, state: int) -> None:
    tx.vm.set_state(state)
    tx.log("VM", "I", f"New state is {S(state).name}")


def _log_error(tx: Tx, tag: str, text: str) -> None:
    """``log_error``: the driver's message becomes the VM's ERROR only when it said
    something (``ACTION: info``); a bare failure is only logged."""
    if ": " in text:
        tx.error(tag, text)
    elif text:
        tx.log(tag, "E", text)


def parse_backup_reply(payload: str) -> tuple[str, int, str]:
    """``backup_id size_mb [format]`` as ``_backup`` reads it: missing fields stay
    empty (size 0), the format defaults to raw."""
    parts = payload.split()
    try:
        size = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        size = 0
    return (parts[0] if parts else ""), size, (parts[2] if len(parts) > 2 else "raw")


class LcmBackups:
    """Mixed into ``LifeCycleManager``."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager
    log: Any

    def schedule(self, fn: Any, *args: Any) -> None:
        raise NotImplementedError

    # -- driver steps ------------------------------------------------------------------

    def send_backup(self, vm: VirtualMachine) -> None:
        send_backup(self.vmm, vm)

    def send_restore(self, vm: VirtualMachine, img_id: int, inc_id: int, disk_id: int) -> None:
        """``TransferManager::trigger_restore``: ``transfer.<seq>.restore``."""
        current = vm.current
        assert current is not None
        line = (
            f"RESTORE {current.tm_mad} {current.hostname}:{system_dir(self.core, vm)} "
            f"{vm.oid} {img_id} {inc_id} {disk_id} "
        )
        self.tm._transfer(vm, "restore", [line])

    def backup_replay(self, vm: VirtualMachine) -> dict[L, Callable[[], None]]:
        """Restart recovery: BACKUP is re-sent; RESTORE (its image is not kept) fails."""
        return {
            L.BACKUP: lambda: self.send_backup(vm),
            L.BACKUP_POWEROFF: lambda: self.send_backup(vm),
            L.RESTORE: lambda: self.schedule(
                self.disk_restore_failure,
                vm.oid,
                "Error executing image transfer script: interrupted by an oned restart",
            ),
        }

    def backup_recover(self, vm: VirtualMachine, success: bool) -> Coroutine[Any, Any, None] | None:
        """``recover`` of BACKUP*/RESTORE: the step's success (an image with no SOURCE,
        as oned makes it) or failure."""
        if vm.lcm_state in (L.BACKUP, L.BACKUP_POWEROFF):
            if not success:
                return self.backup_failure(vm.oid)
            return self._recover_backup(vm.oid)
        if vm.lcm_state == L.RESTORE:
            if success:
                return self.disk_restore_success(vm.oid)
            return self.disk_restore_failure(vm.oid)
        return None

    async def _recover_backup(self, vid: int) -> None:
        vm = self.core.vms.get(vid)
        if vm is None:
            return
        ds_id = Backups.of(vm).get_int("LAST_DATASTORE_ID")
        chain = Backups.of(vm).get_int("INCREMENTAL_BACKUP_ID")
        prune: list[int] = []
        async with Locks((self.core.datastores, ds_id), (self.core.images, chain)):
            await transition(
                self.core,
                vid,
                lambda tx: self._backup_done(tx, ds_id, prune, "", 0, ""),
                f"recover backup of VM {vid}",
            )
        for image_id in prune:
            await self._remove_backup(vid, image_id)

    # -- VMM replies -------------------------------------------------------------------

    async def backup_success(self, vid: int, payload: str = "") -> None:
        reply = parse_backup_reply(payload)
        vm = self.core.vms.get(vid)
        if vm is None:
            return
        backups = Backups.of(vm)
        ds_id = backups.get_int("LAST_DATASTORE_ID")
        chain = backups.get_int("INCREMENTAL_BACKUP_ID")
        prune: list[int] = []
        async with Locks((self.core.datastores, ds_id), (self.core.images, chain)):
            await transition(
                self.core,
                vid,
                lambda tx: self._backup_done(tx, ds_id, prune, *reply),
                f"backup success of VM {vid}",
            )
        for image_id in prune:
            await self._remove_backup(vid, image_id)

    async def _remove_backup(self, vid: int, image_id: int) -> None:
        """KEEP_LAST: the oldest backups go through ``one.image.delete``."""
        from oned.api.context import Call
        from oned.api.registry import declared
        from oned.errors import OneError, failure_message

        handler = next((m.handler for m in declared() if m.name == "one.image.delete"), None)
        if handler is None:
            return
        try:
            await handler(self.core, Call("one.image.delete", self.core.caller_of(0), -1), image_id)
        except OneError as exc:
            text = failure_message("one.image.delete", exc, "image", 0)
            self.log.error("backup_success, cannot remove VM backup {i} : {e}", i=image_id, e=text)

    def _backup_done(
        self, tx: Tx, ds_id: int, prune: list[int], source: str, size: int, fmt: str
    ) -> bool:
        """``trigger_backup_success``: state back; a new image for a FULL backup or the
        first of a chain, an increment of the chain's image otherwise."""
        vm = tx.vm
        if source or size:  # a driver reply (recover has none)
            tx.log("VMM", "I", "VM backup successfully created.")
        if not _back_from_backup(tx, "backup_success"):
            return True
        backups = Backups.of(vm)
        chain = backups.get_int("INCREMENTAL_BACKUP_ID")
        incremental = backups.mode == "INCREMENT"
        reserved = reserved_usage(vm, backups)
        if ds_id >= 0:  # keep the real size only
            tx.image_stage().quota_del(
                vm.uid, vm.gid, ds_id, {"IMAGES": 0.0, "SIZE": reserved["SIZE"] - size}
            )
        error = ""
        image: Image | None = None
        if not incremental or chain == -1:
            image, error = self._new_backup_image(tx, ds_id, backups, source, size, fmt)
            if image is not None:
                backups.ids.append(image.oid)
                keep = backups.get_int("KEEP_LAST", 0)
                if keep > 0 and len(backups.ids) > keep:
                    prune += sorted(backups.ids)[: len(backups.ids) - keep]
        if image is not None and incremental:
            backups.config["INCREMENTAL_BACKUP_ID"] = str(image.oid)
            backups.config["LAST_INCREMENT_ID"] = str(
                add_increment(image, source, size, FULL, tx.now)
            )
        elif incremental and not error:
            stored = self.core.images.get(chain)
            if stored is None:
                error = "backup image does not exists"
            else:
                image = stored.copy()
                inc_id = add_increment(image, source, size, INCREMENT, tx.now)
                if inc_id == -1:
                    error = "cannot add increment to backup image"
                else:
                    backups.config["LAST_INCREMENT_ID"] = str(inc_id)
                    tx.unit.save(self.core.images, image)
                    image = None
        if image is not None:
            tx.unit.add(self.core.images, image)
        if error:
            tx.log("LCM", "E", f"backup_success, {error}")
        elif prune:
            tx.log("LCM", "I", "Removing backup snapshots: " + " ".join(map(str, prune)))
        backups.clear_last()
        backups.store(vm)
        job_backup_done(self.core, tx, not error)
        return True

    def _new_backup_image(
        self, tx: Tx, ds_id: int, backups: Backups, source: str, size: int, fmt: str
    ) -> tuple[Image | None, str]:
        """``create_backup_image``: ``<vid> <dd-Mon HH.MM.SS>`` in the backup datastore,
        whose IMAGES gets it (the caller adds the image to the unit)."""
        vm, core = tx.vm, self.core
        ds = core.datastores.get(ds_id)
        if ds is None:
            return None, "backup datastore does not exist"
        stamp = time.strftime("%d-%b %H.%M.%S", time.localtime(tx.now))
        name = f"{vm.oid} {stamp}"
        taken = next((i for i in core.images.objects() if i.name == name and i.uid == vm.uid), None)
        if taken is not None:
            return None, f"backup image allocate error: NAME is already taken by IMAGE {taken.oid}."
        image = Image(
            oid=tx.unit.allocate(core.images),
            name=name,
            uid=vm.uid,
            gid=vm.gid,
            uname=vm.uname,
            gname=vm.gname,
            perms=Permissions.for_new_object(
                vm.uid, vm.gid, 0o177, core.config.enable_other_permissions
            ),
            type=BACKUP,
            disk_type=ds.disk_type,
            persistent=1,
            regtime=tx.now,
            modtime=tx.now,
            source=source,
            format=fmt,
            size=size,
            state=READY,
            prev_state=READY,
            running_vms=1,
            datastore_id=ds.oid,
            datastore=ds.name,
            vms={vm.oid},
            backup_disk_ids=set(backup_disk_ids(vm, backups)),
        )
        if backups.get_int("BACKUP_JOB_ID") != -1:  # kept in the image's TEMPLATE
            image.template.add("BACKUP_JOB_ID", str(backups.get_int("BACKUP_JOB_ID")))
        ds = ds.copy()
        ds.images.add(image.oid)
        tx.unit.save(core.datastores, ds)
        return image, ""

    async def backup_failure(self, vid: int, text: str = "") -> None:
        def step(tx: Tx) -> bool:
            _back_from_backup(tx, "backup_failure")
            _log_error(tx, "VMM", text)
            backups = Backups.of(tx.vm)
            ds_id = backups.get_int("LAST_DATASTORE_ID")
            if ds_id >= 0:
                tx.image_stage().quota_del(
                    tx.vm.uid, tx.vm.gid, ds_id, reserved_usage(tx.vm, backups)
                )
            backups.clear_last()
            backups.store(tx.vm)
            job_backup_done(self.core, tx, False)
            return True

        await transition(self.core, vid, step, f"backup failure of VM {vid}")

    async def backup_cancel_success(self, vid: int, info: str = "") -> None:
        """BACKUPCANCEL replies are only logged (``_driver_cancel``); the BACKUP itself
        answers with its own failure."""
        self.log.info("Message received: BACKUPCANCEL SUCCESS {vid}", vid=vid)

    async def backup_cancel_failure(self, vid: int, text: str = "") -> None:
        self.log.info("Message received: BACKUPCANCEL FAILURE {vid} {text}", vid=vid, text=text)

    # -- TM replies (RESTORE) ------------------------------------------------------------

    async def disk_restore_success(self, vid: int, text: str = "") -> None:
        def step(tx: Tx) -> bool:
            if tx.vm.lcm_state != L.RESTORE:
                tx.log("LCM", "E", "VM restore success, VM in a wrong state")
                return True
            backups = Backups.of(tx.vm)
            if backups.config:
                backups.reset_chain()
                backups.store(tx.vm)
            _quiet_state(tx, S.POWEROFF)
            tx.lcm(L.LCM_INIT)
            tx.log("LCM", "I", "VM restore operation completed.")
            return True

        await transition(self.core, vid, step, f"restore success of VM {vid}")

    async def disk_restore_failure(self, vid: int, text: str = "") -> None:
        def step(tx: Tx) -> bool:
            if tx.vm.lcm_state != L.RESTORE:
                tx.log("LCM", "E", f"restore fails, VM in a wrong state: {L(tx.vm.lcm_state).name}")
                return True
            _quiet_state(tx, S.POWEROFF)
            tx.lcm(L.LCM_INIT)
            _log_error(tx, "TrM", text)
            tx.log("LCM", "I", "VM restore operation fails")
            return True

        await transition(self.core, vid, step, f"restore failure of VM {vid}")


def forget_backup_image(core: Core, image: Image) -> None:
    """A dropped BACKUP image leaves its VM's BACKUP_IDS (and the incremental chain
    pointers when it was the chain), after the drop commits (``ImageManager`` RM)."""
    if image.type != BACKUP or not image.vms:
        return
    vid, image_id = min(image.vms), image.oid

    def step(tx: Tx) -> bool:
        backups = Backups.of(tx.vm)
        if image_id not in backups.ids:
            return False
        backups.ids = [i for i in backups.ids if i != image_id]
        if backups.get_int("INCREMENTAL_BACKUP_ID") == image_id:
            backups.reset_chain()
        backups.store(tx.vm)
        return True

    async def forget() -> None:
        await transition(core, vid, step, f"forget backup {image_id} of VM {vid}")

    from oned._async import background

    core.eventually(lambda: background(forget(), f"forget backup {image_id}"))
