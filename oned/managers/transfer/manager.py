"""``TransferManager``: transfer scripts and the TM driver (mirrors ``TransferManager.cc``
and ``TransferManagerProtocol.cc``).

Each operation writes ``vms/<vid>/transfer.<seq>.<op>`` (one TM command per line) and
sends ``TRANSFER <vid> <path>``; the reply is routed to the LifeCycleManager by the
VM's LCM state. Writing the file again and re-sending it is harmless, which is what
``LifeCycleManager.resume`` does after a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from oned.drivers.families import Family
from oned.log import logger
from oned.managers.lifecycle.vmlog import vm_dir, write_vm_log
from oned.objects.vm import LcmState, VirtualMachine

if TYPE_CHECKING:
    from oned.core import Core
    from oned.drivers.message import DriverMessage
    from oned.managers.lifecycle.manager import LifeCycleManager

_PROLOG = {
    LcmState.PROLOG,
    LcmState.PROLOG_RESUME,
    LcmState.PROLOG_UNDEPLOY,
    LcmState.PROLOG_MIGRATE,
    LcmState.PROLOG_MIGRATE_POWEROFF,
    LcmState.PROLOG_MIGRATE_SUSPEND,
    LcmState.PROLOG_MIGRATE_UNKNOWN,
}
_EPILOG = {
    LcmState.EPILOG,
    LcmState.EPILOG_STOP,
    LcmState.EPILOG_UNDEPLOY,
    LcmState.CLEANUP_RESUBMIT,
}


def ds_location(core: Core) -> str:
    from oned.bootstrap import datastore_location

    return datastore_location(core)


def system_dir(core: Core, vm: VirtualMachine) -> str:
    """``VirtualMachine::get_system_dir``: ``<DATASTORE_LOCATION>/<ds>/<vid>``."""
    current = vm.current
    ds_id = current.ds_id if current is not None else 0
    return f"{ds_location(core)}/{ds_id}/{vm.oid}"


class TransferManager:
    """Writes transfer files and sends them to the TM driver."""

    log = logger("TrM")

    def __init__(self, core: Core, drivers: Any) -> None:
        self.core = core
        self.drivers = drivers
        self.lcm: LifeCycleManager | None = None
        from oned.managers.transfer.script import nebula_hostname

        self.frontend = nebula_hostname(core)

    def start(self) -> None:
        if self.drivers is not None:
            self.drivers.register_action(Family.TM, "TRANSFER", self._on_transfer)

    # -- scripts ---------------------------------------------------------------------

    def _disk_path(self, vm: VirtualMachine, host: str, disk_id: str) -> str:
        return f"{host}:{system_dir(self.core, vm)}/disk.{disk_id}"

    def prolog_lines(self, vm: VirtualMachine) -> list[str]:
        """``prolog_transfer_command`` for every DISK, then the kernel/initrd kept in a
        datastore (``script.prolog``; raises ``script.TransferError``)."""
        from oned.managers.transfer import script

        result = script.prolog(vm, self.frontend, system_dir(self.core, vm))
        script.save_os_updates(self.core, vm, result.os_updates)  # set_kernel / set_initrd
        self._log_script(vm, result)
        return result.lines

    def epilog_lines(self, vm: VirtualMachine, local: bool, op: str = "epilog") -> list[str]:
        """``epilog_transfer_command`` (terminate) or ``epilog_delete_commands``
        (``op`` "delete"), on the host or, ``local``, the front-end."""
        from oned.managers.transfer import script

        current = vm.current
        assert current is not None
        host = self.frontend if local else current.hostname
        sysdir = system_dir(self.core, vm)
        if op == "delete":
            result = script.epilog_delete(vm, host, sysdir, current.tm_mad, current.ds_id)
        else:
            result = script.epilog(vm, host, sysdir)
        self._log_script(vm, result)
        return result.lines

    def mv_lines(self, vm: VirtualMachine, to_frontend: bool) -> list[str]:
        """``epilog_stop`` (host to front-end) / ``prolog_resume`` (from the previous
        record's directory on the front-end to the host)."""
        from oned.managers.transfer import script

        sysdir = system_dir(self.core, vm)
        if to_frontend:
            return script.epilog_stop(vm, self.frontend, sysdir).lines
        previous = vm.previous or vm.current
        assert previous is not None
        prev_dir = f"{ds_location(self.core)}/{previous.ds_id}/{vm.oid}"
        return script.prolog_resume(vm, self.frontend, prev_dir, sysdir).lines

    def _log_script(self, vm: VirtualMachine, result: Any) -> None:
        lines = [("TrM", "W", text) for text in result.warnings]
        lines += [("TrM", "E", text) for text in result.errors]
        if lines:
            write_vm_log(self.core, vm.oid, lines, self.core.now())

    # -- operations ------------------------------------------------------------------

    def prolog(self, vm: VirtualMachine) -> None:
        from oned.managers.transfer.script import TransferError

        try:
            lines = self.prolog_lines(vm)
        except TransferError as exc:  # error_common: logged, then the failure
            write_vm_log(self.core, vm.oid, [("TrM", "E", str(exc))], self.core.now())
            if self.lcm is not None:
                self.lcm.schedule(self.lcm.prolog_failure, vm.oid)
            return
        self._transfer(vm, "prolog", lines)

    def prolog_migrate(self, vm: VirtualMachine) -> None:
        """``trigger_prolog_migr``: the disks and VM directory to the new host."""
        from oned.managers.lifecycle.migrate_actions import prolog_migrate_lines

        self._transfer(vm, "migrate", prolog_migrate_lines(vm, ds_location(self.core)))

    def prolog_resume(self, vm: VirtualMachine) -> None:
        self._transfer(vm, "resume", self.mv_lines(vm, to_frontend=False))

    def epilog(self, vm: VirtualMachine, local: bool = False, op: str = "epilog") -> None:
        """Terminate's epilog (``op`` "delete" for ``recover --delete``)."""
        self._transfer(vm, op, self.epilog_lines(vm, local, op))

    def epilog_stop(self, vm: VirtualMachine) -> None:
        self._transfer(vm, "stop", self.mv_lines(vm, to_frontend=True))

    def _transfer(self, vm: VirtualMachine, op: str, lines: list[str]) -> None:
        current = vm.current
        assert current is not None
        path = vm_dir(self.core, vm.oid) / f"transfer.{current.seq}.{op}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        except OSError as exc:
            self._failed(vm.oid, f"Error writing transfer file {path}: {exc}")
            return
        self.send(vm.oid, path)

    def send(self, vid: int, path: Path) -> None:
        if self.drivers is None or not self.drivers.send(Family.TM, "TRANSFER", vid, str(path)):
            self._failed(vid, "Transfer manager driver not found")

    def _failed(self, vid: int, message: str) -> None:
        from oned.drivers.message import DriverMessage

        self._on_transfer(DriverMessage("TRANSFER", "FAILURE", vid, message))

    # -- replies ---------------------------------------------------------------------

    def _on_transfer(self, msg: DriverMessage) -> None:
        lcm = self.lcm
        vm = self.core.vms.get(msg.oid)
        if lcm is None or vm is None:
            return
        state = vm.lcm_state
        if state == LcmState.LCM_INIT:
            write_vm_log(
                self.core,
                vm.oid,
                [("TrM", "W", "Ignored: TRANSFER " + msg.status)],
                self.core.now(),
            )
            return
        text = ""
        if not msg.success:
            text = "Error executing image transfer script"
            if msg.payload and not msg.payload.startswith("-"):
                text += f": {msg.payload}"
        if state in _PROLOG:
            if msg.success:
                lcm.schedule(lcm.prolog_success, vm.oid)
            else:
                lcm.schedule(lcm.prolog_failure, vm.oid, text)
        elif state in _EPILOG:
            if msg.success:
                lcm.schedule(lcm.epilog_success, vm.oid)
            else:
                lcm.schedule(lcm.epilog_failure, vm.oid, text)
        else:
            from oned.managers.transfer.disk_commands import ROUTES as DISK_ROUTES

            route = DISK_ROUTES.get(state)
            if route is not None:
                lcm.schedule(getattr(lcm, route[0 if msg.success else 1]), vm.oid, text)
                return
            write_vm_log(
                self.core, vm.oid, [("TrM", "E", "Wrong state in TrM answer")], self.core.now()
            )
