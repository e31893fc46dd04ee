"""Monthly showback of VMs (mirrors ``VirtualMachinePool::calculate_showback`` and
``SBRecord``).

Each history record of a VM is cut into calendar months (local time, as oned's
``mktime``/``localtime_r``); a month gets CPU, MEMORY and DISK cost (the VM template's
``CPU_COST``/``MEMORY_COST``/``DISK_COST``, or ``DEFAULT_COST``, times CPU, MEMORY in MB,
the DISK sizes in MB and the hours of the record in that month), the hours and the
running hours. oned adds these up in single precision ``float``; so does this module,
so the rounded figures are oned's. The result is one ``<SHOWBACK>`` body per VM and
month, stored in ``vm_showback``.
"""

from __future__ import annotations

import bisect
import math
import re
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from oned.objects.base import esc

_F32 = struct.Struct("f")
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")


def f32(value: float) -> float:
    """``value`` rounded to a C ``float``."""
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def float_to_str(value: float) -> str:
    """``one_util::float_to_str``: no decimals for a whole number, else two."""
    if math.isfinite(value) and value == math.ceil(value):
        return f"{value:.0f}"
    return f"{value:.2f}"


def _number(text: str | None, default: float) -> float:
    """What ``istringstream >> value`` reads from the start of ``text`` (``default``
    when nothing numeric is there)."""
    if text is None:
        return default
    match = _NUMBER.match(text)
    return float(match.group(0)) if match else default


@dataclass
class HistoryCost:
    """What showback reads from one ``history`` row (``/HISTORY/...`` xpaths)."""

    vid: int
    stime: int
    etime: int
    rstime: int
    retime: int
    cpu: float
    memory: int
    disk: float
    cpu_cost: float
    memory_cost: float
    disk_cost: float
    vmname: str = ""
    uid: int = -1
    gid: int = -1
    uname: str = ""
    gname: str = ""


def history_cost(body: str, defaults: tuple[float, float, float]) -> HistoryCost | None:
    """Parse a ``history`` row body (the record with the VM document inside)."""
    try:
        node = etree.fromstring(body.encode("utf-8"))
    except etree.XMLSyntaxError:
        return None

    def text(path: str) -> str | None:
        return node.findtext(path)

    def integer(path: str, default: int) -> int:
        return int(_number(text(path), default))

    tmpl = node.find("VM/TEMPLATE")
    disk = 0.0
    if tmpl is not None:
        for d in tmpl.findall("DISK"):
            for tag in ("SIZE", "DISK_SNAPSHOT_TOTAL_SIZE"):
                for el in d.findall(tag):
                    try:
                        disk += float((el.text or "").strip())
                    except ValueError:
                        disk = float("nan")
    return HistoryCost(
        vid=integer("OID", -1),
        stime=integer("STIME", 0),
        etime=integer("ETIME", 0),
        rstime=integer("RSTIME", 0),
        retime=integer("RETIME", 0),
        cpu=f32(_number(text("VM/TEMPLATE/CPU"), 0.0)),
        memory=integer("VM/TEMPLATE/MEMORY", 0),
        disk=f32(disk) if math.isfinite(disk) else 0.0,
        cpu_cost=f32(_number(text("VM/TEMPLATE/CPU_COST"), defaults[0])),
        memory_cost=f32(_number(text("VM/TEMPLATE/MEMORY_COST"), defaults[1])),
        disk_cost=f32(_number(text("VM/TEMPLATE/DISK_COST"), defaults[2])),
        vmname=text("VM/NAME") or "",
        uid=integer("VM/UID", -1),
        gid=integer("VM/GID", -1),
        uname=text("VM/UNAME") or "",
        gname=text("VM/GNAME") or "",
    )


@dataclass
class Totals:
    """``SBRecord``: one VM's costs and hours in one month."""

    cpu_cost: float = 0.0
    memory_cost: float = 0.0
    disk_cost: float = 0.0
    hours: float = 0.0
    rhours: float = 0.0

    def to_xml(self) -> str:
        total = f32(f32(self.cpu_cost + self.memory_cost) + self.disk_cost)
        return (
            f"<CPU_COST>{float_to_str(self.cpu_cost)}</CPU_COST>"
            f"<MEMORY_COST>{float_to_str(self.memory_cost)}</MEMORY_COST>"
            f"<DISK_COST>{float_to_str(self.disk_cost)}</DISK_COST>"
            f"<TOTAL_COST>{float_to_str(total)}</TOTAL_COST>"
            f"<HOURS>{float_to_str(self.hours)}</HOURS>"
            f"<RHOURS>{float_to_str(self.rhours)}</RHOURS>"
        )


@dataclass
class VmCost:
    """``VMCost``: a VM's names (from its last record) and its months."""

    vmname: str = ""
    uid: int = -1
    gid: int = -1
    uname: str = ""
    gname: str = ""
    totals: dict[int, Totals] = field(default_factory=dict)


@dataclass(frozen=True)
class ShowbackRow:
    """One ``vm_showback`` row."""

    vmid: int
    year: int
    month: int
    body: str


def _month_start(t: int) -> time.struct_time:
    return time.localtime(t)


def _mktime(year: int, month0: int) -> int:
    """``mktime`` of the first day of month ``month0`` (0-based, may overflow) at 00:00
    (-1, as ``mktime``, for a date it cannot represent)."""
    year += month0 // 12
    month0 %= 12
    try:
        return int(time.mktime((year, month0 + 1, 1, 0, 0, 0, 0, 0, -1)))
    except (OverflowError, ValueError):
        return -1


def window(
    start_month: int, start_year: int, end_month: int, end_year: int, now: int, min_stime: int
) -> tuple[int, int]:
    """The ``[start_time, end_time)`` window: the first day of the start month (or the
    oldest record's STIME) to the first day after the end month, capped at now."""
    start = now
    if start_month != -1 and start_year != -1:
        start = _mktime(start_year, start_month - 1)
    else:
        start = min_stime
    end = now
    if end_month != -1 and end_year != -1:
        end = min(end, _mktime(end_year, end_month))
    return start, end


def slots(start: int, end: int) -> list[int]:
    """First second of every month from ``start``'s month while before ``end``, then
    ``end`` itself (the bound of the last slot)."""
    try:
        first = time.localtime(start)
    except (OverflowError, OSError, ValueError):
        return [end]
    year, month0 = first.tm_year, first.tm_mon - 1
    out = []
    t = _mktime(year, month0)
    while t < end:
        out.append(t)
        month0 += 1
        t = _mktime(year, month0)
    out.append(end)
    return out


def _count(
    totals: dict[int, Totals],
    h: HistoryCost,
    bounds: list[int],
    st: int,
    et: int,
    cpu_mem: bool,
    disk_total: bool,
    running: bool,
) -> None:
    """Add ``[st, et)`` (``et`` 0: open) of record ``h`` to every slot it overlaps:
    those with ``t_next >= st`` and ``t < et`` (found by bisection)."""
    if st == 0:
        return
    first = max(bisect.bisect_left(bounds, st) - 1, 0)
    last = len(bounds) - 1 if et == 0 else min(bisect.bisect_left(bounds, et), len(bounds) - 1)
    for i in range(first, last):
        _add(totals, h, bounds[i], bounds[i + 1], st, et, cpu_mem, disk_total, running)


def _add(
    totals: dict[int, Totals],
    h: HistoryCost,
    t: int,
    t_next: int,
    st: int,
    et: int,
    cpu_mem: bool,
    disk_total: bool,
    running: bool,
) -> None:
    if not ((et > t or et == 0) and (st != 0 and st <= t_next)):
        return
    begin = max(t, st)
    finish = t_next if et == 0 else min(t_next, et)
    n_hours = f32((finish - begin) / 60 / 60)
    rec = totals.get(t)
    if rec is None:
        rec = totals[t] = Totals()
    if cpu_mem:
        rec.cpu_cost = f32(rec.cpu_cost + f32(f32(h.cpu_cost * h.cpu) * n_hours))
        rec.memory_cost = f32(rec.memory_cost + f32(f32(h.memory_cost * f32(h.memory)) * n_hours))
    if disk_total:
        rec.disk_cost = f32(rec.disk_cost + f32(f32(h.disk_cost * h.disk) * n_hours))
        rec.hours = f32(rec.hours + n_hours)
    if running:
        rec.rhours = f32(rec.rhours + n_hours)


def calculate(
    records: Iterable[HistoryCost], bounds: list[int], only_running: bool
) -> list[ShowbackRow]:
    """Every VM's monthly totals over the slots ``bounds`` (from ``slots``), as rows in
    VM id then month order."""
    costs: dict[int, VmCost] = {}
    for h in records:
        vm = costs.get(h.vid)
        if vm is None:
            vm = costs[h.vid] = VmCost()
        vm.vmname, vm.uid, vm.uname, vm.gid, vm.gname = h.vmname, h.uid, h.uname, h.gid, h.gname
        if only_running:
            _count(vm.totals, h, bounds, h.stime, h.etime, False, True, False)
            _count(vm.totals, h, bounds, h.rstime, h.retime, True, False, True)
        else:
            _count(vm.totals, h, bounds, h.stime, h.etime, True, True, False)
            _count(vm.totals, h, bounds, h.rstime, h.retime, False, False, True)
    rows = []
    for vmid in sorted(costs):
        vm = costs[vmid]
        for t in sorted(vm.totals):
            local = _month_start(t)
            body = (
                f"<SHOWBACK><VMID>{vmid}</VMID><VMNAME>{esc(vm.vmname)}</VMNAME>"
                f"<UID>{vm.uid}</UID><GID>{vm.gid}</GID><UNAME>{esc(vm.uname)}</UNAME>"
                f"<GNAME>{esc(vm.gname)}</GNAME><YEAR>{local.tm_year}</YEAR>"
                f"<MONTH>{local.tm_mon}</MONTH>{vm.totals[t].to_xml()}</SHOWBACK>"
            )
            rows.append(ShowbackRow(vmid, local.tm_year, local.tm_mon, body))
    return rows
