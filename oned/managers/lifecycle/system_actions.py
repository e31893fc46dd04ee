"""LifeCycleManager: system snapshots, resize, updateconf, PCI hotplug and guest exec
(mirrors ``trigger_snapshot_*``, ``trigger_update_conf_*``, ``trigger_resize_*`` and
``trigger_exec_*`` of ``LifeCycleStates.cc``).

Each driver reply is one transaction: HOTPLUG_SNAPSHOT/HOTPLUG_RESIZE/HOTPLUG back to
RUNNING with the snapshot list, the RESIZE backup, QEMU_GA_EXEC/STATUS, the host
capacity and the quotas settled together. ``resume_system`` re-issues the driver step
of a VM found in one of these states after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oned.managers.lifecycle.tx import Tx, state_str, transition
from oned.managers.vmm import system as send
from oned.managers.vmm import system_vm as sv
from oned.objects.vm import LcmState as L

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager
    from oned.objects.vm import VirtualMachine

#: ``VMActions`` ids these operations write in HISTORY/ACTION.
EXEC_CANCEL_ACTION = 63


def log_vmm_error(tx: Tx, message: str) -> None:
    """``log_error``: the ERROR attribute only when the driver said why."""
    if ": " in message:
        tx.error("VMM", message)
    elif message:
        tx.log("VMM", "E", message)


def drop_snapshots(core: Core, tx: Tx) -> None:
    """``delete_snapshots`` when the VM leaves its hypervisor (unless the VM_MAD has
    KEEP_SNAPSHOTS): every SNAPSHOT goes and its SYSTEM_DISK_SIZE quota is given back."""
    vm = tx.vm
    current = vm.current
    if current is None or send.vm_mad_flag(core, current.vm_mad, "KEEP_SNAPSHOTS"):
        return
    size = sv.delete_snapshots(vm)
    if size:
        tx.quota_change({"SYSTEM_DISK_SIZE": float(size)}, count=False)


def shutdown_done(core: Core, tx: Tx) -> None:
    """What ``trigger_shutdown_success`` does besides the state change: a running guest
    command is CANCELLED, snapshots are dropped."""
    vm = tx.vm
    if sv.exec_attr(vm, "STATUS") == "EXECUTING":
        sv.set_exec_attr(vm, "STATUS", "CANCELLED")
    if vm.lcm_state in (L.SHUTDOWN, L.SHUTDOWN_POWEROFF, L.SHUTDOWN_UNDEPLOY, L.SAVE_MIGRATE):
        drop_snapshots(core, tx)


def save_done(core: Core, tx: Tx) -> None:
    """``trigger_save_success``: snapshots are dropped (suspend, stop, migrate)."""
    if tx.vm.lcm_state in (L.SAVE_SUSPEND, L.SAVE_STOP, L.SAVE_MIGRATE):
        drop_snapshots(core, tx)


class LcmSystem:
    """Mixed into ``LifeCycleManager``."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager

    # -- system snapshots --------------------------------------------------------------

    async def _sys_snapshot_done(
        self, vid: int, name: str, text: str, fn: Callable[[Tx], None]
    ) -> None:
        def step(tx: Tx) -> bool:
            if text:
                tx.log("VMM", "I", text)
            if tx.vm.lcm_state != L.HOTPLUG_SNAPSHOT:
                tx.log("LCM", "E", f"{name}, VM in a wrong state")
                return True
            fn(tx)
            tx.lcm(L.RUNNING)
            return True

        await transition(self.core, vid, step, f"{name} of VM {vid}")

    def _sys_drop_active(self, tx: Tx) -> None:
        snap = sv.delete_active_snapshot(tx.vm)
        if snap is not None:
            size = float(sv.snapshots_system_size_of(snap))
            tx.quota_change({"SYSTEM_DISK_SIZE": size}, count=False)

    async def snapshot_create_success(self, vid: int, hypervisor_id: str = "") -> None:
        def ok(tx: Tx) -> None:
            snap = sv.active_snapshot(tx.vm)
            if snap is not None:
                snap["HYPERVISOR_ID"] = hypervisor_id
            sv.clear_active_snapshot(tx.vm)

        await self._sys_snapshot_done(
            vid, "snapshot_create_success", "VM Snapshot successfully created.", ok
        )

    async def snapshot_create_failure(self, vid: int, message: str = "") -> None:
        def fail(tx: Tx) -> None:
            self._sys_drop_active(tx)

        await self._sys_failure(vid, "snapshot_create_failure", message, fail)

    async def snapshot_revert_success(self, vid: int, _info: str = "") -> None:
        await self._sys_snapshot_done(
            vid,
            "snapshot_revert_success",
            "VM Snapshot successfully reverted.",
            lambda tx: sv.clear_active_snapshot(tx.vm),
        )

    async def snapshot_revert_failure(self, vid: int, message: str = "") -> None:
        await self._sys_failure(
            vid, "snapshot_revert_success", message, lambda tx: sv.clear_active_snapshot(tx.vm)
        )

    async def snapshot_delete_success(self, vid: int, _info: str = "") -> None:
        await self._sys_snapshot_done(
            vid,
            "snapshot_delete_success",
            "VM Snapshot successfully deleted.",
            self._sys_drop_active,
        )

    async def snapshot_delete_failure(self, vid: int, message: str = "") -> None:
        await self._sys_failure(
            vid, "snapshot_delete_failure", message, lambda tx: sv.clear_active_snapshot(tx.vm)
        )

    async def _sys_failure(
        self, vid: int, name: str, message: str, fn: Callable[[Tx], None]
    ) -> None:
        def step(tx: Tx) -> bool:
            log_vmm_error(tx, message)
            if tx.vm.lcm_state != L.HOTPLUG_SNAPSHOT:
                tx.log("LCM", "E", f"{name}, VM in a wrong state")
                return True
            fn(tx)
            tx.lcm(L.RUNNING)
            return True

        await transition(self.core, vid, step, f"{name} of VM {vid}")

    # -- updateconf --------------------------------------------------------------------

    async def update_conf_success(self, vid: int, _info: str = "") -> None:
        status = ("VM update conf succesfull.", "", "")
        await self._sys_hotplug_back(vid, "update_conf_success", "", status)

    async def update_conf_failure(self, vid: int, message: str = "") -> None:
        await self._sys_hotplug_back(vid, "update_conf_failure", message, None)

    async def _sys_hotplug_back(
        self,
        vid: int,
        name: str,
        message: str,
        status: tuple[str, str, str] | None,
        wrong: str = "",
    ) -> None:
        """HOTPLUG -> RUNNING; ``status`` = (VMM line, LCM line, QEMU_GA_EXEC/STATUS)."""

        def step(tx: Tx) -> bool:
            log_vmm_error(tx, message)
            if status is not None and status[0]:
                tx.log("VMM", "I", status[0])
            if tx.vm.lcm_state != L.HOTPLUG:
                text = wrong.replace("{state}", state_str(tx.vm)) if wrong else ""
                tx.log("LCM", "E", text or f"{name}, VM in a wrong state")
                return True
            tx.lcm(L.RUNNING)
            if status is not None and status[1]:
                tx.log("LCM", "I", status[1])
            if status is not None and status[2]:
                sv.set_exec_attr(tx.vm, "STATUS", status[2])
            return True

        await transition(self.core, vid, step, f"{name} of VM {vid}")

    # -- guest exec --------------------------------------------------------------------

    async def exec_success(self, vid: int, _info: str = "") -> None:
        status = ("VM command execution successful", "VM exec operation completed.", "EXECUTING")
        await self._sys_hotplug_back(
            vid, "exec_success", "", status, "VM exec success, VM in a wrong state"
        )

    async def exec_failure(self, vid: int, message: str = "") -> None:
        status = ("", "VM exec operation fails", "ERROR")
        await self._sys_hotplug_back(
            vid, "exec_failure", message, status, "VM exec fails, VM in a wrong state: {state}"
        )

    async def exec_cancel_success(self, vid: int, _info: str = "") -> None:
        status = (
            "VM command execution cancelled successfully",
            "VM cancel exec operation completed.",
            "CANCELLED",
        )
        await self._sys_hotplug_back(
            vid, "exec_cancel_success", "", status, "VM cancel exec success, VM in a wrong state"
        )

    async def exec_cancel_failure(self, vid: int, message: str = "") -> None:
        status = ("", "VM cancel exec operation fails", "ERROR")
        await self._sys_hotplug_back(
            vid,
            "exec_cancel_failure",
            message,
            status,
            "VM cancel exec fails, VM in a wrong state: {state}",
        )

    # -- live resize -------------------------------------------------------------------

    async def resize_success(self, vid: int, _info: str = "") -> None:
        def step(tx: Tx) -> bool:
            tx.log("VMM", "I", "VM hotplug resize successful")
            if tx.vm.lcm_state != L.HOTPLUG_RESIZE:
                tx.log("LCM", "E", "hotplug_resize_success, VM in a wrong state")
                return True
            tx.lcm(L.RUNNING)
            tx.log("LCM", "I", "VM resize operation completed.")
            tx.vm.template.erase("RESIZE")
            return True

        await transition(self.core, vid, step, f"resize success of VM {vid}")

    async def resize_failure(self, vid: int, message: str = "") -> None:
        """Back to RUNNING with the old CPU/VCPU/MEMORY, host capacity and quotas."""

        def step(tx: Tx) -> bool:
            vm = tx.vm
            log_vmm_error(tx, message)
            if vm.lcm_state != L.HOTPLUG_RESIZE:
                tx.log("LCM", "E", f"hotplug resize fails, VM in a wrong state: {state_str(vm)}")
                return True
            tx.lcm(L.RUNNING)
            tx.log("LCM", "I", "VM hotplug resize operation fails")
            new_cpu, new_mem = vm.host_capacity()
            old = sv.stored_resize(vm)
            if old is not None:
                cpu, mem, vcpu = old
                deltas = {"MEMORY": float(vm.memory - mem), "CPU": vm.cpu - cpu}
                deltas["RUNNING_MEMORY"] = deltas["MEMORY"]
                deltas["RUNNING_CPU"] = deltas["CPU"]
                sv.resize(vm, cpu, mem, vcpu)
                tx.quota_change(deltas, count=False)
            else:
                tx.log("LCM", "E", "HOTPLUG_RESIZE failure, unable to revert VM and quotas")
            vm.template.erase("RESIZE")
            tx.touch_history()
            current = vm.current
            host = tx.host(current.hid) if current is not None else None
            if host is not None and vm.oid in host.vms:
                old_cpu, old_mem = vm.host_capacity()
                host.share.cpu_usage += old_cpu - new_cpu
                host.share.mem_usage += old_mem - new_mem
            return True

        await transition(self.core, vid, step, f"resize failure of VM {vid}")

    # -- restart and recover -----------------------------------------------------------

    def system_replay(self, vm: VirtualMachine) -> Callable[[], None] | None:
        """After a restart: the driver step to re-issue for HOTPLUG_SNAPSHOT,
        HOTPLUG_RESIZE and the updateconf/exec kinds of HOTPLUG (None: not ours)."""
        vmm = self.vmm
        lcm = vm.lcm_state
        if lcm == L.HOTPLUG_SNAPSHOT:
            sender = {
                "CREATE": send.snapshot_create,
                "REVERT": send.snapshot_revert,
                "DELETE": send.snapshot_delete,
            }.get(sv.snapshot_action(vm))
            if sender is None:
                return lambda: self._sys_schedule_failure(vm.oid, "snapshot_revert_failure")
            return lambda: sender(vmm, vm)
        if lcm == L.HOTPLUG_RESIZE:
            return lambda: send.resize(vmm, vm)
        if lcm != L.HOTPLUG or any(
            d.get("ATTACH", "").upper() == "YES" for d in vm.template.vectors("DISK")
        ):
            return None
        if vm.template.get_vector("QEMU_GA_EXEC") is not None:
            status = sv.exec_attr(vm, "STATUS")
            previous = vm.previous
            if not status:
                return lambda: send.exec_command(vmm, vm)
            if previous is not None and previous.action == EXEC_CANCEL_ACTION:
                return lambda: send.exec_cancel(vmm, vm)
        return lambda: send.update_conf(vmm, vm)

    def _sys_schedule_failure(self, vid: int, name: str) -> None:
        schedule = getattr(self, "schedule", None)
        if schedule is not None:
            schedule(getattr(self, name), vid, "")

    async def recover_system(self, vid: int, success: bool) -> None:
        """``recover``: HOTPLUG_SNAPSHOT by the snapshot's ACTION, HOTPLUG_RESIZE."""
        vm = self.core.vms.get(vid)
        if vm is None:
            return
        if vm.lcm_state == L.HOTPLUG_RESIZE:
            await (self.resize_success(vid) if success else self.resize_failure(vid))
            return
        if vm.lcm_state != L.HOTPLUG_SNAPSHOT:
            return
        action = sv.snapshot_action(vm)
        if action == "CREATE":
            if success:
                snap = sv.active_snapshot(vm)
                await self.snapshot_create_success(vid, snap.get("SNAPSHOT_ID", "") if snap else "")
            else:
                await self.snapshot_create_failure(vid)
        elif action == "REVERT":
            await (
                self.snapshot_revert_success(vid) if success else self.snapshot_revert_failure(vid)
            )
        elif action == "DELETE":
            await (
                self.snapshot_delete_success(vid) if success else self.snapshot_delete_failure(vid)
            )
