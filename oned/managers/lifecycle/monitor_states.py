"""VM state changes driven by host monitoring (mirrors ``InformationManager::_vm_state``
and ``test_and_trigger`` in ``src/im/InformationManager.cc``, and the
``trigger_monitor_*`` callbacks of ``LifeCycleStates.cc``).

A STATE_VM report of a host lists ``VM=[ID, DEPLOY_ID, STATE]`` (STATE one of RUNNING,
POWEROFF, SUSPENDED, FAILURE). Each VM whose current record is on that host moves as
oned moves it, unless its running time stamps changed less than 30 s ago (a driver
reply and a probe racing). With ``SYNC_STATE=YES`` the VMs the host holds but did not
report get ``MISSING_STATE`` (POWEROFF, or UNKNOWN through ``monitor_done``). A host
going to ERROR sends ``monitor_done`` to each of its VMs (RUNNING to UNKNOWN).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from oned.log import logger
from oned.managers.lifecycle.system_actions import drop_snapshots
from oned.managers.lifecycle.tx import Tx, transition
from oned.managers.lifecycle.vmlog import write_vm_log
from oned.objects.history import VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S
from oned.template import TemplateSyntaxError
from oned.template.parser import parse_text

if TYPE_CHECKING:
    from oned.core import Core

#: Seconds after a running start/end during which reports are ignored.
RACE_WINDOW = 30

#: The BOOT states a RUNNING report completes (``trigger_monitor_poweron``).
BOOTS = frozenset(
    {
        L.BOOT,
        L.BOOT_POWEROFF,
        L.BOOT_UNKNOWN,
        L.BOOT_SUSPENDED,
        L.BOOT_STOPPED,
        L.BOOT_UNDEPLOY,
        L.BOOT_MIGRATE,
        L.BOOT_MIGRATE_FAILURE,
        L.BOOT_STOPPED_FAILURE,
        L.BOOT_UNDEPLOY_FAILURE,
        L.BOOT_FAILURE,
    }
)
_SHUTDOWNS = (L.SHUTDOWN, L.SHUTDOWN_POWEROFF, L.SHUTDOWN_UNDEPLOY)
#: LCM states a host is expected to report (the others are not looked for).
_EXPECTED = frozenset({L.RUNNING, L.UNKNOWN, *_SHUTDOWNS})

log = logger("InM")


def _active_in(vm: VirtualMachine, states: frozenset[L] | tuple[L, ...]) -> bool:
    return vm.state == S.ACTIVE and vm.lcm_state in states


def trigger_for(vm: VirtualMachine, reported: str) -> str | None:
    """``test_and_trigger``: the ``monitor_*`` callback a reported state asks for."""
    if reported == "RUNNING":
        if vm.state in (S.POWEROFF, S.SUSPENDED) or _active_in(vm, BOOTS | {L.UNKNOWN}):
            return "monitor_poweron"
    elif reported == "FAILURE":
        if _active_in(vm, (L.RUNNING, L.UNKNOWN)):
            return "monitor_done"
    elif reported == "SUSPENDED":
        if _active_in(vm, (L.RUNNING, L.UNKNOWN)):
            return "monitor_suspend"
    elif reported == "POWEROFF" and _active_in(vm, _EXPECTED):
        return "monitor_poweroff"
    return None


_NOTES = {
    ("FAILURE", "monitor_done"): "VM running but monitor state is ERROR.",
    ("SUSPENDED", "monitor_suspend"): "VM running but monitor state is PAUSED.",
}


async def vm_state(core: Core, hid: int, text: str) -> int:
    """Apply a host's STATE_VM report; returns how many callbacks it triggered."""
    lcm = core.lifecycle_manager
    try:
        report = parse_text(text)
    except TemplateSyntaxError as exc:
        log.error("Error parsing VM_STATE: {e}", e=str(exc))
        return 0
    seen: set[int] = set()
    triggered = 0
    now = core.now()
    for vector in report.vectors("VM"):
        raw = vector.get("ID", "").strip()
        vid = int(raw) if raw.lstrip("-").isdigit() else -1
        seen.add(vid)
        reported = vector.get("STATE", "").strip().upper()
        vm = core.vms.get(vid)
        if vm is None:
            log.warn("Unable to find VM, id: {vid}", vid=vid)
            continue
        current = vm.current
        if current is None or current.hid != hid:
            continue  # not on this host any more
        deploy_id = vector.get("DEPLOY_ID", "")
        if reported == "RUNNING" and deploy_id != vm.deploy_id:
            await transition(core, vid, _set_deploy_id(deploy_id), f"deploy id of VM {vid}")
        if now - current.retime < RACE_WINDOW or now - current.rstime < RACE_WINDOW:
            write_vm_log(core, vid, [("VMM", "I", "Ignoring VM state update")], now)
            continue
        name = trigger_for(vm, reported)
        if name is None or lcm is None:
            continue
        note = _NOTES.get((reported, name))
        if note:
            write_vm_log(core, vid, [("VMM", "I", note)], now)
        core.eventually(getattr(lcm, name), vid)
        triggered += 1
    if (report.get("SYNC_STATE") or "").strip().upper() not in ("YES", "TRUE", "1"):
        return triggered
    missing = report.get("MISSING_STATE")
    if missing is None:
        return triggered
    missing_state = missing.strip().upper()
    host = core.hosts.get(hid)
    if host is None or lcm is None:
        return triggered
    for vid in sorted(host.vms - seen):
        vm = core.vms.get(vid)
        current = vm.current if vm is not None else None
        if vm is None or current is None or current.hid != hid or not _active_in(vm, _EXPECTED):
            continue
        name = "monitor_done" if missing_state == "UNKNOWN" else "monitor_poweroff"
        core.eventually(getattr(lcm, name), vid)
        triggered += 1
    return triggered


def _set_deploy_id(deploy_id: str) -> Callable[[Tx], bool]:
    def step(tx: Tx) -> bool:
        if tx.vm.deploy_id == deploy_id:
            return False
        tx.vm.deploy_id = deploy_id
        return True

    return step


class LcmMonitor:
    """The ``trigger_monitor_*`` callbacks (mixed into ``LifeCycleManager``)."""

    core: Core

    if TYPE_CHECKING:  # provided by LifeCycleManager and LcmStates

        def schedule(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None: ...

        def _leave_active(self, tx: Tx, state: int) -> None: ...

        async def deploy_success(self, vid: int, deploy_id: str = "") -> None: ...

        async def shutdown_success(self, vid: int, _info: str = "") -> None: ...

    async def monitor_done(self, vid: int) -> None:
        """``trigger_monitor_done``: a RUNNING VM that cannot be monitored is UNKNOWN
        (in any other state the event is ignored)."""

        def step(tx: Tx) -> bool:
            if not _active_in(tx.vm, (L.RUNNING,)):
                return False
            tx.lcm(L.UNKNOWN)
            tx.vm.resched = 0
            return True

        await transition(self.core, vid, step, f"monitor done of VM {vid}")

    async def monitor_poweroff(self, vid: int) -> None:
        """``trigger_monitor_poweroff``: RUNNING/UNKNOWN pass through SHUTDOWN_POWEROFF
        to POWEROFF; a VM being shut down finishes its shutdown."""

        def step(tx: Tx) -> bool:
            vm = tx.vm
            if _active_in(vm, (L.RUNNING, L.UNKNOWN)):
                tx.log("LCM", "I", "VM running but monitor state is POWEROFF")
                drop_snapshots(self.core, tx)
                vm.resched = 0
                tx.lcm(L.SHUTDOWN_POWEROFF)
                self._internal_action(tx)
                tx.history.retime = tx.now
                self._leave_active(tx, S.POWEROFF)
                return True
            if _active_in(vm, _SHUTDOWNS):
                tx.log("LCM", "I", "VM reported SHUTDOWN by the drivers")
                tx.then(lambda: self.schedule(self.shutdown_success, vid))
                return True
            return False

        await transition(self.core, vid, step, f"monitor poweroff of VM {vid}")

    async def monitor_suspend(self, vid: int) -> None:
        """``trigger_monitor_suspend``: a paused VM goes through SAVE_SUSPEND to
        SUSPENDED."""

        def step(tx: Tx) -> bool:
            vm = tx.vm
            if not _active_in(vm, (L.RUNNING, L.UNKNOWN)):
                tx.log("LCM", "E", "monitor_suspend_action, VM in a wrong state")
                return True
            tx.log("LCM", "I", "Polling reports that the VM is suspended.")
            drop_snapshots(self.core, tx)
            tx.lcm(L.SAVE_SUSPEND)
            vm.resched = 0
            self._internal_action(tx)
            tx.history.retime = tx.now
            self._leave_active(tx, S.SUSPENDED)
            return True

        await transition(self.core, vid, step, f"monitor suspend of VM {vid}")

    async def monitor_poweron(self, vid: int) -> None:
        """``trigger_monitor_poweron``: a POWEROFF/SUSPENDED VM found running is
        RUNNING in a new record (running quota counted again); UNKNOWN is RUNNING;
        a BOOT* state completes as a deploy success."""

        def step(tx: Tx) -> bool:
            vm = tx.vm
            if vm.state in (S.POWEROFF, S.SUSPENDED):
                tx.log("VMM", "I", "VM found again by the drivers")
                tx.state(S.ACTIVE)
                tx.lcm(L.RUNNING)
                record = tx.history
                record.etime = tx.now
                tx.add_history(record.successor(len(vm.history), tx.now))
                return True
            if _active_in(vm, (L.UNKNOWN,)):
                tx.log("LCM", "I", "VM found again by the drivers")
                tx.lcm(L.RUNNING)
                return True
            if _active_in(vm, BOOTS):
                tx.log("LCM", "I", "VM reported RUNNING by the drivers")
                tx.then(lambda: self.schedule(self.deploy_success, vid, ""))
                return True
            return False

        await transition(self.core, vid, step, f"monitor poweron of VM {vid}")

    def _internal_action(self, tx: Tx) -> None:
        """``set_internal_action(MONITOR)``: no user asked for it."""
        record = tx.history
        record.action = VMAction.MONITOR
        record.uid = record.gid = record.req_id = -1
