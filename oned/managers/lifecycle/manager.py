"""``LifeCycleManager``: the actions that start driver work (mirrors
``LifeCycleActions.cc``) and the restart recovery no OpenNebula release has.

Actions run inside a ``Tx`` opened by the DispatchManager (state checks, new state,
history and host capacity in one transaction); the driver message goes out after the
commit. ``resume()`` runs once at start: every VM found in a transient state gets its
driver step re-issued (or, for steps that cannot be replayed, its failure callback), so
a ``kill -9`` never leaves a VM waiting for a reply that will not come.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from oned._async import background
from oned.log import logger
from oned.managers.lifecycle.backup_actions import LcmBackups
from oned.managers.lifecycle.disk_actions import LcmDisks
from oned.managers.lifecycle.migrate_actions import RETRY as MIGRATE_RETRY
from oned.managers.lifecycle.migrate_actions import LcmMigrate
from oned.managers.lifecycle.monitor_states import LcmMonitor
from oned.managers.lifecycle.nic_actions import LcmNics
from oned.managers.lifecycle.states import LcmStates
from oned.managers.lifecycle.system_actions import LcmSystem
from oned.managers.lifecycle.tx import Tx, add_capacity, transition
from oned.managers.lifecycle.vmlog import VmLogWriter
from oned.objects.history import History, VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager

_HARD = {VMAction.TERMINATE_HARD, VMAction.POWEROFF_HARD, VMAction.UNDEPLOY_HARD}


class LifeCycleManager(LcmStates, LcmDisks, LcmNics, LcmSystem, LcmBackups, LcmMigrate, LcmMonitor):
    """LCM actions and driver-reply callbacks for every VM."""

    log = logger("LCM")

    def __init__(self, core: Core, vmm: VirtualMachineManager, tm: TransferManager) -> None:
        self.core = core
        self.vmm = vmm
        self.tm = tm
        vmm.lcm = self
        tm.lcm = self
        self.log_writer = VmLogWriter(core.clock)

    def schedule(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run a callback on the next reactor turn (``Listener::trigger``)."""
        self.core.eventually(lambda: background(fn(*args), f"{fn.__name__}{args}"))

    # -- actions (called with the VM's Tx open) ----------------------------------------

    def set_action(self, tx: Tx, action: int, uid: int, gid: int, req_id: int) -> None:
        record = tx.history
        record.action, record.uid, record.gid, record.req_id = action, uid, gid, req_id

    def deploy(self, tx: Tx) -> None:
        """``deploy_action``: ACTIVE, capacity on the host, PROLOG by what came before."""
        vm = tx.vm
        previous = vm.previous
        record = tx.history
        if vm.state != S.ACTIVE:
            tx.state(S.ACTIVE)
        last = previous.action if previous is not None else VMAction.NONE
        if last == VMAction.STOP:
            tx.lcm(L.PROLOG_RESUME)
            send = self.tm.prolog_resume
        elif last in (VMAction.UNDEPLOY, VMAction.UNDEPLOY_HARD):
            tx.lcm(L.PROLOG_UNDEPLOY)
            send = self.tm.prolog_resume
        else:
            tx.lcm(L.PROLOG)
            send = self.tm.prolog
        record.pstime = tx.now
        host = tx.host(record.hid)
        if host is not None:
            add_capacity(host, vm)
        tx.then(lambda: send(vm))

    def shutdown(self, tx: Tx, hard: bool) -> None:
        """``shutdown_action`` (terminate): SHUTDOWN from RUNNING/UNKNOWN, else EPILOG."""
        vm = tx.vm
        if vm.state == S.ACTIVE and vm.lcm_state in (L.RUNNING, L.UNKNOWN, L.SHUTDOWN):
            if vm.lcm_state == L.SHUTDOWN:
                tx.then(lambda: self.vmm.driver_cancel(vm))
            else:
                tx.lcm(L.SHUTDOWN)
            vm.resched = 0
            tx.then(lambda: self.vmm.shutdown(vm, hard))
            return
        local = vm.state in (S.STOPPED, S.UNDEPLOYED)
        tx.state(S.ACTIVE)
        tx.lcm(L.EPILOG)
        record = tx.history
        record.estime = tx.now
        if not record.retime and not local:
            record.retime = tx.now
        tx.then(lambda: self.tm.epilog(vm, local))

    def poweroff(self, tx: Tx, hard: bool) -> None:
        vm = tx.vm
        if vm.lcm_state == L.SHUTDOWN_POWEROFF:
            tx.then(lambda: self.vmm.driver_cancel(vm))
        else:
            tx.lcm(L.SHUTDOWN_POWEROFF)
        vm.resched = 0
        tx.then(lambda: self.vmm.shutdown(vm, hard))

    def undeploy(self, tx: Tx, hard: bool) -> None:
        vm = tx.vm
        if vm.state == S.POWEROFF:
            tx.state(S.ACTIVE)
            tx.lcm(L.EPILOG_UNDEPLOY)
            tx.history.estime = tx.now
            tx.then(lambda: self.tm.epilog_stop(vm))
            return
        if vm.lcm_state == L.SHUTDOWN_UNDEPLOY:
            tx.then(lambda: self.vmm.driver_cancel(vm))
        else:
            tx.lcm(L.SHUTDOWN_UNDEPLOY)
        vm.resched = 0
        tx.then(lambda: self.vmm.shutdown(vm, hard))

    def suspend(self, tx: Tx) -> None:
        vm = tx.vm
        tx.lcm(L.SAVE_SUSPEND)
        vm.resched = 0
        tx.then(lambda: self.vmm.save(vm))

    def stop_action(self, tx: Tx) -> None:
        vm = tx.vm
        if vm.state == S.SUSPENDED:
            tx.state(S.ACTIVE)
            tx.lcm(L.EPILOG_STOP)
            tx.history.estime = tx.now
            tx.then(lambda: self.tm.epilog_stop(vm))
            return
        tx.lcm(L.SAVE_STOP)
        vm.resched = 0
        tx.then(lambda: self.vmm.save(vm))

    def close_and_copy(self, tx: Tx) -> None:
        """``cp_history``: close the open record and open a copy on the same host."""
        record = tx.history
        record.etime = tx.now
        if not record.retime:
            record.retime = tx.now
        tx.add_history(record.successor(len(tx.vm.history), tx.now))

    def restore(self, tx: Tx) -> None:
        """Resume a SUSPENDED VM: BOOT_SUSPENDED, RESTORE."""
        vm = tx.vm
        self.close_and_copy(tx)
        tx.state(S.ACTIVE)
        tx.lcm(L.BOOT_SUSPENDED)
        vm.resched = 0
        tx.then(lambda: self.vmm.restore(vm))

    def restart(self, tx: Tx) -> None:
        """Resume a POWEROFF (BOOT_POWEROFF) or UNKNOWN (BOOT_UNKNOWN) VM: DEPLOY."""
        vm = tx.vm
        if vm.state == S.POWEROFF:
            self.close_and_copy(tx)
            tx.state(S.ACTIVE)
            tx.lcm(L.BOOT_POWEROFF)
        else:
            tx.lcm(L.BOOT_UNKNOWN)
        vm.resched = 0
        tx.then(lambda: self.vmm.deploy(vm))

    def reboot(self, tx: Tx, hard: bool) -> None:
        vm = tx.vm
        vm.resched = 0
        tx.then(lambda: self.vmm.reboot(vm, hard))

    # -- restart recovery ------------------------------------------------------------

    async def resume(self) -> None:
        """Re-issue the driver step of every VM left in a transient state."""
        for vm in self.core.vms.objects():
            off_snapshot = vm.lcm_state == L.HOTPLUG_SNAPSHOT  # delete in POWEROFF
            if (vm.state != S.ACTIVE and not off_snapshot) or vm.current is None:
                continue
            try:
                self._resume_one(vm)
            except Exception as exc:  # one broken VM must not stop the others
                self.log.error("Could not resume VM {vid}: {exc}", vid=vm.oid, exc=exc)

    def _resume_one(self, vm: VirtualMachine) -> None:
        lcm = L(vm.lcm_state)
        current = vm.current
        assert current is not None
        hard = current.action in _HARD
        replay: dict[L, Callable[[], None]] = {
            L.PROLOG: lambda: self.tm.prolog(vm),
            L.PROLOG_RESUME: lambda: self.tm.prolog_resume(vm),
            L.PROLOG_UNDEPLOY: lambda: self.tm.prolog_resume(vm),
            L.BOOT: lambda: self.vmm.deploy(vm),
            L.BOOT_UNKNOWN: lambda: self.vmm.deploy(vm),
            L.BOOT_POWEROFF: lambda: self.vmm.deploy(vm),
            L.BOOT_UNDEPLOY: lambda: self.vmm.deploy(vm),
            L.BOOT_SUSPENDED: lambda: self.vmm.restore(vm),
            L.BOOT_STOPPED: lambda: self.vmm.restore(vm),
            L.SHUTDOWN: lambda: self.vmm.shutdown(vm, hard),
            L.SHUTDOWN_POWEROFF: lambda: self.vmm.shutdown(vm, hard),
            L.SHUTDOWN_UNDEPLOY: lambda: self.vmm.shutdown(vm, hard),
            L.SAVE_SUSPEND: lambda: self.vmm.save(vm),
            L.SAVE_STOP: lambda: self.vmm.save(vm),
            L.EPILOG: lambda: self.tm.epilog(vm, vm.prev_state in (S.STOPPED, S.UNDEPLOYED)),
            L.EPILOG_STOP: lambda: self.tm.epilog_stop(vm),
            L.EPILOG_UNDEPLOY: lambda: self.tm.epilog_stop(vm),
        }
        replay.update(self.migrate_replay(vm))
        replay.update(self.backup_replay(vm))
        replay[L.HOTPLUG_NIC] = replay[L.HOTPLUG_NIC_POWEROFF] = lambda: self.resume_nic(vm)
        step = replay.get(lcm) or self.disk_replay(vm) or self.system_replay(vm)
        if step is not None:
            self.log.info(
                "Resuming VM {vid} in {state} after a restart", vid=vm.oid, state=lcm.name
            )
            step()
            return
        if lcm.name.startswith(("HOTPLUG", "DISK_SNAPSHOT", "DISK_RESIZE", "BACKUP")) or lcm in (
            L.RESTORE,
        ):
            self.schedule(self.hotplug_interrupted, vm.oid)

    async def hotplug_interrupted(self, vid: int) -> None:
        """An interrupted hotplug-type operation fails back to where it started."""

        def step(tx: Tx) -> bool:
            name = L(tx.vm.lcm_state).name
            if name.endswith(("POWEROFF",)):
                self._leave_active(tx, S.POWEROFF)
            elif name.endswith("SUSPENDED"):
                self._leave_active(tx, S.SUSPENDED)
            elif name.endswith(("UNDEPLOYED",)):
                self._leave_active(tx, S.UNDEPLOYED)
            elif name.endswith("STOPPED"):
                self._leave_active(tx, S.STOPPED)
            else:
                tx.lcm(L.RUNNING)
            tx.error("LCM", "Operation interrupted by an oned restart")
            return True

        await transition(self.core, vid, step, f"resume VM {vid}")

    def new_history(
        self, tx: Tx, hid: int, hostname: str, cid: int, vm_mad: str, tm_mad: str, ds_id: int
    ) -> History:
        """``add_history``: a new placement record."""
        record = History(
            tx.vm.oid,
            len(tx.vm.history),
            hostname,
            hid,
            cid,
            tx.now,
            0,
            vm_mad,
            tm_mad,
            ds_id,
        )
        tx.add_history(record)
        if not tx.vm.template.get("TM_MAD_SYSTEM"):  # kept once set (check_tm_mad_disks)
            tx.vm.template.set("TM_MAD_SYSTEM", tm_mad)
        return record

    # -- service -----------------------------------------------------------------------

    async def start(self) -> None:
        """Register the VMM/TM reply handlers, then resume interrupted VMs."""
        self.log_writer.start()
        self.vmm.start()
        self.tm.start()
        await self.resume()

    async def stop(self) -> None:
        """Write the queued VM log lines; in-flight actions resume on the next start."""
        self.log_writer.stop()

    # -- recover (LifeCycleActions recover/retry/delete) --------------------------------

    async def recover(self, vid: int, success: bool) -> None:
        """``recover``: pretend the in-flight driver step succeeded or failed."""
        vm = self.core.vms.get(vid)
        if vm is None:
            return
        lcm = L(vm.lcm_state)
        name = lcm.name
        if lcm == L.UNKNOWN:
            await transition(self.core, vid, lambda tx: tx.lcm(L.RUNNING), f"recover VM {vid}")
            return
        if name.startswith("PROLOG"):
            await (self.prolog_success(vid) if success else self.prolog_failure(vid))
        elif name.startswith("BOOT") or lcm == L.MIGRATE:
            if success:
                await self.deploy_success(vid, vm.deploy_id or f"one-{vid}")
            else:
                await self.deploy_failure(vid)
        elif name.startswith("SHUTDOWN"):
            await (self.shutdown_success(vid) if success else self.shutdown_failure(vid))
        elif lcm in (L.SAVE_STOP, L.SAVE_SUSPEND, L.SAVE_MIGRATE):
            await (self.save_success(vid) if success else self.save_failure(vid))
        elif name.startswith("EPILOG"):
            await (self.epilog_success(vid) if success else self.epilog_failure(vid))
        elif lcm in (L.HOTPLUG_SNAPSHOT, L.HOTPLUG_RESIZE):
            await self.recover_system(vid, success)
        elif lcm in (L.HOTPLUG_NIC, L.HOTPLUG_NIC_POWEROFF):
            await (self.attach_nic_success(vid) if success else self.attach_nic_failure(vid))
        elif (disk_step := self.disk_recover(vm, success)) is not None:
            await disk_step
        elif (backup_step := self.backup_recover(vm, success)) is not None:
            await backup_step
        elif lcm == L.CLEANUP_DELETE:
            await transition(self.core, vid, self._cleanup_done, f"recover VM {vid}")

    def _cleanup_done(self, tx: Tx) -> None:
        self.done(tx)

    async def retry(self, vid: int) -> None:
        """``retry``: a ``*_FAILURE`` state goes back to its step, which is re-issued;
        a waiting state re-sends its driver message."""

        def step(tx: Tx) -> bool:
            vm = tx.vm
            lcm = L(vm.lcm_state)
            again = _RETRY.get(lcm)
            if again is not None:
                tx.lcm(again)
                lcm = again
            if lcm == L.EPILOG:
                host = tx.host(tx.history.hid)
                local = host is None or vm.oid not in host.vms
                tx.then(lambda: self.tm.epilog(vm, local))
                return True
            send = self._replay(vm, lcm)
            if send is None:
                return False
            tx.then(send)
            return True

        await transition(self.core, vid, step, f"retry VM {vid}")

    def _replay(self, vm: VirtualMachine, lcm: L) -> Callable[[], None] | None:
        current = vm.current
        hard = current is not None and current.action in _HARD
        table: dict[L, Callable[[], None]] = {
            L.PROLOG: lambda: self.tm.prolog(vm),
            L.PROLOG_RESUME: lambda: self.tm.prolog_resume(vm),
            L.PROLOG_UNDEPLOY: lambda: self.tm.prolog_resume(vm),
            L.BOOT: lambda: self.vmm.deploy(vm),
            L.BOOT_UNKNOWN: lambda: self.vmm.deploy(vm),
            L.BOOT_POWEROFF: lambda: self.vmm.deploy(vm),
            L.BOOT_UNDEPLOY: lambda: self.vmm.deploy(vm),
            L.BOOT_SUSPENDED: lambda: self.vmm.restore(vm),
            L.BOOT_STOPPED: lambda: self.vmm.restore(vm),
            L.BOOT_MIGRATE: lambda: self.vmm.restore(vm),
            L.SHUTDOWN: lambda: self.vmm.shutdown(vm, hard),
            L.SHUTDOWN_POWEROFF: lambda: self.vmm.shutdown(vm, hard),
            L.SHUTDOWN_UNDEPLOY: lambda: self.vmm.shutdown(vm, hard),
            L.SAVE_SUSPEND: lambda: self.vmm.save(vm),
            L.SAVE_STOP: lambda: self.vmm.save(vm),
            L.EPILOG_STOP: lambda: self.tm.epilog_stop(vm),
            L.EPILOG_UNDEPLOY: lambda: self.tm.epilog_stop(vm),
        }
        table.update(self.migrate_replay(vm))
        table[L.HOTPLUG_NIC] = table[L.HOTPLUG_NIC_POWEROFF] = lambda: self.resume_nic(vm)
        return table.get(lcm)

    def delete(self, tx: Tx) -> None:
        """``delete_action`` of an ACTIVE VM: cancel what runs, clean up, DONE now."""
        vm = tx.vm
        lcm = L(vm.lcm_state)
        tx.then(lambda: self.vmm.driver_cancel(vm))
        record = tx.history
        record.etime = tx.now
        host = tx.host(record.hid)
        if host is not None:
            from oned.managers.lifecycle.tx import del_capacity

            del_capacity(host, vm)
        self.release_previous_host(tx)
        tx.lcm(L.CLEANUP_DELETE)
        snapshot = vm.copy()
        if lcm.name.startswith(("PROLOG", "EPILOG")):
            tx.then(lambda: self.tm.epilog(snapshot, False, op="delete"))
        else:
            tx.then(lambda: self.vmm.cleanup(snapshot))
        self.done(tx)


_RETRY = {
    L.PROLOG_FAILURE: L.PROLOG,
    L.PROLOG_RESUME_FAILURE: L.PROLOG_RESUME,
    L.PROLOG_UNDEPLOY_FAILURE: L.PROLOG_UNDEPLOY,
    L.BOOT_FAILURE: L.BOOT,
    L.BOOT_UNDEPLOY_FAILURE: L.BOOT_UNDEPLOY,
    L.BOOT_STOPPED_FAILURE: L.BOOT_STOPPED,
    L.BOOT_MIGRATE_FAILURE: L.BOOT_MIGRATE,
    L.EPILOG_FAILURE: L.EPILOG,
    L.EPILOG_STOP_FAILURE: L.EPILOG_STOP,
    L.EPILOG_UNDEPLOY_FAILURE: L.EPILOG_UNDEPLOY,
    **MIGRATE_RETRY,
}
