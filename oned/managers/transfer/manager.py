"""``TransferManager``: transfer scripts and the TM driver (mirrors ``TransferManager.cc``
and ``TransferManagerProtocol.cc``).

Each operation writes ``vms/<vid>/transfer.<seq>.<op>`` (one TM command per line) and
sends ``TRANSFER <vid> <path>``; the reply is routed to the LifeCycleManager by the
VM's LCM state. Writing the file again and re-sending it is harmless, which is what
``LifeCycleManager.resume`` does after a crash.
"""

from __future__ import annotations

import socket
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
        self.frontend = socket.gethostname()

    def start(self) -> None:
        if self.drivers is not None:
            self.drivers.register_action(Family.TM, "TRANSFER", self._on_transfer)

    # -- scripts ---------------------------------------------------------------------

    def _disk_path(self, vm: VirtualMachine, host: str, disk_id: str) -> str:
        return f"{host}:{system_dir(self.core, vm)}/disk.{disk_id}"

    def prolog_lines(self, vm: VirtualMachine) -> list[str]:
        """``prolog_transfer_command`` for every DISK."""
        current = vm.current
        assert current is not None
        host, vid = current.hostname, vm.oid
        lines = []
        for disk in vm.template.vectors("DISK"):
            disk_id = disk.get("DISK_ID", "0")
            target = self._disk_path(vm, host, disk_id)
            dtype = disk.get("TYPE", "").upper()
            tm = disk.get("TM_MAD", current.tm_mad)
            if dtype == "SWAP":
                lines.append(
                    f"MKSWAP {current.tm_mad} {disk.get('SIZE', '0')} {target} "
                    f"{vid} {current.ds_id}"
                )
            elif dtype == "FS" or (not disk.get("SOURCE") and not disk.get("IMAGE_ID")):
                fmt = disk.get("FORMAT", "raw")
                size = disk.get("SIZE", "0")
                lines.append(
                    f"MKIMAGE {current.tm_mad} {size} {fmt} {target} {vid} {current.ds_id}"
                )
            else:
                source = disk.get("SOURCE", "")
                if ":" not in source:
                    source = f"{self.frontend}:{source}"
                word = "CLONE" if disk.get("CLONE", "NO").upper() == "YES" else "LN"
                lines.append(f"{word} {tm} {source} {target} {vid} {disk.get('DATASTORE_ID', '')}")
        return lines

    def epilog_lines(self, vm: VirtualMachine, local: bool) -> list[str]:
        """``epilog_transfer_command``: DELETE (or MVDS when SAVE=YES) per disk, then
        the VM directory."""
        current = vm.current
        assert current is not None
        host = self.frontend if local else current.hostname
        vid = vm.oid
        lines = []
        for disk in vm.template.vectors("DISK"):
            disk_id = disk.get("DISK_ID", "0")
            path = self._disk_path(vm, host, disk_id)
            tm = disk.get("TM_MAD", current.tm_mad)
            ds = disk.get("DATASTORE_ID", str(current.ds_id))
            if disk.get("SAVE", "NO").upper() == "YES":
                lines.append(f"MVDS {tm} {path} {disk.get('SOURCE', '')} {vid} {ds}")
            else:
                lines.append(f"DELETE {tm} {path} {vid} {ds}")
        lines.append(
            f"DELETE {current.tm_mad} {host}:{system_dir(self.core, vm)} {vid} {current.ds_id}"
        )
        return lines

    def mv_lines(self, vm: VirtualMachine, to_frontend: bool) -> list[str]:
        """``epilog_stop`` (host to front-end) / ``prolog_resume`` (back to the host)."""
        current = vm.current
        assert current is not None
        vid, sysdir = vm.oid, system_dir(self.core, vm)
        src, dst = current.hostname, self.frontend
        if not to_frontend:
            src, dst = dst, src
        lines = []
        for disk in vm.template.vectors("DISK"):
            disk_id = disk.get("DISK_ID", "0")
            tm = disk.get("TM_MAD", current.tm_mad)
            ds = disk.get("DATASTORE_ID", str(current.ds_id))
            lines.append(
                f"MV {tm} {src}:{sysdir}/disk.{disk_id} {dst}:{sysdir}/disk.{disk_id} {vid} {ds}"
            )
        lines.append(f"MV {current.tm_mad} {src}:{sysdir} {dst}:{sysdir} {vid} {current.ds_id}")
        return lines

    # -- operations ------------------------------------------------------------------

    def prolog(self, vm: VirtualMachine) -> None:
        self._transfer(vm, "prolog", self.prolog_lines(vm))

    def prolog_resume(self, vm: VirtualMachine) -> None:
        self._transfer(vm, "resume", self.mv_lines(vm, to_frontend=False))

    def epilog(self, vm: VirtualMachine, local: bool = False, op: str = "epilog") -> None:
        """Terminate's epilog (``op`` "delete" for ``recover --delete``)."""
        self._transfer(vm, op, self.epilog_lines(vm, local))

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
