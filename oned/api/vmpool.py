"""``one.vmpool.*`` (mirrors ``VirtualMachinePoolAPI``).

Listings are joined from bodies kept in memory (short bodies for ``info``, stored
bodies for ``infoextended``/``infoset``). Large listings are joined in slices with a
reactor turn in between, so a 10,000-VM answer never holds up small calls for long.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from twisted.internet.defer import Deferred

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.vm import VM
from oned.core import Core
from oned.errors import ApiError, AuthorizationError, InternalError
from oned.objects import showback
from oned.objects.vm import VirtualMachine, VmState
from oned.pools import vm as vm_pool

#: VMs joined per slice (one piece of the answer) before yielding to the reactor.
SLICE = 250
#: monitord's VM_MONITORING_EXPIRATION_TIME default.
DEFAULT_MONITORING_EXPIRATION = 43200


def _state_filter(state: int) -> None:
    if state < -2 or state > VmState.CLONING_FAILURE:
        raise ApiError(f"Incorrect state filter {state}")


async def _yield(core: Core) -> None:
    """Let the reactor run other work (timers and I/O) before going on."""
    d: Deferred[None] = Deferred()
    core.clock.callLater(0, d.callback, None)
    await d


async def _join(core: Core, root: str, vms: list[VirtualMachine], extended: bool) -> WireParts:
    """The listing from the cached escaped bodies, joined slice by slice into a few
    large pieces (the transport takes 20 writes, not 10,000) with a reactor turn
    between slices, so small calls are answered while a big listing is built."""
    wire = core.vms.wire_cache(extended)
    render = core.vms.wire_body if extended else core.vms.short_wire
    parts = WireParts([f"&lt;{root}&gt;".encode()])
    for first in range(0, len(vms), SLICE):
        if first:
            await _yield(core)
        chunk = []
        for vm in vms[first : first + SLICE]:
            data = wire.get(vm.oid)
            chunk.append(data if data is not None else render(vm.oid))
        parts.append(b"".join(chunk))
    parts.append(f"&lt;/{root}&gt;".encode())
    return parts


def _checks(core: Core, filter_flag: int, state: int, query: str) -> None:
    if query:
        raise InternalError("JSON query search is not supported by the SQL backend")
    _state_filter(state)
    if filter_flag < -4:
        raise ApiError("Incorrect filter_flag")


def _select(
    core: Core, call: Call, filter_flag: int, start: int, end: int, state: int
) -> list[VirtualMachine]:
    """``VirtualMachinePoolAPI::info``'s where clause at once (ACL-filtered callers
    and pages): owner filter, state (-2 any, -1 not DONE), id range or page."""
    keep = None if state == -2 else _keeper(call, -2, state)
    return shared.filtered(core, call, VM, filter_flag, start, end, extra=keep)


def _keeper(call: Call, flag: int, state: int) -> Callable[[VirtualMachine], bool]:
    """The owner (``flag``) and state filters as one predicate."""
    uid, gid, groups = call.caller.uid, call.caller.gid, call.caller.group_ids
    done = int(VmState.DONE)

    def keep(vm: VirtualMachine) -> bool:
        if flag == -4:
            if vm.gid != gid:
                return False
        elif flag == -3:
            if vm.uid != uid:
                return False
        elif flag == -1:
            if vm.uid != uid and vm.gid not in groups:
                return False
        elif flag >= 0 and vm.uid != flag:
            return False
        if state == -1:
            return vm.state != done
        return state in (-2, vm.state)

    return keep


async def _listing(
    core: Core,
    call: Call,
    flag: int,
    start: int,
    end: int,
    state: int,
    query: str,
    extended: bool,
) -> WireParts:
    """A ``VM_POOL`` listing written slice by slice: the ids in order (an id range cut
    by bisection), each slice filtered and joined from the cached escaped bodies into
    one piece, a reactor turn between slices. So a 10,000-VM answer holds the reactor
    for well under a millisecond at a time, and the transport gets 20 writes."""
    _checks(core, flag, state, query)
    root = "VM_POOL"
    if end < -1 or (flag != -3 and not core.acl.whole_pool(call.caller, VM.type_name)):
        return await _join(core, root, _select(core, call, flag, start, end, state), extended)
    if flag == -2 and start == -1 and state in (-2, -1):
        return await _whole_pool(core, root, state, extended, shared.list_order_desc(core, call))
    ids = core.vms.sorted_ids()
    if start != -1:
        lo = bisect.bisect_left(ids, start)
        ids = ids[lo : bisect.bisect_right(ids, end) if end != -1 else len(ids)]
    ids = ids[::-1] if shared.list_order_desc(core, call) else list(ids)
    keep = _keeper(call, flag, state)
    get = core.vms.get
    wire = core.vms.wire_cache(extended)
    render = core.vms.wire_body if extended else core.vms.short_wire
    parts = WireParts([f"&lt;{root}&gt;".encode()])
    for first in range(0, len(ids), SLICE):
        if first:
            await _yield(core)
        chunk = []
        for oid in ids[first : first + SLICE]:
            vm = get(oid)
            if vm is None or not keep(vm):
                continue
            data = wire.get(oid)
            chunk.append(data if data is not None else render(oid))
        if chunk:
            parts.append(b"".join(chunk))
    parts.append(f"&lt;/{root}&gt;".encode())
    return parts


async def _whole_pool(core: Core, root: str, state: int, extended: bool, desc: bool) -> WireParts:
    """Every VM (or every one not DONE) from pieces cached per block of ids: a listing
    of an unchanged pool costs a few dict lookups; a reactor turn between a block
    that had to be built and the next one."""
    ids = core.vms.sorted_ids()
    parts = WireParts([f"&lt;{root}&gt;".encode()])
    if ids:
        size = vm_pool.BLOCK
        blocks = range(ids[0] // size, ids[-1] // size + 1)
        built = False
        for block in reversed(blocks) if desc else blocks:
            if built:
                await _yield(core)
            data, built = core.vms.listing_block(block, extended, state, desc)
            if data:
                parts.append(data)
    parts.append(f"&lt;/{root}&gt;".encode())
    return parts


@rpc("one.vmpool.info", "iiiis", required=4)
async def pool_info(
    core: Core, call: Call, flag: int, start: int, end: int, state: int, query: str = ""
) -> WireParts:
    """Returns the virtual machine instances pool."""
    return await _listing(core, call, flag, start, end, state, query, False)


@rpc("one.vmpool.infoextended", "iiiis", required=4)
async def pool_info_extended(
    core: Core, call: Call, flag: int, start: int, end: int, state: int, query: str = ""
) -> WireParts:
    """Returns the virtual machine instances pool in extended format."""
    return await _listing(core, call, flag, start, end, state, query, True)


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


def monitoring_expiration(core: Core) -> int:
    """``VM_MONITORING_EXPIRATION_TIME`` (monitord's 43200 unless set): samples older
    than this are gone; 0 or less keeps none."""
    raw = (core.config.get("VM_MONITORING_EXPIRATION_TIME") or "").strip()
    try:
        return int(raw)
    except ValueError:
        return DEFAULT_MONITORING_EXPIRATION


async def monitoring_samples(core: Core, vids: list[int], seconds: int) -> WireParts:
    """``dump_monitoring``: 0 the last sample of each VM, -1 every sample, N those of
    the last N seconds (newer than now - N), by VM id then time; expired ones left out."""
    expiration = monitoring_expiration(core)
    if expiration <= 0 or not vids:
        return _document("MONITORING_DATA", [])
    now = core.now()
    oldest = now - expiration
    if seconds == 0:
        samples = await core.vms.monitoring(vids, 0, last_only=True, oldest=oldest)
    else:
        after = -1 if seconds == -1 else now - seconds
        samples = await core.vms.monitoring(vids, after, last_only=False, oldest=oldest)
    return _document("MONITORING_DATA", samples)


def _document(root: str, pieces: list[bytes]) -> WireParts:
    """``<root>`` around pieces escaped and joined in the DB thread."""
    return WireParts([f"&lt;{root}&gt;".encode(), *pieces, f"&lt;/{root}&gt;".encode()])


def _visible(core: Core, call: Call, flag: int) -> list[int]:
    """Ids of the VMs ``where_filter(flag)`` keeps (every state, DONE included)."""
    if flag < -4:
        raise ApiError("Incorrect filter_flag")
    return [vm.oid for vm in shared.filtered(core, call, VM, flag)]


@rpc("one.vmpool.monitoring", "ii", required=1)
async def pool_monitoring(core: Core, call: Call, flag: int, seconds: int = -1) -> WireParts:
    """Returns the virtual machine monitoring records."""
    return await monitoring_samples(core, _visible(core, call, flag), seconds)


@rpc("one.vmpool.accounting", "iii")
async def pool_accounting(core: Core, call: Call, flag: int, start: int, end: int) -> WireParts:
    """Returns the virtual machine history records."""
    records = await core.vms.accounting(start, end, _visible(core, call, flag))
    return _document("HISTORY_RECORDS", records)


@rpc("one.vmpool.showback", "iiiii")
async def pool_showback(
    core: Core,
    call: Call,
    flag: int,
    start_month: int,
    start_year: int,
    end_month: int,
    end_year: int,
) -> WireParts:
    """Returns the virtual machine showback records."""
    records = await core.vms.showback(
        _visible(core, call, flag), (start_month, start_year), (end_month, end_year)
    )
    return _document("SHOWBACK_RECORDS", records)


def _default_costs(core: Core) -> tuple[float, float, float]:
    vectors = core.config.vectors("DEFAULT_COST")
    conf = vectors[-1] if vectors else {}

    def cost(name: str) -> float:
        try:
            return float(conf.get(name, "0") or 0)
        except ValueError:
            return 0.0

    return cost("CPU_COST"), cost("MEMORY_COST"), cost("DISK_COST")


@rpc("one.vmpool.calculateshowback", "iiii")
async def calculate_showback(
    core: Core, call: Call, start_month: int, start_year: int, end_month: int, end_year: int
) -> str:
    """Processes all the history records, and stores the monthly cost for each VM."""
    if call.caller.gid != 0:
        raise AuthorizationError("Action reserved for group 0 only")
    now = core.now()
    oldest = now
    if start_month == -1 or start_year == -1:
        found = await core.vms.oldest_history()
        oldest = now if found is None else found
    begin, end = showback.window(start_month, start_year, end_month, end_year, now, oldest)
    bounds = showback.slots(begin, end)
    records = await core.vms.showback_input(begin, end, _default_costs(core))
    only_running = (core.config.get("SHOWBACK_ONLY_RUNNING") or "NO").strip().upper() == "YES"
    rows = showback.calculate(records, bounds, only_running)
    if rows:
        unit = core.unit()
        for row in rows:
            unit.sql(core.vms.showback_row(row))
        await unit.commit(f"showback of {len(rows)} VM months")
    return " "
