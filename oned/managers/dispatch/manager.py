"""``DispatchManager``: VM actions entering the core (mirrors ``DispatchManagerActions.cc``).

Each action checks the VM's state under its lock and either changes it directly
(hold, release, resched) or hands it to the LifeCycleManager in the same
transaction. Refusals raise ``ActionError`` with oned's text; the API layer adds the
``Error performing action "x": `` prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import ActionError, AuthorizationError, InternalError, NoExistsError
from oned.log import logger
from oned.managers.dispatch.backups import DispatchBackups
from oned.managers.dispatch.disks import DispatchDisks
from oned.managers.dispatch.migrate import DispatchMigrate
from oned.managers.dispatch.nics import DispatchNics
from oned.managers.dispatch.recover import DispatchRecover
from oned.managers.dispatch.system import DispatchSystem
from oned.managers.lifecycle.tx import QuotaRefusal, Tx, state_str, transition
from oned.objects.history import VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager

VNC_BASE, VNC_LAST = 5900, 65535

_FAILURES = {
    L.BOOT_FAILURE,
    L.BOOT_MIGRATE_FAILURE,
    L.PROLOG_MIGRATE_FAILURE,
    L.PROLOG_FAILURE,
    L.EPILOG_FAILURE,
    L.EPILOG_STOP_FAILURE,
    L.EPILOG_UNDEPLOY_FAILURE,
    L.PROLOG_MIGRATE_POWEROFF_FAILURE,
    L.PROLOG_MIGRATE_SUSPEND_FAILURE,
    L.BOOT_UNDEPLOY_FAILURE,
    L.BOOT_STOPPED_FAILURE,
    L.PROLOG_RESUME_FAILURE,
    L.PROLOG_UNDEPLOY_FAILURE,
    L.PROLOG_MIGRATE_UNKNOWN_FAILURE,
}


def not_available(vm: VirtualMachine) -> ActionError:
    return ActionError(f"This action is not available for state {state_str(vm)}")


class Requester:
    """Who asked (``RequestAttributes``: uid, gid, request id)."""

    def __init__(self, uid: int = -1, gid: int = -1, req_id: int = -1) -> None:
        self.uid, self.gid, self.req_id = uid, gid, req_id


class DispatchManager(
    DispatchRecover, DispatchDisks, DispatchNics, DispatchSystem, DispatchBackups, DispatchMigrate
):
    """State checks and entry points of every ``one.vm.action``."""

    log = logger("DiM")

    def __init__(self, core: Core, lcm: LifeCycleManager) -> None:
        self.core = core
        self.lcm = lcm

    async def _run(self, vid: int, step: object, desc: str) -> VirtualMachine:
        vm = await transition(self.core, vid, step, desc)  # type: ignore[arg-type]
        if vm is None:
            vm = self.core.vms.get(vid)
            if vm is None:
                raise NoExistsError("", vid, "virtual machine")
        return vm

    def _act(self, tx: Tx, action: int, who: Requester) -> None:
        self.lcm.set_action(tx, action, who.uid, who.gid, who.req_id)

    async def action(self, name: str, vid: int, who: Requester) -> None:
        """Dispatch ``one.vm.action`` by name (the caller checked it is known)."""
        hard = name.endswith("-hard")
        base = name.removesuffix("-hard")
        handler = {
            "terminate": self.terminate,
            "poweroff": self.poweroff,
            "undeploy": self.undeploy,
            "reboot": self.reboot,
        }.get(base)
        if handler is not None:
            await handler(vid, hard, who)
            return
        simple = {
            "hold": self.hold,
            "release": self.release,
            "stop": self.stop,
            "suspend": self.suspend,
            "resume": self.resume,
        }.get(name)
        if simple is not None:
            await simple(vid, who)
            return
        await self.resched(vid, name == "resched", who)

    async def terminate(self, vid: int, hard: bool, who: Requester) -> None:
        action = VMAction.TERMINATE_HARD if hard else VMAction.TERMINATE

        def step(tx: Tx) -> bool:
            vm = tx.vm
            if vm.state in (S.SUSPENDED, S.POWEROFF, S.STOPPED, S.UNDEPLOYED):
                self._act(tx, VMAction.TERMINATE, who)
                self.lcm.shutdown(tx, False)
            elif vm.state in (S.INIT, S.PENDING, S.HOLD, S.CLONING, S.CLONING_FAILURE):
                self.lcm.done(tx)
            elif vm.state == S.DONE:
                return False
            elif vm.lcm_state in (L.RUNNING, L.UNKNOWN) or (hard and vm.lcm_state == L.SHUTDOWN):
                self._act(tx, action, who)
                self.lcm.shutdown(tx, hard)
            elif vm.lcm_state in _FAILURES:
                self._act(tx, VMAction.DELETE, who)
                self.lcm.delete(tx)
            else:
                raise ActionError(f"Could not terminate VM {vid}, wrong state {state_str(vm)}.")
            return True

        await self._run(vid, step, f"terminate VM {vid}")

    async def poweroff(self, vid: int, hard: bool, who: Requester) -> None:
        action = VMAction.POWEROFF_HARD if hard else VMAction.POWEROFF

        def step(tx: Tx) -> None:
            vm = tx.vm
            ok = vm.state == S.ACTIVE and (
                vm.lcm_state in (L.RUNNING, L.UNKNOWN)
                or (hard and vm.lcm_state == L.SHUTDOWN_POWEROFF)
            )
            if not ok:
                raise not_available(vm)
            self._act(tx, action, who)
            self.lcm.poweroff(tx, hard)

        await self._run(vid, step, f"poweroff VM {vid}")

    async def undeploy(self, vid: int, hard: bool, who: Requester) -> None:
        action = VMAction.UNDEPLOY_HARD if hard else VMAction.UNDEPLOY

        def step(tx: Tx) -> None:
            vm = tx.vm
            ok = vm.state == S.POWEROFF or (
                vm.state == S.ACTIVE
                and (
                    vm.lcm_state in (L.RUNNING, L.UNKNOWN)
                    or (hard and vm.lcm_state == L.SHUTDOWN_UNDEPLOY)
                )
            )
            if not ok:
                raise not_available(vm)
            self._act(tx, action, who)
            self.lcm.undeploy(tx, hard)

        await self._run(vid, step, f"undeploy VM {vid}")

    async def hold(self, vid: int, who: Requester) -> None:
        def step(tx: Tx) -> None:
            if tx.vm.state != S.PENDING:
                raise not_available(tx.vm)
            tx.state(S.HOLD)

        await self._run(vid, step, f"hold VM {vid}")

    async def release(self, vid: int, who: Requester) -> None:
        def step(tx: Tx) -> None:
            if tx.vm.state != S.HOLD:
                raise not_available(tx.vm)
            self._requirements(tx, "release")
            tx.state(S.PENDING)

        await self._run(vid, step, f"release VM {vid}")

    def _requirements(self, tx: Tx, verb: str) -> None:
        """``automatic_requirements`` again before the VM goes back to PENDING."""
        from oned.api.vm_template import automatic_requirements, cluster_requirements

        try:
            automatic_requirements(tx.vm.template, cluster_requirements(tx.vm.template))
        except InternalError as exc:
            raise ActionError(
                f"Could not {verb} VM {tx.vm.oid}, error updating requirements. {exc.message}"
            ) from exc

    async def stop(self, vid: int, who: Requester) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            if not (
                vm.state == S.SUSPENDED or (vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING)
            ):
                raise not_available(vm)
            self._act(tx, VMAction.STOP, who)
            self.lcm.stop_action(tx)

        await self._run(vid, step, f"stop VM {vid}")

    async def suspend(self, vid: int, who: Requester) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            if not (vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING):
                raise not_available(vm)
            self._act(tx, VMAction.SUSPEND, who)
            self.lcm.suspend(tx)

        await self._run(vid, step, f"suspend VM {vid}")

    async def resume(self, vid: int, who: Requester) -> None:
        def step(tx: Tx) -> None:
            vm = tx.vm
            if vm.state in (S.STOPPED, S.UNDEPLOYED, S.SUSPENDED, S.POWEROFF):
                tx.check_running()
            if vm.state in (S.STOPPED, S.UNDEPLOYED):
                self._requirements(tx, "resume")
                tx.state(S.PENDING)
            elif vm.state == S.SUSPENDED:
                self._act(tx, VMAction.RESUME, who)
                self.lcm.restore(tx)
            elif vm.state == S.POWEROFF or (vm.state == S.ACTIVE and vm.lcm_state == L.UNKNOWN):
                self._act(tx, VMAction.RESUME, who)
                self.lcm.restart(tx)
            else:
                raise not_available(vm)

        await self._run(vid, step, f"resume VM {vid}")

    async def reboot(self, vid: int, hard: bool, who: Requester) -> None:
        action = VMAction.REBOOT_HARD if hard else VMAction.REBOOT

        def step(tx: Tx) -> None:
            vm = tx.vm
            if not (vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING):
                raise not_available(vm)
            self._act(tx, action, who)
            self.lcm.reboot(tx, hard)

        await self._run(vid, step, f"reboot VM {vid}")

    async def resched(self, vid: int, flag: bool, who: Requester) -> None:
        def step(tx: Tx) -> bool:
            vm = tx.vm
            ok = vm.state == S.POWEROFF or (
                vm.state == S.ACTIVE and vm.lcm_state in (L.RUNNING, L.UNKNOWN)
            )
            if not ok:
                raise not_available(vm)
            if vm.resched == int(flag):
                return False
            vm.resched = int(flag)
            return True

        await self._run(vid, step, f"resched VM {vid}")

    async def deploy(
        self, vid: int, placement: tuple[int, str, int, str, str, int], enforce: bool = False
    ) -> None:
        """``one.vm.deploy`` after its checks: capacity (``enforce``), a new history
        record, then the LCM deploy, all under the VM and host locks."""
        hid, hostname, cid, vm_mad, tm_mad, ds_id = placement

        def step(tx: Tx) -> None:
            vm = tx.vm
            if vm.state not in (S.PENDING, S.HOLD, S.STOPPED, S.UNDEPLOYED):
                raise ActionError(f"Deploy action is not available for state {state_str(vm)}")
            host = tx.host(hid)
            if host is None:
                raise ActionError("Host no longer exists")
            if enforce:
                cpu, mem = vm.host_capacity()
                share = host.share
                if share.max_cpu - share.cpu_usage < cpu:
                    error = f"Not enough CPU: {cpu}/{share.max_cpu - share.cpu_usage}"
                elif share.max_mem - share.mem_usage < mem:
                    error = f"Not enough memory: {mem}/{share.max_mem - share.mem_usage}"
                else:
                    error = ""
                if error:
                    raise ActionError(
                        f"virtual machine [{vid}] does not fit in host [{hid}]. {error}"
                    )
            if vm.state in (S.STOPPED, S.UNDEPLOYED):
                try:
                    tx.check_running()
                except QuotaRefusal as exc:
                    raise AuthorizationError(exc.message) from exc
            previous = vm.current
            if previous is None or previous.action != VMAction.STOP:
                self._vnc_port(tx, cid)
            from oned.managers.transfer.script import check_tm_mad_disks
            from oned.managers.vmm.deployment import validate_template

            if error := check_tm_mad_disks(self.core, vm.template, tm_mad) or validate_template(
                self.core, vm, vm_mad, hid, cid
            ):
                raise ActionError(error)
            self.lcm.new_history(tx, hid, hostname, cid, vm_mad, tm_mad, ds_id)
            self.lcm.deploy(tx)

        await self._run_hosts(vid, step, f"deploy VM {vid}", (hid,))

    def _vnc_port(self, tx: Tx, cid: int) -> None:
        """``set_vnc_port``: GRAPHICS/PORT free in the cluster (5900 + id when free)."""
        graphics = tx.vm.template.get_vector("GRAPHICS")
        if graphics is None:
            return
        used: set[int] = set()
        for other in self.core.vms.objects():
            current = other.current
            if other.oid == tx.vm.oid or other.state == S.DONE or current is None:
                continue
            if current.cid != cid:
                continue
            port = (other.template.get_vector("GRAPHICS") or {}).get("PORT", "")
            if port.strip().isdigit():
                used.add(int(port))
        wanted = graphics.get("PORT", "").strip()
        if wanted.isdigit():
            if int(wanted) in used:
                raise ActionError("Requested VNC port already assigned to a VM")
            return
        base = VNC_BASE + tx.vm.oid
        if base <= VNC_LAST and base not in used:
            graphics["PORT"] = str(base)
            return
        free = next((p for p in range(VNC_BASE, VNC_LAST + 1) if p not in used), None)
        if free is None:
            raise ActionError("No free VNC ports available in the cluster")
        graphics["PORT"] = str(free)

    async def _run_hosts(
        self, vid: int, step: object, desc: str, hosts: tuple[int, ...]
    ) -> VirtualMachine:
        vm = await transition(self.core, vid, step, desc, extra_hosts=hosts)  # type: ignore[arg-type]
        if vm is None:
            raise NoExistsError("", vid, "virtual machine")
        return vm
