"""LifeCycleManager: NIC hotplug and security-group updates (mirrors
``trigger_attach_nic_success/failure``, ``trigger_detach_nic_success/failure`` of
``LifeCycleStates.cc``, ``trigger_updatesg`` of ``LifeCycleActions.cc`` and the VM side
of ``_updatesg``/``_updatenic``).

A NIC being attached or detached carries ATTACH=YES; the driver's answer either keeps
it (attach success, detach failure) or removes it with its lease (attach failure,
detach success). HOTPLUG_NIC_POWEROFF ends in POWEROFF, HOTPLUG_NIC in RUNNING. A
restart re-sends ATTACHNIC/DETACHNIC (``resume_nic``); an interrupted UPDATENIC
fails back to RUNNING.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.api.secgroup_vm import GroupEdits, add_rules, drop_group
from oned.managers.lifecycle.tx import Tx, transition
from oned.managers.lifecycle.vmlog import write_vm_log
from oned.managers.vmm import nic as vmm_nic
from oned.managers.vmm import nic_vnet
from oned.managers.vmm.nic_setup import clear_attach, delete_attach_nic
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager

#: ``VMActions`` ids of the NIC and security group operations.
NIC_ATTACH, NIC_DETACH, ALIAS_ATTACH, ALIAS_DETACH = 23, 24, 46, 47
NIC_UPDATE, SG_ATTACH, SG_DETACH = 51, 56, 57

#: LCM states that cannot take new rules (``attach_sg``/``trigger_updatesg``).
SG_REFUSED = {
    L.BOOT,
    L.BOOT_MIGRATE,
    L.BOOT_SUSPENDED,
    L.BOOT_STOPPED,
    L.BOOT_UNDEPLOY,
    L.BOOT_POWEROFF,
    L.BOOT_UNKNOWN,
    L.BOOT_FAILURE,
    L.BOOT_MIGRATE_FAILURE,
    L.BOOT_UNDEPLOY_FAILURE,
    L.BOOT_STOPPED_FAILURE,
    L.MIGRATE,
    L.HOTPLUG_NIC,
    L.HOTPLUG_NIC_POWEROFF,
    L.UNKNOWN,
}
#: LCM states whose rules are pushed to the hypervisor (UPDATESG).
SG_LIVE = {
    L.RUNNING,
    L.HOTPLUG,
    L.HOTPLUG_SNAPSHOT,
    L.HOTPLUG_SAVEAS,
    L.HOTPLUG_RESIZE,
    L.DISK_SNAPSHOT,
    L.DISK_SNAPSHOT_DELETE,
    L.DISK_RESIZE,
}

#: LCM states whose VM only gets the new rules in its template (``trigger_updatesg``);
#: an ACTIVE VM in a state none of these lists names is left out of the group.
SG_TEMPLATE_ONLY = {
    L.LCM_INIT,
    L.PROLOG,
    L.PROLOG_MIGRATE_FAILURE,
    L.PROLOG_MIGRATE_POWEROFF_FAILURE,
    L.PROLOG_MIGRATE_SUSPEND_FAILURE,
    L.PROLOG_RESUME_FAILURE,
    L.PROLOG_UNDEPLOY_FAILURE,
    L.PROLOG_MIGRATE_UNKNOWN_FAILURE,
    L.PROLOG_FAILURE,
    L.PROLOG_MIGRATE,
    L.PROLOG_MIGRATE_POWEROFF,
    L.PROLOG_MIGRATE_SUSPEND,
    L.PROLOG_MIGRATE_UNKNOWN,
    L.PROLOG_RESUME,
    L.PROLOG_UNDEPLOY,
    L.EPILOG,
    L.EPILOG_STOP,
    L.EPILOG_UNDEPLOY,
    L.EPILOG_FAILURE,
    L.EPILOG_STOP_FAILURE,
    L.EPILOG_UNDEPLOY_FAILURE,
    L.SHUTDOWN,
    L.SHUTDOWN_POWEROFF,
    L.SHUTDOWN_UNDEPLOY,
    L.SAVE_STOP,
    L.SAVE_SUSPEND,
    L.SAVE_MIGRATE,
    L.CLEANUP_RESUBMIT,
    L.CLEANUP_DELETE,
    L.DISK_RESIZE_POWEROFF,
    L.DISK_RESIZE_UNDEPLOYED,
    L.DISK_SNAPSHOT_POWEROFF,
    L.DISK_SNAPSHOT_REVERT_POWEROFF,
    L.DISK_SNAPSHOT_DELETE_POWEROFF,
    L.DISK_SNAPSHOT_SUSPENDED,
    L.DISK_SNAPSHOT_DELETE_SUSPENDED,
    L.HOTPLUG_SAVEAS_POWEROFF,
    L.HOTPLUG_SAVEAS_SUSPENDED,
    L.HOTPLUG_SAVEAS_UNDEPLOYED,
    L.HOTPLUG_SAVEAS_STOPPED,
    L.HOTPLUG_PROLOG_POWEROFF,
    L.HOTPLUG_EPILOG_POWEROFF,
    L.BACKUP_POWEROFF,
    L.RESTORE,
}


def vmm_error(tx: Tx, message: str) -> None:
    """``VirtualMachineManager::log_error``: an ERROR line; the driver's own text
    (``ACTION: info``, info not starting with ``-``) also becomes USER_TEMPLATE/ERROR."""
    if ": " in message:
        tx.error("VMM", message)
    else:
        tx.log("VMM", "E", message)


class LcmNics:
    """Mixed into ``LifeCycleManager``."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager

    if TYPE_CHECKING:  # provided by LifeCycleManager and LcmStates

        def schedule(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None: ...

        def _leave_active(self, tx: Tx, state: int) -> None: ...

        def _wrong(self, tx: Tx, name: str) -> bool: ...

        async def hotplug_interrupted(self, vid: int) -> None: ...

    # -- ATTACHNIC / DETACHNIC replies -------------------------------------------------

    def _nic_done(self, tx: Tx, name: str, keep: bool) -> bool:
        """Keep the NIC (ATTACH cleared) or remove it, then back to where it started."""
        lcm = tx.vm.lcm_state
        if lcm not in (L.HOTPLUG_NIC, L.HOTPLUG_NIC_POWEROFF):
            return self._wrong(tx, name)
        if keep:
            clear_attach(tx.vm.template)
        else:
            delete_attach_nic(self.core, tx)
        if lcm == L.HOTPLUG_NIC:
            tx.lcm(L.RUNNING)
        else:  # DispatchManager::trigger_poweroff_success
            self._leave_active(tx, S.POWEROFF)
            tx.history.retime = tx.now
        return True

    async def attach_nic_success(self, vid: int, _info: str = "") -> None:
        await self._nic_reply(vid, "attach_nic_success_action", True, "")

    async def attach_nic_failure(self, vid: int, message: str = "") -> None:
        await self._nic_reply(vid, "attach_nic_failure_action", False, message)

    async def detach_nic_success(self, vid: int, _info: str = "") -> None:
        await self._nic_reply(vid, "detach_nic_success_action", False, "")

    async def detach_nic_failure(self, vid: int, message: str = "") -> None:
        await self._nic_reply(vid, "detach_nic_failure_action", True, message)

    async def _nic_reply(self, vid: int, name: str, keep: bool, message: str) -> None:
        def step(tx: Tx) -> bool:
            if message:
                vmm_error(tx, message)
            elif "success" in name:
                text = "attached" if name.startswith("attach") else "detached"
                tx.log("VMM", "I", f"VM NIC Successfully {text}.")
            return self._nic_done(tx, name, keep)

        await transition(self.core, vid, step, f"{name} of VM {vid}")

    def resume_nic(self, vm: VirtualMachine) -> None:
        """After a restart: re-send the NIC step in flight (by the closed record's
        action); an interrupted UPDATENIC fails back to RUNNING."""
        previous = vm.previous
        action = previous.action if previous is not None else 0
        if action in (NIC_ATTACH, ALIAS_ATTACH):
            vmm_nic.attach_nic(self.vmm, vm)
        elif action in (NIC_DETACH, ALIAS_DETACH):
            vmm_nic.detach_nic(self.vmm, vm)
        else:
            self.schedule(self.hotplug_interrupted, vm.oid)

    # -- UPDATENIC ---------------------------------------------------------------------

    def trigger_updatevnet(self, vnet_id: int) -> None:
        """Push the changed attributes of network ``vnet_id`` to its OUTDATED VMs."""
        self.schedule(self.update_vnet, vnet_id)

    async def update_vnet(self, vnet_id: int) -> None:
        await nic_vnet.update_vnet(self, vnet_id)

    async def updatenic_reply(self, vid: int, vnet_id: int, success: bool, message: str) -> None:
        """``_updatenic``: the network's lists, then the VM (VNET_UPDATE dropped on
        success, back to RUNNING), then the network's next OUTDATED VM."""
        await nic_vnet.updatenic_vnet(self.core, vid, vnet_id, success)

        def step(tx: Tx) -> bool:
            if success:
                tx.vm.template.erase("VNET_UPDATE")
                tx.log("VMM", "I", "VM nic updated.")
            else:
                vmm_error(tx, message)
            if tx.vm.lcm_state == L.HOTPLUG_NIC:
                tx.lcm(L.RUNNING)
            else:
                tx.log("VMM", "W", "Received 'update nic' result, but VM is in wrong state")
            return True

        await transition(self.core, vid, step, f"update nic of VM {vid}")
        if vnet_id != -1:
            self.trigger_updatevnet(vnet_id)

    # -- security groups ---------------------------------------------------------------

    def trigger_updatesg(self, sg_id: int) -> None:
        """Push group ``sg_id`` to its OUTDATED VMs, one running VM at a time."""
        self.schedule(self.update_sg, sg_id)

    async def update_sg(self, sg_id: int) -> None:
        core = self.core
        while True:
            async with core.secgroups.lock(sg_id):
                group = core.secgroups.get(sg_id)
                if group is None or not group.outdated:
                    return
                vid = min(group.outdated)
                group = group.copy()
                group.outdated.discard(vid)
                unit = core.unit()
                unit.save(core.secgroups, group)
                await unit.commit(f"update security group {sg_id}")
            live: list[bool] = []

            def step(tx: Tx, vid: int = vid, live: list[bool] = live) -> bool:
                vm = tx.vm
                lcm = L(vm.lcm_state)
                active = vm.state == S.ACTIVE
                error = active and lcm in SG_REFUSED
                update = active and lcm in (*SG_LIVE, L.BACKUP)
                template = not active or lcm in SG_TEMPLATE_ONLY
                edits = GroupEdits(core)
                if template or update:
                    rules = edits.rules(sg_id)
                    drop_group(edits, vm.template, vid, sg_id)
                    add_rules(vm.template, rules)
                if error:
                    edits.error(vid, sg_id)
                elif template or update:
                    edits.add(vid, sg_id, updating=update)
                edits.stage(tx.unit)
                if update:
                    live.append(True)
                    tx.then(lambda: self._send_updatesg(vm, sg_id))
                return True

            await transition(
                core,
                vid,
                step,
                f"update sg {sg_id} of VM {vid}",
                extra_targets=[(core.secgroups, sg_id)],
            )
            if live:
                return

    def _send_updatesg(self, vm: VirtualMachine, sg_id: int) -> None:
        vmm_nic.updatesg(self.vmm, vm, sg_id)

    async def updatesg_reply(self, vid: int, sg_id: int, success: bool, message: str) -> None:
        """``_updatesg``: the VM leaves UPDATING_VMS for UPDATED_VMS (or ERROR_VMS), then
        the next OUTDATED VM of the group is updated."""
        core = self.core
        async with core.secgroups.lock(sg_id):
            group = core.secgroups.get(sg_id)
            if group is not None and vid in group.updating:
                group = group.copy()
                group.updating.discard(vid)
                (group.updated if success else group.error).add(vid)
                unit = core.unit()
                unit.save(core.secgroups, group)
                await unit.commit(f"update security group {sg_id}")
        if success:
            write_vm_log(core, vid, [("VMM", "I", "VM security group updated.")], core.now())
        else:

            def step(tx: Tx) -> bool:
                vmm_error(tx, message)
                return True

            await transition(core, vid, step, f"update sg of VM {vid}")
        self.trigger_updatesg(sg_id)
