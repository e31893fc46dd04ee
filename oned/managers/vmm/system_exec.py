"""EXEC_VM reports: the result of a guest command reaches the VM's QEMU_GA_EXEC
(mirrors ``InformationManager::_vm_exec`` and ``VirtualMachine::update_vm_exec``).

The report is a template with one ``VM=[ID, STATUS, RETURN_CODE, STDOUT, ...]`` per VM;
every attribute but ID replaces the one of the VM's QEMU_GA_EXEC, in one transaction
per VM, whatever the VM's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.log import logger
from oned.managers.lifecycle.tx import Tx, transition
from oned.managers.vmm import system_vm as sv
from oned.template import TemplateSyntaxError, parse_text

if TYPE_CHECKING:
    from oned.core import Core

_log = logger("InM")


async def vm_exec(core: Core, hid: int, text: str) -> None:
    """Apply one EXEC_VM report of host ``hid``."""
    try:
        tmpl = parse_text(text)
    except TemplateSyntaxError as exc:
        _log.error("Error parsing QEMU_GA_EXEC message: {e}", e=str(exc))
        _log.error("Received message was: {p}", p=text[:500])
        return
    for report in tmpl.vectors("VM"):
        raw = report.get("ID", "").strip()
        try:
            vid = int(raw)
        except ValueError:
            vid = -1
        if vid < 0:
            _log.warn("QEMU_GA_EXEC missing or invalid ID")
            continue
        values = {k: v for k, v in report.items() if k != "ID"}

        def step(tx: Tx, values: dict[str, str] = values) -> None:
            for key, value in values.items():
                sv.set_exec_attr(tx.vm, key, value)

        if await transition(core, vid, step, f"guest exec report of VM {vid}") is None:
            _log.warn("Unable to find VM, id: {vid}", vid=vid)
