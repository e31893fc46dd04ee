"""Driver-reply callbacks of the LifeCycleManager (mirrors ``LifeCycleStates.cc``).

Each callback re-reads the VM under its lock, checks the LCM state the reply is for
("VM in a wrong state" is only logged) and commits the next state; follow-up driver
work runs after the commit. The DispatchManager "success" functions that leave ACTIVE
(``poweroff_success``, ``suspend_success``, ``stop_success``, ``undeploy_success``,
``done``) are applied here in the same transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.managers.lifecycle.disks import images_of
from oned.managers.lifecycle.disks import release_all as release_images
from oned.managers.lifecycle.migrate_actions import PROLOG_MIGRATES, ROLLBACK, LcmMigrate
from oned.managers.lifecycle.nics import release_all
from oned.managers.lifecycle.system_actions import drop_snapshots, save_done, shutdown_done
from oned.managers.lifecycle.tx import Tx, del_capacity, transition
from oned.managers.lifecycle.vmgroups import leave as leave_vmgroup
from oned.managers.lifecycle.vrouters import leave as leave_vrouter
from oned.objects.history import VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager

_BOOTS = {
    L.BOOT,
    L.BOOT_MIGRATE,
    L.BOOT_UNKNOWN,
    L.BOOT_POWEROFF,
    L.BOOT_SUSPENDED,
    L.BOOT_STOPPED,
    L.BOOT_UNDEPLOY,
    L.BOOT_FAILURE,
    L.BOOT_MIGRATE_FAILURE,
    L.BOOT_UNDEPLOY_FAILURE,
    L.BOOT_STOPPED_FAILURE,
}

_PROLOG_FAILURES = {
    L.PROLOG: L.PROLOG_FAILURE,
    L.PROLOG_RESUME: L.PROLOG_RESUME_FAILURE,
    L.PROLOG_UNDEPLOY: L.PROLOG_UNDEPLOY_FAILURE,
    L.PROLOG_MIGRATE: L.PROLOG_MIGRATE_FAILURE,
    L.PROLOG_MIGRATE_POWEROFF: L.PROLOG_MIGRATE_POWEROFF_FAILURE,
    L.PROLOG_MIGRATE_SUSPEND: L.PROLOG_MIGRATE_SUSPEND_FAILURE,
    L.PROLOG_MIGRATE_UNKNOWN: L.PROLOG_MIGRATE_UNKNOWN_FAILURE,
}
_EPILOG_FAILURES = {
    L.EPILOG: L.EPILOG_FAILURE,
    L.EPILOG_STOP: L.EPILOG_STOP_FAILURE,
    L.EPILOG_UNDEPLOY: L.EPILOG_UNDEPLOY_FAILURE,
}


class LcmStates(LcmMigrate):
    """The ``trigger_*_success/failure`` callbacks."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager

    def _wrong(self, tx: Tx, name: str) -> bool:
        tx.log("LCM", "E", f"{name}, VM in a wrong state")
        return True

    def clear_action(self, tx: Tx) -> None:
        """``clear_action``: the open record forgets the action in progress."""
        record = tx.history
        record.action = VMAction.NONE
        record.uid = record.gid = record.req_id = -1

    # -- prolog ----------------------------------------------------------------------

    async def prolog_success(self, vid: int, _info: str = "") -> None:
        def step(tx: Tx) -> bool:
            vm, lcm = tx.vm, tx.vm.lcm_state
            record = tx.history
            if lcm in PROLOG_MIGRATES:
                return self.prolog_migrate_success(tx)
            if lcm in (L.PROLOG_RESUME, L.PROLOG_RESUME_FAILURE):
                tx.lcm(L.BOOT_STOPPED)
                action = self.vmm.restore
            elif lcm in (L.PROLOG_UNDEPLOY, L.PROLOG_UNDEPLOY_FAILURE):
                tx.lcm(L.BOOT_UNDEPLOY)
                action = self.vmm.deploy
            elif lcm in (L.PROLOG, L.PROLOG_FAILURE):
                tx.lcm(L.BOOT)
                action = self.vmm.deploy
            else:
                return self._wrong(tx, "prolog_success_action")
            record.petime = tx.now
            record.rstime = tx.now
            tx.then(lambda: action(vm))
            return True

        await transition(self.core, vid, step, f"prolog success of VM {vid}")

    async def prolog_failure(self, vid: int, message: str = "") -> None:
        def step(tx: Tx) -> bool:
            if tx.vm.lcm_state in ROLLBACK:
                return self.prolog_migrate_rollback(tx)
            failed = _PROLOG_FAILURES.get(L(tx.vm.lcm_state))
            if failed is None:
                return self._wrong(tx, "prolog_failure_action")
            if message:
                tx.error("TrM", message)
            tx.history.petime = tx.now
            tx.lcm(failed)
            return True

        await transition(self.core, vid, step, f"prolog failure of VM {vid}")

    # -- boot ------------------------------------------------------------------------

    async def deploy_success(self, vid: int, deploy_id: str = "") -> None:
        def step(tx: Tx) -> bool:
            vm = tx.vm
            if vm.lcm_state == L.MIGRATE:
                drop_snapshots(self.core, tx)
                self.migrate_success(tx)
                return True
            if vm.lcm_state not in _BOOTS:
                return self._wrong(tx, "deploy_success_action")
            if deploy_id:
                vm.deploy_id = deploy_id
            if vm.state != S.ACTIVE:
                tx.state(S.ACTIVE)
            tx.lcm(L.RUNNING)
            self.clear_action(tx)
            return True

        await transition(self.core, vid, step, f"deploy success of VM {vid}")

    async def deploy_failure(self, vid: int, message: str = "") -> None:
        def step(tx: Tx) -> bool:
            lcm = tx.vm.lcm_state
            if message:
                tx.error("VMM", message)
            simple = {
                L.BOOT: L.BOOT_FAILURE,
                L.BOOT_MIGRATE: L.BOOT_MIGRATE_FAILURE,
                L.BOOT_UNKNOWN: L.UNKNOWN,
                L.BOOT_STOPPED: L.BOOT_STOPPED_FAILURE,
                L.BOOT_UNDEPLOY: L.BOOT_UNDEPLOY_FAILURE,
            }
            if lcm in simple:
                tx.lcm(simple[L(lcm)])
            elif lcm == L.BOOT_POWEROFF:
                self._leave_active(tx, S.POWEROFF)
            elif lcm == L.BOOT_SUSPENDED:
                self._leave_active(tx, S.SUSPENDED)
            elif lcm == L.MIGRATE:
                self.revert_migrate(tx, live=True)
            else:
                return self._wrong(tx, "deploy_failure_action")
            return True

        await transition(self.core, vid, step, f"deploy failure of VM {vid}")

    def _leave_active(self, tx: Tx, state: int) -> None:
        tx.state(state)
        tx.lcm(L.LCM_INIT)

    # -- shutdown --------------------------------------------------------------------

    async def shutdown_success(self, vid: int, _info: str = "") -> None:
        def step(tx: Tx) -> bool:
            vm, lcm = tx.vm, tx.vm.lcm_state
            shutdown_done(self.core, tx)
            if lcm == L.SHUTDOWN:
                tx.lcm(L.EPILOG)
                record = tx.history
                record.estime = record.retime = tx.now
                tx.then(lambda: self.tm.epilog(vm))
            elif lcm == L.SHUTDOWN_POWEROFF:
                tx.history.retime = tx.now
                self._leave_active(tx, S.POWEROFF)
            elif lcm == L.SHUTDOWN_UNDEPLOY:
                tx.lcm(L.EPILOG_UNDEPLOY)
                record = tx.history
                record.estime = record.retime = tx.now
                tx.then(lambda: self.tm.epilog_stop(vm))
            elif lcm == L.SAVE_MIGRATE:
                self.start_prolog_migrate(tx)
            else:
                return self._wrong(tx, "shutdown_success_action")
            return True

        await transition(self.core, vid, step, f"shutdown success of VM {vid}")

    async def shutdown_failure(self, vid: int, message: str = "") -> None:
        def step(tx: Tx) -> bool:
            if message:
                tx.error("VMM", message)
            if tx.vm.lcm_state == L.SAVE_MIGRATE:
                self.revert_migrate(tx, live=False)
                return True
            if tx.vm.lcm_state not in (L.SHUTDOWN, L.SHUTDOWN_POWEROFF, L.SHUTDOWN_UNDEPLOY):
                return self._wrong(tx, "shutdown_failure_action")
            tx.lcm(L.RUNNING)
            self.clear_action(tx)
            tx.log("LCM", "I", "Fail to shutdown VM. Assuming that the VM is still RUNNING.")
            return True

        await transition(self.core, vid, step, f"shutdown failure of VM {vid}")

    # -- save ------------------------------------------------------------------------

    async def save_success(self, vid: int, _info: str = "") -> None:
        def step(tx: Tx) -> bool:
            vm, lcm = tx.vm, tx.vm.lcm_state
            save_done(self.core, tx)
            if lcm == L.SAVE_SUSPEND:
                tx.history.retime = tx.now
                self._leave_active(tx, S.SUSPENDED)
            elif lcm == L.SAVE_STOP:
                tx.lcm(L.EPILOG_STOP)
                record = tx.history
                record.estime = record.retime = tx.now
                tx.then(lambda: self.tm.epilog_stop(vm))
            elif lcm == L.SAVE_MIGRATE:
                self.start_prolog_migrate(tx)
            else:
                return self._wrong(tx, "save_success_action")
            return True

        await transition(self.core, vid, step, f"save success of VM {vid}")

    async def save_failure(self, vid: int, message: str = "") -> None:
        def step(tx: Tx) -> bool:
            if message:
                tx.error("VMM", message)
            if tx.vm.lcm_state == L.SAVE_MIGRATE:
                self.revert_migrate(tx, live=False)
                return True
            if tx.vm.lcm_state not in (L.SAVE_SUSPEND, L.SAVE_STOP):
                return self._wrong(tx, "save_failure_action")
            tx.lcm(L.RUNNING)
            self.clear_action(tx)
            tx.log("LCM", "I", "Fail to save VM state. Assuming that the VM is still RUNNING.")
            return True

        await transition(self.core, vid, step, f"save failure of VM {vid}")

    # -- epilog ----------------------------------------------------------------------

    async def epilog_success(self, vid: int, _info: str = "") -> None:
        def step(tx: Tx) -> bool:
            vm, lcm = tx.vm, tx.vm.lcm_state
            if lcm in (L.EPILOG_STOP, L.EPILOG_STOP_FAILURE):
                target = S.STOPPED
            elif lcm in (L.EPILOG_UNDEPLOY, L.EPILOG_UNDEPLOY_FAILURE):
                target = S.UNDEPLOYED
            elif lcm in (L.EPILOG, L.EPILOG_FAILURE):
                target = S.DONE
            else:
                return self._wrong(tx, "epilog_success_action")
            record = tx.history
            record.eetime = record.etime = tx.now
            host = tx.host(record.hid)
            if host is not None:
                del_capacity(host, vm)
            if target == S.DONE:
                self.done(tx)
            else:
                self._leave_active(tx, target)
            return True

        await transition(self.core, vid, step, f"epilog success of VM {vid}")

    async def epilog_failure(self, vid: int, message: str = "") -> None:
        def step(tx: Tx) -> bool:
            failed = _EPILOG_FAILURES.get(L(tx.vm.lcm_state))
            if failed is None:
                return self._wrong(tx, "epilog_failure_action")
            if message:
                tx.error("TrM", message)
            tx.history.eetime = tx.now
            tx.lcm(failed)
            return True

        await transition(self.core, vid, step, f"epilog failure of VM {vid}")

    def done(self, tx: Tx) -> None:
        """``DispatchManager::done``/``free_vm_resources``: DONE, resources freed."""
        vm = tx.vm
        tx.state(S.DONE)
        if vm.lcm_state != L.LCM_INIT:
            tx.lcm(L.LCM_INIT)
        vm.etime = tx.now
        core = self.core
        for sa_id in vm.sched_actions:  # free_vm_resources drops the VM's schedules
            if core.sched_actions.get(sa_id) is not None:
                tx.unit.drop(core.sched_actions, sa_id)
        tx.before.append(lambda: release_all(core, tx.unit, vm))
        leave_vmgroup(core, tx.unit, vm)
        leave_vrouter(core, tx.unit, vm)
        if images_of(vm):
            release_images(tx.image_stage(), vm, tx.now)
