"""LifeCycleManager: disk hotplug, disk snapshots, disk resize and disk-saveas replies
(``LifeCycleStates.cc`` ``trigger_attach_*``, ``trigger_detach_*``,
``trigger_disk_snapshot_*``, ``trigger_disk_resize_*``, ``trigger_saveas_*``, with
``VirtualMachinePool::delete_attach_disk``).

Each callback re-reads the VM under its lock, checks the LCM state the reply is for and
commits the VM (and the images it gives back) in one transaction. The ``*_POWEROFF`` /
``*_SUSPENDED`` / ``*_UNDEPLOYED`` variants go back to their resting state as
``DispatchManager::trigger_poweroff_success`` and friends do.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from oned.managers.lifecycle.tx import Tx, transition
from oned.managers.transfer import disk_commands as tmc
from oned.managers.vmm import disk_messages as vmc
from oned.managers.vmm import disk_state as ds
from oned.managers.vmm.disk_tx import (
    DISK_DETACH,
    INTERRUPTED,
    RESIZE_STATES,
    SAVEAS_STATES,
    SNAP_CREATE,
    SNAP_DELETE,
    allocated,
    backups_after_hotplug,
    delete_attach_disk,
    image_quota,
    refund,
    report,
    rest,
    resting,
)
from oned.objects import image as im
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager


class LcmDisks:
    """Mixed into ``LifeCycleManager``."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager

    def schedule(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        raise NotImplementedError

    async def _disk_step(self, vid: int, step: Callable[[Tx], bool], desc: str) -> None:
        vm = self.core.vms.get(vid)
        owners = ds.image_owner_locks(self.core, vm) if vm is not None else []
        await transition(self.core, vid, step, f"{desc} of VM {vid}", extra_targets=owners)

    # -- attach / detach -------------------------------------------------------------

    async def attach_success(self, vid: int, _info: str = "") -> None:
        def step(tx: Tx) -> bool:
            lcm = tx.vm.lcm_state
            if lcm not in (L.HOTPLUG, L.HOTPLUG_PROLOG_POWEROFF):
                tx.log("LCM", "E", "attach_success_action, VM in a wrong state")
                return True
            tx.log("LCM", "I", "VM Disk successfully attached.")
            disk = ds.flagged(tx.vm, "ATTACH")
            if disk is not None:
                backups_after_hotplug(tx.vm, ds.to_int(disk.get("DISK_ID"), -1), detached=False)
                disk.pop("ATTACH", None)
            rest(tx, S.ACTIVE if lcm == L.HOTPLUG else S.POWEROFF)
            return True

        await self._disk_step(vid, step, "attach success")

    async def attach_failure(self, vid: int, message: str = "") -> None:
        def step(tx: Tx) -> bool:
            lcm = tx.vm.lcm_state
            if lcm not in (L.HOTPLUG, L.HOTPLUG_PROLOG_POWEROFF):
                tx.log("LCM", "E", "attach_failure_action, VM in a wrong state")
                return True
            report(tx, message)
            before = allocated(tx.vm)
            delete_attach_disk(tx, False)
            refund(tx, before)
            if lcm != L.HOTPLUG:
                tx.log("LCM", "I", "VM Disk attach failure.")
            rest(tx, S.ACTIVE if lcm == L.HOTPLUG else S.POWEROFF)
            return True

        await self._disk_step(vid, step, "attach failure")

    async def detach_success(self, vid: int, _info: str = "") -> None:
        def step(tx: Tx) -> bool:
            lcm = tx.vm.lcm_state
            if lcm not in (L.HOTPLUG, L.HOTPLUG_EPILOG_POWEROFF):
                tx.log("LCM", "E", "detach_success_action, VM in a wrong state")
                return True
            before = allocated(tx.vm)
            delete_attach_disk(tx, True)
            refund(tx, before)
            if lcm != L.HOTPLUG:
                tx.log("LCM", "I", "VM Disk successfully detached.")
            rest(tx, S.ACTIVE if lcm == L.HOTPLUG else S.POWEROFF)
            return True

        await self._disk_step(vid, step, "detach success")

    async def detach_failure(self, vid: int, message: str = "") -> None:
        def step(tx: Tx) -> bool:
            lcm = tx.vm.lcm_state
            if lcm not in (L.HOTPLUG, L.HOTPLUG_EPILOG_POWEROFF):
                tx.log("LCM", "E", "detach_failure_action, VM in a wrong state")
                return True
            report(tx, message)
            if lcm != L.HOTPLUG:
                tx.log("LCM", "I", "VM Disk detach failure.")
            disk = ds.flagged(tx.vm, "ATTACH")
            if disk is not None:
                disk.pop("ATTACH", None)
            rest(tx, S.ACTIVE if lcm == L.HOTPLUG else S.POWEROFF)
            return True

        await self._disk_step(vid, step, "detach failure")

    # -- disk snapshots --------------------------------------------------------------

    def _snapshot_done(self, tx: Tx, success: bool, message: str) -> bool:
        vm, lcm = tx.vm, tx.vm.lcm_state
        disk = ds.flagged(vm, "DISK_SNAPSHOT_ACTIVE")
        if disk is None or "DISK_SNAPSHOT_ID" not in disk:
            tx.log("LCM", "E", "Snapshot DISK could not be found")
            return True
        did, sid = ds.to_int(disk.get("DISK_ID"), -1), ds.to_int(disk["DISK_SNAPSHOT_ID"], -1)
        mode = ds.allow_orphans(disk)
        all_snaps = ds.vm_snapshots(vm)
        snaps = all_snaps.get(did)
        word = "success" if success else "failure"
        if lcm not in (*SNAP_CREATE, *SNAP_DELETE, L.DISK_SNAPSHOT_REVERT_POWEROFF):
            tx.log("LCM", "E", f"disk_snapshot_{word}, VM in a wrong state")
            return True
        report(tx, message)
        before = allocated(vm)
        footprint = ds.image_footprint(disk)
        if success and lcm in SNAP_CREATE:
            tx.log("LCM", "I", "VM disk snapshot operation completed.")
            if snaps is not None:
                ds.activate(snaps, mode, sid, False)
        elif success and lcm == L.DISK_SNAPSHOT_REVERT_POWEROFF:
            tx.log("LCM", "I", "VM disk snapshot operation completed.")
            if snaps is not None:
                size = snaps.size_of(sid)
                if size and ds.to_int(disk.get("SIZE")) != size:
                    disk["SIZE"] = str(size)
                ds.activate(snaps, mode, sid, True)
                if mode == ds.LINEAR:
                    for young in ds.younger(snaps, sid):
                        ds.delete(snaps, mode, young)
        elif success:
            tx.log("LCM", "I", "VM disk snapshot deleted.")
            if snaps is not None:
                ds.delete(snaps, mode, sid)
        elif lcm in SNAP_CREATE:
            tx.log("LCM", "E", "Could not take disk snapshot.")
            if snaps is not None:
                ds.delete(snaps, mode, sid)
        else:
            tx.log("LCM", "E", "VM disk snapshot operation failed.")
        if snaps is not None:
            disk["DISK_SNAPSHOT_TOTAL_SIZE"] = str(snaps.total_size())
            ds.set_vm_snapshots(vm, all_snaps)
        disk.pop("DISK_SNAPSHOT_ACTIVE", None)
        disk.pop("DISK_SNAPSHOT_ID", None)
        refund(tx, before)
        image_quota(tx, disk, footprint)
        tx.touch_history()
        self._snapshots_to_image(tx, disk, snaps, success)
        rest(tx, resting(lcm))
        return True

    def _snapshots_to_image(
        self, tx: Tx, disk: ds.Disk, snaps: im.Snapshots | None, success: bool
    ) -> None:
        """A persistent image linked (LN_TARGET NONE) follows its disk's snapshots."""
        raw = disk.get("IMAGE_ID", "").strip()
        target = ds.tm_target(disk)
        keep = target == "NONE" if success else target != "SYSTEM"
        if not raw.isdigit() or not ds.is_persistent(disk) or not keep:
            return
        img = tx.image_stage().image(int(raw))
        if img is None or img.state != im.USED_PERS or img.type not in (im.OS, im.DATABLOCK):
            return
        if success and tx.vm.lcm_state == L.DISK_SNAPSHOT_REVERT_POWEROFF:
            img.size = ds.to_int(disk.get("SIZE"), img.size)
        if ds.persistent_snapshots(disk):
            if snaps is not None and snaps.items:
                img.snapshots = im.Snapshots(
                    snaps.allow_orphans,
                    snaps.current_base,
                    snaps.next_snapshot,
                    [dict(s) for s in snaps.items],
                )
            else:
                img.snapshots = im.Snapshots(allow_orphans=img.snapshots.allow_orphans)

    async def disk_snapshot_success(self, vid: int, _info: str = "") -> None:
        await self._disk_step(
            vid, lambda tx: self._snapshot_done(tx, True, ""), "disk snapshot success"
        )

    async def disk_snapshot_failure(self, vid: int, message: str = "") -> None:
        await self._disk_step(
            vid, lambda tx: self._snapshot_done(tx, False, message), "disk snapshot failure"
        )

    # -- disk resize -----------------------------------------------------------------

    def _resize_done(self, tx: Tx, success: bool, message: str) -> bool:
        lcm = tx.vm.lcm_state
        word = "success" if success else "failure"
        if lcm not in RESIZE_STATES:
            tx.log("LCM", "E", f"disk_resize_{word}, VM in a wrong state")
            return True
        report(tx, message)
        done = "completed" if success else "failed"
        tx.log("LCM", "I", f"VM disk resize operation {done}.")
        disk = ds.flagged(tx.vm, "RESIZE")
        if disk is None:
            text = (
                "disk_resize_success, VM doesn't have a disk resize operation in progress"
                if success
                else "disk_resize_failure, but no resize operation in progress"
            )
            tx.log("LCM", "E", text)
            if not success:
                return True
        else:
            before = allocated(tx.vm)
            footprint = ds.image_footprint(disk)
            if not success and disk.get("SIZE_PREV"):
                disk["SIZE"] = disk["SIZE_PREV"]
            disk.pop("SIZE_PREV", None)
            disk.pop("RESIZE", None)
            refund(tx, before)
            image_quota(tx, disk, footprint)
            tx.touch_history()
            raw = disk.get("IMAGE_ID", "").strip()
            linked = ds.is_persistent(disk) and ds.tm_target(disk) == "NONE"
            if success and raw.isdigit() and linked:
                img = tx.image_stage().image(int(raw))
                if img is not None and img.state == im.USED_PERS:
                    img.size = ds.to_int(disk.get("SIZE"), img.size)
        rest(tx, resting(lcm))
        return True

    async def disk_resize_success(self, vid: int, _info: str = "") -> None:
        await self._disk_step(
            vid, lambda tx: self._resize_done(tx, True, ""), "disk resize success"
        )

    async def disk_resize_failure(self, vid: int, message: str = "") -> None:
        await self._disk_step(
            vid, lambda tx: self._resize_done(tx, False, message), "disk resize failure"
        )

    # -- disk-saveas -----------------------------------------------------------------

    async def saveas_success(self, vid: int, _info: str = "") -> None:
        await self._saveas_done(vid, True, "")

    async def saveas_failure(self, vid: int, message: str = "") -> None:
        await self._saveas_done(vid, False, message)

    async def _saveas_done(self, vid: int, success: bool, message: str) -> None:
        from oned.managers.vmm.disk_saveas import finish_image

        found: list[int] = []

        def step(tx: Tx) -> bool:
            disk = ds.flagged(tx.vm, "HOTPLUG_SAVE_AS_ACTIVE")
            if disk is not None:
                if "HOTPLUG_SAVE_AS" in disk:
                    found.append(ds.to_int(disk["HOTPLUG_SAVE_AS"], -1))
                for key in (
                    "HOTPLUG_SAVE_AS_ACTIVE",
                    "HOTPLUG_SAVE_AS",
                    "HOTPLUG_SAVE_AS_SOURCE",
                    "HOTPLUG_SAVE_AS_SNAPSHOT_ID",
                ):
                    disk.pop(key, None)
            state = SAVEAS_STATES.get(L(tx.vm.lcm_state))
            word = "success" if success else "failure"
            if state is None:
                tx.log("LCM", "E", f"saveas_{word}_action, VM in a wrong state")
                found.clear()
                return True
            report(tx, message)
            rest(tx, state)
            return True

        await self._disk_step(vid, step, f"saveas {'success' if success else 'failure'}")
        for iid in found:
            if iid >= 0:
                await finish_image(self.core, iid, success)

    # -- recover -----------------------------------------------------------------------

    def disk_recover(self, vm: VirtualMachine, success: bool) -> Coroutine[Any, Any, None] | None:
        """``recover`` of a disk operation state: its success or failure callback
        (HOTPLUG recovers as an attach, as oned does)."""
        lcm = vm.lcm_state
        if lcm in (L.HOTPLUG, L.HOTPLUG_PROLOG_POWEROFF):
            pair = (self.attach_success, self.attach_failure)
        elif lcm == L.HOTPLUG_EPILOG_POWEROFF:
            pair = (self.detach_success, self.detach_failure)
        elif lcm in SAVEAS_STATES:
            pair = (self.saveas_success, self.saveas_failure)
        elif lcm in (*SNAP_CREATE, *SNAP_DELETE, L.DISK_SNAPSHOT_REVERT_POWEROFF):
            pair = (self.disk_snapshot_success, self.disk_snapshot_failure)
        elif lcm in RESIZE_STATES:
            pair = (self.disk_resize_success, self.disk_resize_failure)
        else:
            return None
        return pair[0 if success else 1](vm.oid, "")

    # -- restart -----------------------------------------------------------------------

    def disk_replay(self, vm: VirtualMachine) -> Callable[[], None] | None:
        """The driver step to send again for a VM found in a disk operation state."""
        lcm = vm.lcm_state
        current = vm.current
        action = current.action if current is not None else 0
        tm, vmm = self.tm, self.vmm
        if lcm == L.HOTPLUG and ds.flagged(vm, "ATTACH") is not None:
            if action == DISK_DETACH:
                return lambda: vmc.detach(vmm, vm)
            return lambda: vmc.attach(vmm, vm)
        table: dict[int, Callable[[], None]] = {
            L.HOTPLUG_PROLOG_POWEROFF: lambda: tmc.prolog_attach(tm, vm),
            L.HOTPLUG_EPILOG_POWEROFF: lambda: tmc.epilog_detach(tm, vm),
            L.DISK_SNAPSHOT: lambda: vmc.disk_snapshot_create(vmm, vm),
            L.DISK_SNAPSHOT_POWEROFF: lambda: tmc.snapshot_action(tm, vm, "SNAP_CREATE"),
            L.DISK_SNAPSHOT_SUSPENDED: lambda: tmc.snapshot_action(tm, vm, "SNAP_CREATE"),
            L.DISK_SNAPSHOT_REVERT_POWEROFF: lambda: tmc.snapshot_action(tm, vm, "SNAP_REVERT"),
            L.DISK_RESIZE: lambda: vmc.disk_resize(vmm, vm),
            L.DISK_RESIZE_POWEROFF: lambda: tmc.resize(tm, vm),
            L.DISK_RESIZE_UNDEPLOYED: lambda: tmc.resize(tm, vm),
        }
        for state in SNAP_DELETE:
            table[state] = lambda: tmc.snapshot_action(tm, vm, "SNAP_DELETE")
        if lcm in SAVEAS_STATES:
            disk = ds.flagged(vm, "HOTPLUG_SAVE_AS_ACTIVE")
            if disk is not None and "HOTPLUG_SAVE_AS_SOURCE" in disk:
                return lambda: tmc.saveas_hot(tm, vm)
            return lambda: self.schedule(self.saveas_failure, vm.oid, INTERRUPTED)
        return table.get(lcm)
