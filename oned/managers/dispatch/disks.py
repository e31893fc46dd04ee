"""DispatchManager: disk attach/detach, disk snapshots, disksaveas and diskresize
(``DispatchManager::attach``, ``detach``, ``disk_snapshot_*``, ``disk_resize`` and
``VirtualMachine::set_saveas_state``).

Each operation checks the VM's state under its lock, changes the VM (disk flags, the
new disk, snapshots, history) in one transaction and sends the driver step after the
commit; refusals raise ``ActionError`` with oned's text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.errors import ActionError, NoExistsError
from oned.managers.lifecycle.tx import state_str, transition
from oned.managers.transfer import disk_commands as tmc
from oned.managers.vmm import disk_attach
from oned.managers.vmm import disk_messages as vmc
from oned.managers.vmm import disk_state as ds
from oned.managers.vmm.disk_tx import allocated, charge, image_quota
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.managers.lifecycle.tx import Tx
    from oned.objects.vm import VirtualMachine

#: ``VMActions::Action`` ids of the disk operations.
DISK_ATTACH, DISK_DETACH = 21, 22
DISK_SNAPSHOT_CREATE, DISK_SNAPSHOT_DELETE, DISK_RESIZE = 25, 26, 29
DISK_SNAPSHOT_REVERT = 41


def close_cp_history(tx: Tx, action: int, who: Any) -> None:
    """``close_cp_history``: close the open record with ``action`` and open a copy."""
    record = tx.history
    keep_off = record.retime != 0
    if not keep_off:
        record.retime = tx.now
    record.etime = tx.now
    previous = record.action
    record.action, record.uid, record.gid, record.req_id = action, who.uid, who.gid, who.req_id
    new = record.successor(len(tx.vm.history), tx.now)
    new.action = previous
    if keep_off:
        new.retime = tx.now
    tx.add_history(new)


def _enter(tx: Tx, lcm: int) -> None:
    """An off VM becomes ACTIVE in a transient LCM state (no RUNNING_* quota moves)."""
    if tx.vm.state != S.ACTIVE:
        tx.vm.set_state(S.ACTIVE)
        tx.log("VM", "I", "New state is ACTIVE")
    tx.lcm(lcm)


def _is(vm: VirtualMachine, state: int, lcm: int = L.LCM_INIT) -> bool:
    return vm.state == state and vm.lcm_state == lcm


class DispatchDisks:
    """Mixed into ``DispatchManager``, which provides ``_run`` and ``_act``."""

    core: Core
    lcm: LifeCycleManager

    async def _run(self, vid: int, step: Any, desc: str) -> VirtualMachine:
        raise NotImplementedError

    def _act(self, tx: Tx, action: int, who: Any) -> None:
        raise NotImplementedError

    async def _run_disk(self, vid: int, step: Any, desc: str) -> None:
        """A transition holding the VM's image owners too (their DATASTORE quotas)."""
        vm = self.core.vms.get(vid)
        owners = ds.image_owner_locks(self.core, vm) if vm is not None else []
        if await transition(self.core, vid, step, desc, extra_targets=owners) is None:
            raise NoExistsError("", vid, "virtual machine")

    async def attach_disk(
        self, vid: int, disk: dict[str, str] | None, who: Any, image: int | None = None
    ) -> None:
        """``attach``; ``image`` is the image the DISK names (locked with the VM)."""

        def step(tx: Tx) -> None:
            vm = tx.vm
            if _is(vm, S.ACTIVE, L.RUNNING):
                lcm = L.HOTPLUG
            elif vm.state == S.POWEROFF:
                lcm = L.HOTPLUG_PROLOG_POWEROFF
            else:
                raise ActionError(
                    f"Could not attach a new disk to VM {vid}, wrong state {state_str(vm)}."
                )
            if disk is None:
                raise ActionError("Internal error parsing DISK attribute")
            before = allocated(vm)
            disk_attach.set_up_attach(tx, dict(disk))
            charge(tx, before)
            _enter(tx, lcm)
            vm.resched = 0
            close_cp_history(tx, DISK_ATTACH, who)
            if lcm == L.HOTPLUG:
                tx.then(lambda: vmc.attach(self.lcm.vmm, vm))
            else:
                tx.then(lambda: tmc.prolog_attach(self.lcm.tm, vm))

        desc = f"attach disk to VM {vid}"
        extra = [] if image is None else [(self.core.images, image)]
        if await transition(self.core, vid, step, desc, extra_targets=extra) is None:
            raise NoExistsError("", vid, "virtual machine")

    async def detach_disk(self, vid: int, did: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            running = _is(vm, S.ACTIVE, L.RUNNING)
            if not running and vm.state != S.POWEROFF:
                raise ActionError(
                    f"Could not detach disk from VM {vid}, wrong state {state_str(vm)}."
                )
            disk = ds.disk_by_id(vm, did)
            if disk is None:
                raise ActionError(f"Disk {did} does not exist")
            if ds.is_filesystem(disk):
                raise ActionError("FILESYSTEM disks can not be detached")
            disk["ATTACH"] = "YES"
            vm.resched = 0
            close_cp_history(tx, DISK_DETACH, who)
            if running:
                tx.lcm(L.HOTPLUG)
                tx.then(lambda: vmc.detach(self.lcm.vmm, vm))
            else:
                _enter(tx, L.HOTPLUG_EPILOG_POWEROFF)
                tx.then(lambda: tmc.epilog_detach(self.lcm.tm, vm))

        await self._run(vid, step, f"detach disk from VM {vid}")

    async def disk_snapshot_create(self, vid: int, did: int, name: str, who: Any) -> int:
        made: list[int] = []

        def step(tx: Tx) -> None:
            vm = tx.vm
            state = vm.state
            if not (_is(vm, S.POWEROFF) or _is(vm, S.SUSPENDED) or _is(vm, S.ACTIVE, L.RUNNING)):
                raise ActionError(
                    f"Could not create a new snapshot for VM {vid}, wrong state {state_str(vm)}."
                )
            before = allocated(vm)
            disk = ds.disk_by_id(vm, did)
            footprint = ds.image_footprint(disk) if disk is not None else 0
            made.append(disk_attach.new_snapshot(tx, did, name))
            charge(tx, before)
            assert disk is not None
            image_quota(tx, disk, footprint, check=True)
            if state == S.POWEROFF:
                _enter(tx, L.DISK_SNAPSHOT_POWEROFF)
                tx.then(lambda: tmc.snapshot_action(self.lcm.tm, vm, "SNAP_CREATE"))
            elif state == S.SUSPENDED:
                _enter(tx, L.DISK_SNAPSHOT_SUSPENDED)
                tx.then(lambda: tmc.snapshot_action(self.lcm.tm, vm, "SNAP_CREATE"))
            else:
                tx.lcm(L.DISK_SNAPSHOT)
                tx.then(lambda: vmc.disk_snapshot_create(self.lcm.vmm, vm))
            close_cp_history(tx, DISK_SNAPSHOT_CREATE, who)

        await self._run_disk(vid, step, f"disk snapshot of VM {vid}")
        return made[0]

    async def disk_snapshot_revert(self, vid: int, did: int, sid: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            if not _is(vm, S.POWEROFF):
                raise ActionError(
                    f"Could not revert to disk snapshot for VM {vid}, wrong state {state_str(vm)}."
                )
            disk_attach.disk_snapshots(vm, did)
            if not disk_attach.set_snapshot_disk(vm, did, sid):
                raise ActionError(f"Disk id ({did}) or snapshot id ({sid}) is not valid.")
            close_cp_history(tx, DISK_SNAPSHOT_REVERT, who)
            _enter(tx, L.DISK_SNAPSHOT_REVERT_POWEROFF)
            tx.then(lambda: tmc.snapshot_action(self.lcm.tm, vm, "SNAP_REVERT"))

        await self._run(vid, step, f"disk snapshot revert of VM {vid}")

    async def disk_snapshot_delete(self, vid: int, did: int, sid: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            state = vm.state
            if not (_is(vm, S.POWEROFF) or _is(vm, S.SUSPENDED) or _is(vm, S.ACTIVE, L.RUNNING)):
                raise ActionError(
                    f"Could not delete disk snapshot from VM {vid}, wrong state {state_str(vm)}."
                )
            snaps = disk_attach.disk_snapshots(vm, did)
            disk = ds.disk_by_id(vm, did)
            assert disk is not None
            error = ds.test_delete(snaps, ds.allow_orphans(disk), sid, ds.is_persistent(disk))
            if error:
                raise ActionError(error)
            if not disk_attach.set_snapshot_disk(vm, did, sid):
                raise ActionError("")
            lcm = L.DISK_SNAPSHOT_DELETE
            if state == S.POWEROFF:
                lcm = L.DISK_SNAPSHOT_DELETE_POWEROFF
            elif state == S.SUSPENDED:
                lcm = L.DISK_SNAPSHOT_DELETE_SUSPENDED
            _enter(tx, lcm)
            close_cp_history(tx, DISK_SNAPSHOT_DELETE, who)
            tx.then(lambda: tmc.snapshot_action(self.lcm.tm, vm, "SNAP_DELETE"))

        await self._run(vid, step, f"disk snapshot delete of VM {vid}")

    async def disk_resize(self, vid: int, did: int, size: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            state = vm.state
            if not (_is(vm, S.POWEROFF) or _is(vm, S.UNDEPLOYED) or _is(vm, S.ACTIVE, L.RUNNING)):
                raise ActionError(
                    f"Could not resize disk for VM {vid}, wrong state {state_str(vm)}."
                )
            before = allocated(vm)
            disk = ds.disk_by_id(vm, did)
            footprint = ds.image_footprint(disk) if disk is not None else 0
            disk_attach.set_up_resize(vm, did, size)
            charge(tx, before)
            assert disk is not None
            image_quota(tx, disk, footprint, check=True)
            tx.touch_history()
            if state == S.POWEROFF:
                _enter(tx, L.DISK_RESIZE_POWEROFF)
                tx.then(lambda: tmc.resize(self.lcm.tm, vm))
            elif state == S.UNDEPLOYED:
                _enter(tx, L.DISK_RESIZE_UNDEPLOYED)
                tx.then(lambda: tmc.resize(self.lcm.tm, vm))
            else:
                tx.lcm(L.DISK_RESIZE)
                tx.then(lambda: vmc.disk_resize(self.lcm.vmm, vm))
            if state != S.UNDEPLOYED:
                close_cp_history(tx, DISK_RESIZE, who)

        await self._run_disk(vid, step, f"disk resize of VM {vid}")
