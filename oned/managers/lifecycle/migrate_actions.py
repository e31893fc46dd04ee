"""LifeCycleManager: cold and live migration (mirrors ``LifeCycleActions.cc``
``trigger_migrate``/``trigger_live_migrate`` and the migration branches of
``LifeCycleStates.cc``: ``start_prolog_migrate``, ``revert_migrate_after_failure``,
``deploy_success`` in MIGRATE, ``prolog_success``/``prolog_failure`` in the
PROLOG_MIGRATE* states).

A migration runs on two history records: the new one (target host, added by the
DispatchManager) and the previous one (source host). Capacity is added to the target
when the migration starts and taken from the source once the VM has left it (after
the save for a cold migration, at once for a VM that is off, after the driver's reply
for a live one); a failed save or live migration puts the VM back on the source with
a new record copied from the previous one.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from oned.managers.lifecycle.tx import Tx, add_capacity, del_capacity
from oned.objects.history import History, VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager

#: Cold migrations that shut the guest down instead of saving it (BOOT + DEPLOY after).
POWEROFF_MIGRATIONS = (VMAction.POWEROFF_MIGRATE, VMAction.POWEROFF_HARD_MIGRATE)

#: The PROLOG_MIGRATE* states (and their failures, for ``recover --success``).
PROLOG_MIGRATES = frozenset(
    {
        L.PROLOG_MIGRATE,
        L.PROLOG_MIGRATE_FAILURE,
        L.PROLOG_MIGRATE_POWEROFF,
        L.PROLOG_MIGRATE_POWEROFF_FAILURE,
        L.PROLOG_MIGRATE_SUSPEND,
        L.PROLOG_MIGRATE_SUSPEND_FAILURE,
        L.PROLOG_MIGRATE_UNKNOWN,
        L.PROLOG_MIGRATE_UNKNOWN_FAILURE,
    }
)

#: ``recover --failure`` of a failed migration prolog: back to the source host.
ROLLBACK = {
    L.PROLOG_MIGRATE_FAILURE: L.PROLOG_MIGRATE,
    L.PROLOG_MIGRATE_POWEROFF_FAILURE: L.PROLOG_MIGRATE_POWEROFF,
    L.PROLOG_MIGRATE_SUSPEND_FAILURE: L.PROLOG_MIGRATE_SUSPEND,
    L.PROLOG_MIGRATE_UNKNOWN_FAILURE: L.PROLOG_MIGRATE_UNKNOWN,
}

#: ``retry`` of a failed migration prolog re-sends the transfer.
RETRY = dict(ROLLBACK)


def set_who(record: History, action: int, uid: int, gid: int, req_id: int) -> None:
    """``History::set_action``: the action and who asked for it."""
    record.action, record.uid, record.gid, record.req_id = action, uid, gid, req_id


def release_previous_vnc_port(vm: VirtualMachine) -> None:
    """``release_previous_vnc_port``: the port of the source cluster is given back."""
    graphics = vm.template.get_vector("GRAPHICS")
    if graphics is not None:
        graphics.pop("PREVIOUS_PORT", None)


def rollback_previous_vnc_port(vm: VirtualMachine) -> None:
    """``rollback_previous_vnc_port``: the VM keeps the port it had on the source."""
    graphics = vm.template.get_vector("GRAPHICS")
    if graphics is None or not graphics.get("PREVIOUS_PORT", "").strip().isdigit():
        return
    graphics["PORT"] = graphics.pop("PREVIOUS_PORT").strip()


def prolog_migrate_lines(vm: VirtualMachine, location: str) -> list[str]:
    """``trigger_prolog_migr``: MV each disk, then the VM directory, from the previous
    host's system directory to the current one (``location`` is DATASTORE_LOCATION)."""
    current, previous = vm.current, vm.previous
    assert current is not None and previous is not None
    vid = vm.oid
    src_dir = f"{location}/{previous.ds_id}/{vid}"
    dst_dir = f"{location}/{current.ds_id}/{vid}"
    lines = []
    for disk in vm.template.vectors("DISK"):
        if disk.get("TYPE", "").upper() == "FILESYSTEM":
            continue
        disk_id = disk.get("DISK_ID", "0")
        if not disk.get("IMAGE_ID", "").strip():
            tm, ds = current.tm_mad, str(current.ds_id)
        else:
            tm, ds = disk.get("TM_MAD", "").strip(), disk.get("DATASTORE_ID", "").strip()
            if not tm or not ds:
                continue
        system = disk.get("TM_MAD_SYSTEM", "").strip()
        word = f"MV.{system}" if system else "MV"
        lines.append(
            f"{word} {tm} {previous.hostname}:{src_dir}/disk.{disk_id} "
            f"{current.hostname}:{dst_dir}/disk.{disk_id} {vid} {ds}"
        )
    lines.append(
        f"MV {current.tm_mad} {previous.hostname}:{src_dir} {current.hostname}:{dst_dir} "
        f"{vid} {current.ds_id}"
    )
    return lines


class LcmMigrate:
    """Mixed into ``LifeCycleManager``."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager

    if TYPE_CHECKING:  # provided by LifeCycleManager and LcmStates

        def schedule(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None: ...

        def _leave_active(self, tx: Tx, state: int) -> None: ...

        async def prolog_success(self, vid: int, _info: str = "") -> None: ...

    # -- actions (the DispatchManager has added the target's history record) ---------

    def migrate(self, tx: Tx, action: int, uid: int, gid: int, req_id: int) -> None:
        """``trigger_migrate``: SAVE_MIGRATE from RUNNING (SAVE, or SHUTDOWN/CANCEL for
        the poweroff modes), else straight to PROLOG_MIGRATE_POWEROFF/SUSPEND/UNKNOWN."""
        vm = tx.vm
        record = tx.history
        previous = vm.previous
        assert previous is not None
        tx.touch_history(previous)
        moved = record.hid != previous.hid
        now = tx.now
        if vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING:
            tx.lcm(L.SAVE_MIGRATE)
            vm.resched = 0
            if moved:
                self._add_capacity(tx, record.hid)
            record.stime = now
            set_who(record, action, uid, gid, req_id)
            set_who(previous, action, uid, gid, req_id)
            if action == VMAction.POWEROFF_MIGRATE:
                tx.then(lambda: self.vmm.shutdown(vm, False))
            elif action == VMAction.POWEROFF_HARD_MIGRATE:
                tx.then(lambda: self.vmm.shutdown(vm, True))
            else:
                tx.then(lambda: self.vmm.save(vm))
            return
        if vm.state == S.POWEROFF:
            target = L.PROLOG_MIGRATE_POWEROFF
        elif vm.state == S.SUSPENDED:
            target = L.PROLOG_MIGRATE_SUSPEND
        else:
            target = L.PROLOG_MIGRATE_UNKNOWN
            set_who(previous, VMAction.MIGRATE, uid, gid, req_id)
        previous.retime = previous.etime = now
        if vm.state != S.ACTIVE:
            tx.state(S.ACTIVE)
        tx.lcm(target)
        vm.resched = 0
        set_who(record, VMAction.MIGRATE, uid, gid, req_id)
        if moved:
            self._add_capacity(tx, record.hid)
            self._del_capacity(tx, previous.hid)
            release_previous_vnc_port(vm)
        record.stime = record.pstime = now
        tx.then(lambda: self.tm.prolog_migrate(vm))

    def live_migrate(self, tx: Tx, uid: int, gid: int, req_id: int) -> None:
        """``trigger_live_migrate``: MIGRATE, capacity on the target, VMM MIGRATE."""
        vm = tx.vm
        record = tx.history
        previous = vm.previous
        assert previous is not None
        tx.touch_history(previous)
        tx.lcm(L.MIGRATE)
        vm.resched = 0
        if record.hid != previous.hid:
            self._add_capacity(tx, record.hid)
        record.stime = tx.now
        set_who(previous, VMAction.LIVE_MIGRATE, uid, gid, req_id)
        tx.then(lambda: self.vmm.migrate(vm))

    # -- driver-reply branches (called from ``LcmStates`` with the Tx open) ------------

    def start_prolog_migrate(self, tx: Tx) -> None:
        """``start_prolog_migrate`` (save or shutdown done on the source): the source
        is released and the files move to the target."""
        vm = tx.vm
        record = tx.history
        previous = vm.previous
        tx.lcm(L.PROLOG_MIGRATE)
        if previous is not None:
            tx.touch_history(previous)
            previous.etime = previous.retime = tx.now
            if previous.hid != record.hid:
                self._del_capacity(tx, previous.hid)
                release_previous_vnc_port(vm)
        record.pstime = tx.now
        tx.then(lambda: self.tm.prolog_migrate(vm))

    def revert_migrate(self, tx: Tx, live: bool) -> None:
        """``revert_migrate_after_failure``: RUNNING again on the source host, in a new
        record copied from the previous one; the target's capacity is given back."""
        vm = tx.vm
        record = tx.history
        previous = vm.previous
        now = tx.now
        tx.lcm(L.RUNNING)
        record.etime = now
        if previous is not None:
            if record.hid != previous.hid:
                self._del_capacity(tx, record.hid)
                rollback_previous_vnc_port(vm)
            tx.touch_history(previous)
            previous.etime = previous.retime = now
            copy = History(
                vm.oid,
                len(vm.history),
                previous.hostname,
                previous.hid,
                previous.cid,
                now,
                0,
                previous.vm_mad,
                previous.tm_mad,
                previous.ds_id,
                plan_id=previous.plan_id,
                action_id=previous.action_id,
                rstime=now,
            )
            tx.add_history(copy)
            vm.template.set("TM_MAD_SYSTEM", copy.tm_mad)
        if live:
            tx.log("LCM", "I", "Fail to live migrate VM. Assuming that the VM is still RUNNING.")
        else:
            tx.log(
                "LCM",
                "I",
                "Fail to save VM state while migrating. Assuming that the VM is still RUNNING.",
            )

    def migrate_success(self, tx: Tx) -> None:
        """``deploy_success`` in MIGRATE: RUNNING on the target, the source released."""
        vm = tx.vm
        record = tx.history
        previous = vm.previous
        record.rstime = tx.now
        if previous is not None:
            tx.touch_history(previous)
            previous.etime = previous.retime = tx.now
            if previous.hid != record.hid:
                self._del_capacity(tx, previous.hid)
        tx.lcm(L.RUNNING)
        release_previous_vnc_port(vm)

    def prolog_migrate_success(self, tx: Tx) -> bool:
        """``prolog_success`` in a PROLOG_MIGRATE* state (or its failure)."""
        vm = tx.vm
        lcm = L(vm.lcm_state)
        record = tx.history
        now = tx.now
        if lcm in (L.PROLOG_MIGRATE_POWEROFF, L.PROLOG_MIGRATE_POWEROFF_FAILURE):
            record.petime = record.retime = now
            self._leave_active(tx, S.POWEROFF)
            return True
        if lcm in (L.PROLOG_MIGRATE_SUSPEND, L.PROLOG_MIGRATE_SUSPEND_FAILURE):
            record.petime = record.retime = now
            self._leave_active(tx, S.SUSPENDED)
            return True
        if lcm in (L.PROLOG_MIGRATE, L.PROLOG_MIGRATE_FAILURE) and (
            record.action not in POWEROFF_MIGRATIONS
        ):
            tx.lcm(L.BOOT_MIGRATE)
            tx.then(lambda: self.vmm.restore(vm))
        else:
            tx.lcm(L.BOOT)
            tx.then(lambda: self.vmm.deploy(vm))
        record.petime = record.rstime = now
        return True

    def prolog_migrate_rollback(self, tx: Tx) -> bool:
        """``prolog_failure`` in a PROLOG_MIGRATE*_FAILURE state (``recover
        --failure``): the files are taken as still on the previous host; a record copied
        from it takes the VM back there and the prolog counts as done."""
        vm = tx.vm
        record = tx.history
        previous = vm.previous
        if previous is None:
            return False
        now = tx.now
        same_host = record.hid == previous.hid
        record.petime = record.etime = now
        tx.lcm(ROLLBACK[L(vm.lcm_state)])
        if not same_host:
            self._del_capacity(tx, record.hid)
        copy = History(
            vm.oid,
            len(vm.history),
            previous.hostname,
            previous.hid,
            previous.cid,
            now,
            0,
            previous.vm_mad,
            previous.tm_mad,
            previous.ds_id,
            plan_id=previous.plan_id,
            action_id=previous.action_id,
            pstime=now,
        )
        tx.add_history(copy)
        vm.template.set("TM_MAD_SYSTEM", copy.tm_mad)
        if not same_host:
            self._add_capacity(tx, copy.hid)
        rollback_previous_vnc_port(vm)
        vid = vm.oid
        tx.then(lambda: self.schedule(self.prolog_success, vid))
        return True

    def release_previous_host(self, tx: Tx) -> None:
        """A VM cleaned up in the middle of a migration may still hold the source
        host's capacity (SAVE_MIGRATE, MIGRATE): ``clean_up_vm`` releases both."""
        vm = tx.vm
        current, previous = vm.current, vm.previous
        if current is None or previous is None:
            return
        if vm.state == S.ACTIVE and vm.lcm_state in (L.SAVE_MIGRATE, L.MIGRATE):
            tx.touch_history(previous)
            previous.etime = previous.retime = tx.now
        if previous.hid != current.hid:
            self._del_capacity(tx, previous.hid)

    # -- restart recovery ------------------------------------------------------------

    def migrate_replay(self, vm: VirtualMachine) -> dict[L, Callable[[], None]]:
        """The driver step of each migration state, sent again after a restart (or
        by ``retry``)."""
        current = vm.current
        action = current.action if current is not None else VMAction.NONE
        if action == VMAction.POWEROFF_MIGRATE:
            save: Callable[[], None] = lambda: self.vmm.shutdown(vm, False)  # noqa: E731
        elif action == VMAction.POWEROFF_HARD_MIGRATE:
            save = lambda: self.vmm.shutdown(vm, True)  # noqa: E731
        else:
            save = lambda: self.vmm.save(vm)  # noqa: E731
        prolog: Callable[[], None] = lambda: self.tm.prolog_migrate(vm)  # noqa: E731
        return {
            L.SAVE_MIGRATE: save,
            L.MIGRATE: lambda: self.vmm.migrate(vm),
            L.PROLOG_MIGRATE: prolog,
            L.PROLOG_MIGRATE_POWEROFF: prolog,
            L.PROLOG_MIGRATE_SUSPEND: prolog,
            L.PROLOG_MIGRATE_UNKNOWN: prolog,
            L.BOOT_MIGRATE: lambda: self.vmm.restore(vm),
        }

    # -- host capacity ---------------------------------------------------------------

    def _add_capacity(self, tx: Tx, hid: int) -> None:
        host = tx.host(hid)
        if host is not None and tx.vm.oid not in host.vms:
            add_capacity(host, tx.vm)

    def _del_capacity(self, tx: Tx, hid: int) -> None:
        host = tx.host(hid)
        if host is not None:
            del_capacity(host, tx.vm)


def migrate_command(vm: VirtualMachine, sysdir: str) -> str:
    """``migrate_transfer_command``: the TM ``MIGRATE`` line the VMM driver runs as
    pre/post-migrate (``MIGRATE tm_mad src dst sysdir vid ds``)."""
    current, previous = vm.current, vm.previous
    assert current is not None and previous is not None
    return (
        f"MIGRATE {current.tm_mad} {previous.hostname} {current.hostname} {sysdir} "
        f"{vm.oid} {current.ds_id}"
    )
