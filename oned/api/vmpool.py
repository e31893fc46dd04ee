"""``one.vmpool.*`` (mirrors ``VirtualMachinePoolAPI``).

Listings are joined from bodies kept in memory (short bodies for ``info``, stored
bodies for ``infoextended``/``infoset``). Large listings are joined in slices with a
reactor turn in between, so a 10,000-VM answer never holds up small calls for long.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.vm import VM
from oned.core import Core
from oned.errors import ApiError, InternalError
from oned.objects.vm import VirtualMachine, VmState

#: VMs joined per slice before yielding to the reactor.
SLICE = 2000


def _state_filter(state: int) -> None:
    if state < -2 or state > VmState.CLONING_FAILURE:
        raise ApiError(f"Incorrect state filter {state}")


async def _yield(core: Core) -> None:
    """Let the reactor run other work (timers and I/O) before going on."""
    d: Deferred[None] = Deferred()
    core.clock.callLater(0, d.callback, None)
    await d


async def _join(core: Core, root: str, vms: list[VirtualMachine], extended: bool) -> WireParts:
    """The listing as cached escaped pieces, gathered slice by slice (a reactor turn
    between slices, for bodies escaped for the first time)."""
    escaped = core.vms.escaped
    parts = WireParts([f"&lt;{root}&gt;".encode()])
    for start in range(0, len(vms), SLICE):
        if start:
            await _yield(core)
        parts.extend(escaped(vm.oid, extended) for vm in vms[start : start + SLICE])
    parts.append(f"&lt;/{root}&gt;".encode())
    return parts


def _select(
    core: Core, call: Call, filter_flag: int, start: int, end: int, state: int, query: str
) -> list[VirtualMachine]:
    if query:
        raise InternalError("JSON query search is not supported by the SQL backend")
    _state_filter(state)

    def keep(vm: VirtualMachine) -> bool:
        if state == -2:
            return True
        if state == -1:
            return vm.state != VmState.DONE
        return vm.state == state

    return shared.filtered(core, call, VM, filter_flag, start, end, extra=keep)


@rpc("one.vmpool.info", "iiiis", required=4)
async def pool_info(
    core: Core, call: Call, flag: int, start: int, end: int, state: int, query: str = ""
) -> WireParts:
    """Returns the virtual machine instances pool."""
    return await _join(core, "VM_POOL", _select(core, call, flag, start, end, state, query), False)


@rpc("one.vmpool.infoextended", "iiiis", required=4)
async def pool_info_extended(
    core: Core, call: Call, flag: int, start: int, end: int, state: int, query: str = ""
) -> WireParts:
    """Returns the virtual machine instances pool in extended format."""
    return await _join(core, "VM_POOL", _select(core, call, flag, start, end, state, query), True)


@rpc("one.vmpool.infoset", "sb")
async def pool_info_set(core: Core, call: Call, ids_text: str, extended: bool) -> str | WireParts:
    """Returns a virtual machine instances set."""
    ids: set[int] = set()
    for part in ids_text.split(","):
        word = part.strip()
        if word.isdigit():
            ids.add(int(word))
    if not ids:
        return "<VM_POOL></VM_POOL>"
    vms = shared.filtered(core, call, VM, -2, -1, -1, extra=lambda vm: vm.oid in ids)
    return await _join(core, "VM_POOL", vms, extended)


@rpc("one.vmpool.monitoring", "ii", required=1)
async def pool_monitoring(core: Core, call: Call, flag: int, seconds: int = -1) -> str:
    """Returns the virtual machine monitoring records."""
    if flag < -4:
        raise ApiError("Incorrect filter_flag")
    vids = [vm.oid for vm in shared.filtered(core, call, VM, flag)]
    if seconds == 0:
        samples = await core.vms.monitoring(vids, 0, last_only=True)
    else:
        since = 0 if seconds < 0 else core.now() - seconds
        samples = await core.vms.monitoring(vids, since, last_only=False)
    return "<MONITORING_DATA>" + "".join(samples) + "</MONITORING_DATA>"


@rpc("one.vmpool.accounting", "iii")
async def pool_accounting(core: Core, call: Call, flag: int, start: int, end: int) -> str:
    """Returns the virtual machine history records."""
    if flag < -4:
        raise ApiError("Incorrect filter_flag")
    vids = [vm.oid for vm in shared.filtered(core, call, VM, flag)]
    records = await core.vms.accounting(start, end, vids)
    return "<HISTORY_RECORDS>" + "".join(records) + "</HISTORY_RECORDS>"
