"""``one.vm.recover`` in the DispatchManager (mirrors ``DispatchManager::recover``,
``retry``, ``delete_vm``, ``delete_recreate`` and ``delete_vm_db``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.errors import ActionError, NoExistsError
from oned.managers.lifecycle.tx import Tx, del_capacity, state_str
from oned.objects.history import VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.objects.vm import VirtualMachine


class DispatchRecover:
    """The recover operations; ``DispatchManager`` provides ``_run`` and ``_act``."""

    core: Core
    lcm: LifeCycleManager

    async def _run(self, vid: int, step: Any, desc: str) -> VirtualMachine:
        raise NotImplementedError

    def _act(self, tx: Tx, action: int, who: Any) -> None:
        raise NotImplementedError

    async def recover(self, vid: int, op: int, who: Any) -> None:
        """``one.vm.recover`` after its authorization: 0 failure, 1 success, 2 retry,
        3 delete, 4 delete-recreate, 5 delete-db."""
        vm = self.core.vms.get(vid)
        if vm is None:
            raise NoExistsError("", vid, "virtual machine")
        if op in (0, 1):
            if vm.state != S.ACTIVE:
                raise ActionError(
                    f"Could not perform a recover operation on VM {vid}, "
                    f"wrong state {state_str(vm)}."
                )
            await self.lcm.recover(vid, op == 1)
        elif op == 2:
            if vm.state != S.ACTIVE:
                raise ActionError(
                    f"Could not perform a retry on VM {vid}, wrong state {state_str(vm)}."
                )
            await self.lcm.retry(vid)
        elif op == 3:
            await self._run(vid, lambda tx: self._delete(tx, who), f"delete VM {vid}")
        elif op == 4:
            await self._run(vid, self._recreate, f"recreate VM {vid}")
        else:
            await self._run(vid, self._delete_db, f"delete VM {vid} from DB")

    def _delete(self, tx: Tx, who: Any) -> bool:
        """``delete_vm``: DONE now, the host cleaned up by the drivers afterwards."""
        vm = tx.vm
        if vm.state == S.DONE:
            return False
        if vm.state == S.ACTIVE:
            self._act(tx, VMAction.DELETE, who)
            self.lcm.delete(tx)
            return True
        if vm.state in (S.SUSPENDED, S.POWEROFF, S.STOPPED, S.UNDEPLOYED):
            record = tx.history
            host = tx.host(record.hid)
            if host is not None:
                del_capacity(host, vm)
            snapshot = vm.copy()
            local = vm.state in (S.STOPPED, S.UNDEPLOYED)
            tx.then(lambda: self.lcm.tm.epilog(snapshot, local, op="delete"))
        self.lcm.done(tx)
        return True

    def _delete_db(self, tx: Tx) -> bool:
        """``delete_vm_db``: release the host and every resource, DONE, no driver."""
        vm = tx.vm
        if vm.state == S.DONE:
            return False
        current = vm.current
        if current is not None:
            host = tx.host(current.hid)
            if host is not None:
                del_capacity(host, vm)
            self.lcm.release_previous_host(tx)
        self.lcm.done(tx)
        return True

    def _recreate(self, tx: Tx) -> bool:
        """``delete_recreate``: back to PENDING with the same id (host released)."""
        vm = tx.vm
        if vm.state == S.DONE:
            raise ActionError("Cannot delete-recreate a VM already in DONE state")
        if vm.state in (S.PENDING, S.INIT, S.CLONING, S.CLONING_FAILURE):
            return False
        if vm.state in (S.ACTIVE, S.POWEROFF, S.SUSPENDED):
            record = tx.history
            record.etime = tx.now
            host = tx.host(record.hid)
            if host is not None:
                del_capacity(host, vm)
            self.lcm.release_previous_host(tx)
            snapshot = vm.copy()
            tx.then(lambda: self.lcm.vmm.driver_cancel(snapshot))
            tx.then(lambda: self.lcm.vmm.cleanup(snapshot))
            if vm.state == S.ACTIVE:
                tx.lcm(L.LCM_INIT)
        vm.deploy_id = ""
        tx.state(S.PENDING)
        return True
