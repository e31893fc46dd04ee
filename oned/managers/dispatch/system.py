"""DispatchManager: system snapshots, resize, updateconf, PCI attach/detach and guest exec
(``DispatchManager::snapshot_*``, ``resize``, ``live_updateconf``, ``attach_pci``,
``detach_pci``, ``exec``, ``exec_cancel``, with the quota checks
``VirtualMachineAPI`` makes before them).

Each operation is one transition of the VM: state checks with oned's texts, the
template change, history record, host capacity and quota usage in one transaction;
the VMM action (if any) goes out after the commit. Refusals raise ``ActionError``
(or ``AuthorizationError`` for quotas) with the text the API returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oned.errors import ActionError, AuthorizationError, InternalError
from oned.managers.lifecycle.tx import Tx, state_str
from oned.managers.vmm import system as send
from oned.managers.vmm import system_pci as spci
from oned.managers.vmm import system_vm as sv
from oned.managers.vmm.system import vm_mad_flag
from oned.managers.vmm.system_conf import updateconf
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.objects.vm import VirtualMachine
    from oned.template import Template

#: ``VMActions`` ids written in HISTORY/ACTION by these operations.
RESIZE_ACTION = 35
PCI_ATTACH_ACTION = 58
PCI_DETACH_ACTION = 59
EXEC_ACTION = 61
EXEC_CANCEL_ACTION = 63


@dataclass
class ResizeRequest:
    """``one.vm.resize`` values (0 keeps the current one)."""

    cpu: float
    vcpu: int
    memory: int
    enforce: bool


def close_cp_history(tx: Tx, action: int, who: Any) -> None:
    """``DispatchManager::close_cp_history``: close the record with ``action`` and who
    asked, then open a copy on the same host that keeps the previous action."""
    record = tx.history
    now = tx.now
    keep_off = record.retime != 0
    if not keep_off:
        record.retime = now
    record.etime = now
    internal = record.action
    record.action, record.uid, record.gid, record.req_id = action, who.uid, who.gid, who.req_id
    new = record.successor(len(tx.vm.history), now)
    new.action = internal
    if keep_off:
        new.retime = now
    tx.add_history(new)


def _int(text: str | None) -> int:
    try:
        return int((text or "0").strip())
    except ValueError:
        return 0


def _backup_increment(vm: VirtualMachine) -> bool:
    return "<MODE><![CDATA[INCREMENT]]></MODE>" in vm.backups_xml or (
        "<MODE>INCREMENT</MODE>" in vm.backups_xml
    )


class DispatchSystem:
    """Mixed into ``DispatchManager``, which provides ``_run`` and ``_act``."""

    core: Core
    lcm: LifeCycleManager

    async def _run(self, vid: int, step: Any, desc: str) -> VirtualMachine:
        raise NotImplementedError

    def _act(self, tx: Tx, action: int, who: Any) -> None:
        raise NotImplementedError

    def _vnc_port(self, tx: Tx, cid: int) -> None:
        raise NotImplementedError

    def _sys_quota(self, tx: Tx, amounts: dict[str, float]) -> None:
        error = tx.quota_add(amounts)
        if error:
            raise AuthorizationError(error)

    # -- system snapshots --------------------------------------------------------------

    async def snapshot_create(self, vid: int, name: str, who: Any) -> int:
        """The new snapshot's id; the VM goes HOTPLUG_SNAPSHOT, VMM SNAPSHOTCREATE."""
        factor = 0.0
        try:
            factor = float(self.core.config.get("VM_SNAPSHOT_FACTOR") or 0)
        except ValueError:
            factor = 0.0
        made: list[int] = []

        def step(tx: Tx) -> None:
            vm = tx.vm
            if _backup_increment(vm):
                raise ActionError(
                    'Action "snapshot-create" is not compatible with incremental backups'
                )
            if any(d.get("TYPE", "") == "FILESYSTEM" for d in vm.template.vectors("DISK")):
                raise ActionError("Cannot create snapshot for VM with FILESYSTEM disks")
            snap = sv.new_snapshot(vm, name, tx.now, factor)
            self._sys_quota(tx, {"SYSTEM_DISK_SIZE": float(sv.snapshots_system_size_of(snap))})
            if vm.state != S.ACTIVE or vm.lcm_state != L.RUNNING:
                raise ActionError(
                    f"Could not create a new snapshot for VM {vid}, wrong state {state_str(vm)}."
                )
            tx.lcm(L.HOTPLUG_SNAPSHOT)
            vm.resched = 0
            made.append(int(snap["SNAPSHOT_ID"]))
            tx.then(lambda: send.snapshot_create(self.lcm.vmm, vm))

        await self._run(vid, step, f"snapshot create of VM {vid}")
        return made[0]

    async def snapshot_revert(self, vid: int, snap_id: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            head = f"Could not revert VM {vid} to snapshot {snap_id}"
            if vm.state != S.ACTIVE or vm.lcm_state != L.RUNNING:
                raise ActionError(f"{head}, wrong state {state_str(vm)}.")
            if not sv.set_active_snapshot(vm, snap_id, "REVERT"):
                raise ActionError(f"{head}, it does not exist.")
            tx.lcm(L.HOTPLUG_SNAPSHOT)
            vm.resched = 0
            tx.then(lambda: send.snapshot_revert(self.lcm.vmm, vm))

        await self._run(vid, step, f"snapshot revert of VM {vid}")

    async def snapshot_delete(self, vid: int, snap_id: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            current = vm.current
            keep = current is not None and vm_mad_flag(self.core, current.vm_mad, "KEEP_SNAPSHOTS")
            head = f"Could not delete snapshot {snap_id} for VM {vid}"
            running = vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING
            if not running and not (keep and vm.state == S.POWEROFF):
                raise ActionError(f"{head}, wrong state {state_str(vm)}.")
            if not sv.set_active_snapshot(vm, snap_id, "DELETE"):
                raise ActionError(f"{head}, it does not exist.")
            tx.lcm(L.HOTPLUG_SNAPSHOT)
            vm.resched = 0
            tx.then(lambda: send.snapshot_delete(self.lcm.vmm, vm))

        await self._run(vid, step, f"snapshot delete of VM {vid}")

    # -- resize ------------------------------------------------------------------------

    async def resize(self, vid: int, req: ResizeRequest, who: Any) -> None:
        """Quota deltas (``VirtualMachineAPI::resize``), then ``DispatchManager::resize``."""
        from oned.api.vm_template import is_pinned

        def step(tx: Tx) -> None:
            vm = tx.vm
            tmpl = vm.template
            omem, ocpu, ovcpu = vm.memory, vm.cpu, _int(tmpl.get("VCPU"))
            ncpu, nvcpu, nmem = req.cpu, req.vcpu, req.memory
            pinned = is_pinned(tmpl)
            if pinned:
                ncpu = float(nvcpu)
            running = vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING
            nmem = nmem or omem
            ncpu = ncpu or ocpu
            nvcpu = nvcpu or ovcpu
            dcpu, dmem = ncpu - ocpu, float(nmem - omem)
            if vm.state in (S.PENDING, S.HOLD) or running:  # oned's metric order
                deltas = {"CPU": dcpu, "RUNNING_CPU": dcpu, "MEMORY": dmem, "RUNNING_MEMORY": dmem}
            else:
                deltas = {"CPU": dcpu, "MEMORY": dmem}
            self._sys_quota(tx, deltas)
            state = vm.state
            history = True
            if state in (S.INIT, S.PENDING, S.HOLD, S.UNDEPLOYED, S.CLONING, S.CLONING_FAILURE):
                history = False
                self._sys_set_capacity(tx, ncpu, nmem, nvcpu, req.enforce)
            elif state == S.POWEROFF:
                self._sys_set_capacity(tx, ncpu, nmem, nvcpu, req.enforce)
            elif state == S.ACTIVE:
                current = vm.current
                vm_mad = current.vm_mad if current is not None else ""
                if vm.lcm_state != L.RUNNING:
                    raise ActionError(f"Cannot resize a VM in state {state_str(vm)}")
                if pinned:
                    raise ActionError("Cannot resize a pinned VM")
                if not vm_mad_flag(self.core, vm_mad, "LIVE_RESIZE"):
                    raise ActionError(f"Hotplug resize not supported by driver {vm_mad}")
                if (ocpu, omem, ovcpu) != (ncpu, nmem, nvcpu):
                    self._sys_set_capacity(tx, ncpu, nmem, nvcpu, req.enforce)
                    tx.lcm(L.HOTPLUG_RESIZE)
                    sv.store_resize(vm, ocpu, omem, ovcpu)
                    vm.resched = 0
                    tx.then(lambda: send.resize(self.lcm.vmm, vm))
            else:
                raise ActionError(f"Cannot resize a VM in state {state_str(vm)}")
            if history and vm.current is not None:
                close_cp_history(tx, RESIZE_ACTION, who)

        await self._run(vid, step, f"resize VM {vid}")

    def _sys_set_capacity(self, tx: Tx, cpu: float, mem: int, vcpu: int, enforce: bool) -> None:
        """``test_set_capacity``: a POWEROFF or RUNNING VM is re-tested on its host."""
        vm = tx.vm
        on_host = vm.state == S.POWEROFF or (vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING)
        if not on_host:
            error = sv.resize(vm, cpu, mem, vcpu)
            if error:
                raise ActionError(error)
            return
        current = vm.current
        host = tx.host(current.hid) if current is not None else None
        if host is None:
            raise ActionError("Could not update host")
        old_cpu, old_mem = vm.host_capacity()
        error = sv.resize(vm, cpu, mem, vcpu)
        if error:
            raise ActionError(error)
        new_cpu, new_mem = vm.host_capacity()
        share = host.share
        held = vm.oid in host.vms
        free_cpu = share.max_cpu - (share.cpu_usage - (old_cpu if held else 0))
        free_mem = share.max_mem - (share.mem_usage - (old_mem if held else 0))
        if enforce and free_cpu < new_cpu:
            raise ActionError(f"Not enough CPU: {new_cpu}/{free_cpu}")
        if enforce and free_mem < new_mem:
            raise ActionError(f"Not enough memory: {new_mem}/{free_mem}")
        if held:
            share.cpu_usage += new_cpu - old_cpu
            share.mem_usage += new_mem - old_mem
        else:
            share.cpu_usage += new_cpu
            share.mem_usage += new_mem
            share.running_vms += 1
            host.vms.add(vm.oid)

    # -- updateconf --------------------------------------------------------------------

    async def updateconf(self, vid: int, new: Template, append: bool, who: Any) -> None:
        """``VirtualMachine::updateconf`` (InternalError texts), a VNC port for a new
        GRAPHICS of a placed VM, and HOTPLUG + VMM UPDATECONF when RUNNING and the
        CONTEXT changed."""

        def step(tx: Tx) -> None:
            vm = tx.vm
            changed = updateconf(self.core, vm, new, append)
            graphics = vm.template.get_vector("GRAPHICS")
            port = (graphics or {}).get("PORT", "").strip()
            placed = vm.state in (S.ACTIVE, S.POWEROFF, S.SUSPENDED)
            if graphics is not None and not port.isdigit() and placed and vm.current:
                try:
                    self._vnc_port(tx, vm.current.cid)
                except ActionError as exc:
                    raise InternalError(exc.message) from exc
            if vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING and changed:
                tx.lcm(L.HOTPLUG)
                vm.resched = 0
                tx.then(lambda: send.update_conf(self.lcm.vmm, vm))

        await self._run(vid, step, f"updateconf VM {vid}")

    # -- PCI devices -------------------------------------------------------------------

    async def attach_pci(self, vid: int, pci: dict[str, str], who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            self._sys_quota(tx, {"PCI_DEV": 1.0})
            self._sys_pci_state(vm)
            current = vm.current
            if current is None:
                raise ActionError("Could not find host information")
            device = dict(pci)
            if vm.state == S.POWEROFF:
                host = tx.host(current.hid)
                if host is None:
                    raise ActionError("Could not find host information")
                if not spci.host_add_pci(host, vid, device):
                    raise ActionError(
                        "Cannot assign PCI device in host. Check address and free devices"
                    )
            error = spci.attach_pci(vm, device)
            if error:
                raise ActionError(error)
            if vm.state != S.UNDEPLOYED:
                close_cp_history(tx, PCI_ATTACH_ACTION, who)
            tx.log("DiM", "I", "PCI device successfully attached.")
            tx.history.retime = tx.now

        await self._run(vid, step, f"attach PCI to VM {vid}")

    async def detach_pci(self, vid: int, pci_id: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            self._sys_pci_state(vm)
            current = vm.current
            device = spci.get_pci(vm, pci_id)
            if device is None:
                raise ActionError("PCI device not found")
            if device.get("TYPE", "") == "NIC":
                raise ActionError("Use one.vm.detachnic to detach this PCI device")
            host = tx.host(current.hid) if current is not None else None
            if host is not None:
                spci.host_del_pci(host, vid, device)
            spci.detach_pci(vm, device)
            if vm.state != S.UNDEPLOYED and current is not None:
                close_cp_history(tx, PCI_DETACH_ACTION, who)
            tx.log("DiM", "I", "PCI device successfully deatached.")
            if vm.current is not None:
                tx.history.retime = tx.now
            tx.quota_change({"PCI_DEV": 1.0}, count=False)

        await self._run(vid, step, f"detach PCI from VM {vid}")

    @staticmethod
    def _sys_pci_state(vm: VirtualMachine) -> None:
        if vm.state not in (S.POWEROFF, S.UNDEPLOYED) or vm.lcm_state != L.LCM_INIT:
            raise ActionError("VM in wrong state, it has to be in poweroff")

    # -- guest exec --------------------------------------------------------------------

    async def exec_command(self, vid: int, cmd: str, cmd_stdin: str, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            if vm.state != S.ACTIVE or vm.lcm_state != L.RUNNING:
                raise ActionError("Could not execute command, VM must be in running")
            if sv.exec_attr(vm, "STATUS") == "EXECUTING":
                raise ActionError("Could not execute command, a command is already being executed")
            tx.lcm(L.HOTPLUG)
            sv.clear_exec(vm)
            sv.set_exec_attr(vm, "COMMAND", cmd)
            sv.set_exec_attr(vm, "STDIN", cmd_stdin)
            close_cp_history(tx, EXEC_ACTION, who)
            tx.then(lambda: send.exec_command(self.lcm.vmm, vm))

        await self._run(vid, step, f"exec on VM {vid}")

    async def exec_cancel(self, vid: int, who: Any) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            if vm.state != S.ACTIVE or vm.lcm_state != L.RUNNING:
                raise ActionError("Could not cancel command, VM must be in running")
            if sv.exec_attr(vm, "STATUS") != "EXECUTING":
                raise ActionError("Could not cancel command, there is no command being executed")
            tx.lcm(L.HOTPLUG)
            close_cp_history(tx, EXEC_CANCEL_ACTION, who)
            tx.then(lambda: send.exec_cancel(self.lcm.vmm, vm))

        await self._run(vid, step, f"exec cancel on VM {vid}")
