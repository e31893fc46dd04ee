"""The pool families of OpenNebula's ``opennebula-exporter``, from the in-memory pools.

Mirrors ``src/oneprometheus/opennebula-exporter/src/opennebula_{host,datastore,vm,ar}_
collector.rb``: the same names, help texts, labels and values the exporter derives from
``one.hostpool.info``, ``one.datastorepool.info``, ``one.vmpool.info`` (every VM but DONE
ones, short documents) and ``one.vnpool.info``, so that OpenNebula's Grafana dashboards
and alert rules read them unchanged. Nothing is rendered or parsed as XML: values come
from the objects, and each host's and VM's lines are kept until its stored document
changes (the pools replace the body string on every commit, so an identity check
tells), and VMs are cached by the VM pool's listing blocks on top of that (``VmBlocks``), which
makes a scrape of 10,000 idle VMs forty cache lookups and a join.

Where the exporter would abort its whole collector on a malformed value (``Integer("")``
raising), only that sample is left out.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from oned.metrics.text import escape_label, family, header, value
from oned.pools.vm import BLOCK as VM_BLOCK

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.datastore import Datastore
    from oned.objects.host import Host
    from oned.objects.vm import VirtualMachine
    from oned.objects.vnet import VirtualNetwork

T = TypeVar("T")

MIB = 1024 * 1024
#: ``VirtualMachine::DONE``: ``vmpool.info`` (INFO_NOT_DONE) leaves these out.
VM_DONE = 6
#: ``OpenNebula::Datastore::DATASTORE_TYPES``.
DATASTORE_TYPES = ("IMAGE", "SYSTEM", "FILE", "BACKUP")

#: (name, help) of the per-host families, in the order of ``HOST_METRICS``.
HOST_FAMILIES = (
    ("opennebula_host_state", "Host state 0:init 2:monitored 3:error 4:disabled 8:offline"),
    ("opennebula_host_mem_total_bytes", "Total memory capacity"),
    ("opennebula_host_mem_maximum_bytes", "Total memory capacity considering overcommitment"),
    ("opennebula_host_mem_usage_bytes", "Total memory capacity allocated to VMs"),
    ("opennebula_host_cpu_total_ratio", "Total CPU capacity"),
    ("opennebula_host_cpu_maximum_ratio", "Total CPU capacity considering overcommitment"),
    ("opennebula_host_cpu_usage_ratio", "Total CPU capacity allocated to VMs"),
    ("opennebula_host_vms", "Number of VMs allocated to the host"),
)
HOST_TOTAL = ("opennebula_host_total", "Total number of hosts defined in OpenNebula")

DATASTORE_FAMILIES = (
    ("opennebula_datastore_total_bytes", "Total capacity of the datastore"),
    ("opennebula_datastore_used_bytes", "Capacity being used in the datastore"),
    ("opennebula_datastore_free_bytes", "Available capacity in the datastore"),
    ("opennebula_datastore_images", "Number of images stored in the datastore"),
)
DATASTORE_TOTAL = (
    "opennebula_datastore_total",
    "Total number of datastores defined in OpenNebula",
)

#: ``VM_METRICS``, ``DISK_METRICS`` and ``NIC_METRICS`` in the collector's order.
VM_FAMILIES = (
    ("opennebula_vm_host_id", "Host ID where the VM is allocated"),
    (
        "opennebula_vm_state",
        "VM state 0:init 1:pending 2:hold 3:active 4:stopped 5:suspended 6:done "
        "8:poweroff 9:undeployed 10:clonning",
    ),
    ("opennebula_vm_lcm_state", "VM LCM state, only relevant for state 3 (active)"),
    ("opennebula_vm_mem_total_bytes", "Total memory capacity"),
    ("opennebula_vm_cpu_ratio", "Total CPU capacity requested by the VM"),
    ("opennebula_vm_cpu_vcpus", "Total number of virtual CPUs"),
    ("opennebula_vm_disks", "Total number of disks"),
    ("opennebula_vm_disk_size_bytes", "Size of the VM disk"),
    ("opennebula_vm_nics", "Total number of network interfaces"),
)
VM_TOTAL = ("opennebula_vm_total", "Total number of VMs defined in OpenNebula")

AR_FAMILY = (
    "opennebula_vnet_free_lease_ratio",
    "Fraction of free leases in each VNet Address Range",
)

Rows = tuple[str, ...]


def _int(text: str | None) -> int | None:
    """Ruby's ``Integer(text)`` for what oned writes (None where it would raise)."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


class RowCache(Generic[T]):
    """Per object: its sample lines, one string per family, kept while the object's
    stored body is the same string."""

    def __init__(self, render: Callable[[T], Rows]) -> None:
        self._render = render
        self._rows: dict[int, tuple[str, Rows]] = {}

    def rows(self, items: Iterable[tuple[int, str, T]]) -> list[Rows]:
        """The rows of ``(oid, body, object)``; entries of vanished objects are dropped."""
        old, new = self._rows, {}
        out = []
        for oid, body, obj in items:
            hit = old.get(oid)
            if hit is None or hit[0] is not body:
                hit = (body, self._render(obj))
            new[oid] = hit
            out.append(hit[1])
        self._rows = new
        return out


def _columns(rows: list[Rows], width: int) -> list[str]:
    """The rows transposed: one string per family."""
    if not rows:
        return [""] * width
    return ["".join(col) for col in zip(*rows, strict=True)]


# -- hosts -------------------------------------------------------------------------------


def host_rows(host: Host) -> Rows:
    lab = f'{{one_host_id="{host.oid}"}} '
    share = host.share
    values = (
        host.state,
        share.total_mem * 1024,
        share.max_mem * 1024,
        share.mem_usage * 1024,
        share.total_cpu,
        share.max_cpu,
        share.cpu_usage,
        len(host.vms),
    )
    return tuple(
        f"{name}{lab}{value(v)}\n" for (name, _), v in zip(HOST_FAMILIES, values, strict=True)
    )


# -- datastores ------------------------------------------------------------------------


def datastore_rows(ds: Datastore) -> Rows:
    kind = DATASTORE_TYPES[ds.type] if 0 <= ds.type < len(DATASTORE_TYPES) else "UNKNOWN"
    lab = (
        f'{{one_datastore_id="{ds.oid}",one_datastore_type="{kind}",'
        f'one_datastore_name="{escape_label(ds.name)}"}} '
    )
    values = (ds.total_mb * MIB, ds.used_mb * MIB, ds.free_mb * MIB, len(ds.images))
    return tuple(
        f"{name}{lab}{value(v)}\n" for (name, _), v in zip(DATASTORE_FAMILIES, values, strict=True)
    )


# -- VMs ---------------------------------------------------------------------------------


def vm_rows(vm: VirtualMachine) -> Rows:
    """A VM's lines, from what its ``one.vmpool.info`` element holds."""
    cpu = mem = vcpu = None
    disks: list[tuple[str, str | None]] = []
    nics = 0
    for name, item in vm.template.items:
        if isinstance(item, dict):
            if name == "DISK":
                disk_id = item.get("DISK_ID")
                if disk_id is not None:
                    disks.append((disk_id, item.get("SIZE")))
            elif name in ("NIC", "NIC_ALIAS") and "NIC_ID" in item:
                nics += 1  # the short document writes aliases as NIC elements too
        elif name == "CPU" and cpu is None:
            cpu = item
        elif name == "MEMORY" and mem is None:
            mem = item
        elif name == "VCPU" and vcpu is None:
            vcpu = item
    lab = f'{{one_vm_id="{vm.oid}"}} '
    names = [n for n, _ in VM_FAMILIES]
    current = vm.history[-1] if vm.history else None
    memory = _int(mem)
    ratio = _float(cpu)
    vcpus = _int(vcpu) if vcpu else 1
    sizes = []
    for disk_id, size in disks:
        mb = _int(size)
        if mb is not None:
            sizes.append(
                f'{names[7]}{{one_vm_id="{vm.oid}",disk_id="{escape_label(disk_id)}"}} {mb * MIB}\n'
            )
    return (
        f"{names[0]}{lab}{current.hid if current is not None else -1}\n",
        f"{names[1]}{lab}{vm.state}\n",
        f"{names[2]}{lab}{vm.lcm_state}\n",
        f"{names[3]}{lab}{memory * MIB}\n" if memory is not None else "",
        f"{names[4]}{lab}{value(ratio)}\n" if ratio is not None else "",
        f"{names[5]}{lab}{vcpus}\n" if vcpus is not None else "",
        f"{names[6]}{lab}{len(disks)}\n",
        "".join(sizes),
        f"{names[8]}{lab}{nics}\n",
    )


# -- address ranges ----------------------------------------------------------------------


def ar_lines(vnet: VirtualNetwork) -> Iterable[str]:
    """``process_ar``: the free fraction of each AR with a size, rounded to 0.01."""
    name = escape_label(vnet.name)
    for ar in vnet.ars:
        if ar.size <= 0:
            continue
        ratio = min(max((ar.size - ar.used()) / ar.size, 0.0), 1.0)
        yield (
            f'{AR_FAMILY[0]}{{vnet_id="{vnet.oid}",vnet_name="{name}",ar_id="{ar.ar_id}"}} '
            f"{value(round(ratio, 2))}\n"
        )


class _Block:
    """The VMs of one id block: the pool's listing piece it was rendered from, how many
    are listed (not DONE) and their lines, one piece per family."""

    __slots__ = ("columns", "live", "oids", "token")

    def __init__(self, oids: list[int], token: bytes, live: int, columns: list[bytes]) -> None:
        self.oids = oids
        self.token = token
        self.live = live
        self.columns = columns


class VmBlocks:
    """The VM families cached per block of the VM pool's listing blocks.

    ``VirtualMachinePool.listing_block`` keeps each block's ``vmpool.info`` piece until
    one of its VMs changes, so the identity of that piece tells whether the block's lines
    can be reused as they are; only the VMs of a changed block are looked at again (and
    rendered again only when their own short body changed). An idle pool of 10,000 VMs
    thus costs forty cache lookups and the joins, and allocates almost nothing (no
    collector pauses); a changed block's listing piece is built once and shared with the
    next ``vmpool.info``.
    """

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._rows: dict[int, tuple[str, Rows]] = {}
        #: The blocks last joined, how many VMs they list and each family's lines.
        self._joined: tuple[list[_Block], int, list[bytes]] | None = None

    def render(self, pool: Any, desc: bool) -> tuple[int, list[bytes]]:
        """(VMs listed, the lines of each family of ``VM_FAMILIES``), the joined lines
        kept as long as no block changes (an idle pool's scrape writes cached bytes)."""
        ids: list[int] = pool.sorted_ids()
        old, new = self._blocks, {}
        at, count = 0, len(ids)
        while at < count:
            block = ids[at] // VM_BLOCK
            end = bisect.bisect_left(ids, (block + 1) * VM_BLOCK, at)
            token = pool.listing_block(block, False, -1, desc)[0]
            hit = old.get(block)
            if hit is None or hit.token is not token:
                hit = self._build(pool, ids[at:end], token, hit)
            new[block] = hit
            at = end
        for gone in old.keys() - new.keys():
            for oid in old[gone].oids:
                self._rows.pop(oid, None)
        self._blocks = new
        blocks = [new[b] for b in sorted(new)]
        joined = self._joined
        if (
            joined is None
            or len(joined[0]) != len(blocks)
            or not all(map(operator.is_, joined[0], blocks))
        ):
            columns = [b"".join(b.columns[i] for b in blocks) for i in range(len(VM_FAMILIES))]
            joined = self._joined = (blocks, sum(b.live for b in blocks), columns)
        return joined[1], joined[2]

    async def refresh(self, pool: Any, desc: bool, pause: Callable[[], Awaitable[None]]) -> None:
        """Rebuild the changed blocks one at a time, giving the reactor back after each
        (a first scrape of 10,000 VMs then never holds the API for more than a block's
        work); ``render`` afterwards only meets what changed in between."""
        ids: list[int] = pool.sorted_ids()  # the pool's own list, kept current
        block = 0
        while True:
            lo = bisect.bisect_left(ids, block * VM_BLOCK)
            if lo == len(ids):
                return
            block = ids[lo] // VM_BLOCK
            hi = bisect.bisect_left(ids, (block + 1) * VM_BLOCK, lo)
            token = pool.listing_block(block, False, -1, desc)[0]
            hit = self._blocks.get(block)
            if hit is None or hit.token is not token:
                self._blocks[block] = self._build(pool, ids[lo:hi], token, hit)
                await pause()
            block += 1

    def _build(self, pool: Any, oids: list[int], token: bytes, old: _Block | None) -> _Block:
        rows_of = self._rows
        if old is not None:
            for oid in set(old.oids).difference(oids):
                rows_of.pop(oid, None)
        rows: list[Rows] = []
        for oid in oids:
            vm = pool.get(oid)
            if vm is None or vm.state == VM_DONE:
                rows_of.pop(oid, None)
                continue
            body = pool.short_body(oid)
            hit = rows_of.get(oid)
            if hit is None or hit[0] is not body:
                hit = rows_of[oid] = (body, vm_rows(vm))
            rows.append(hit[1])
        cols = [c.encode() for c in _columns(rows, len(VM_FAMILIES))]
        return _Block(oids, token, len(rows), cols)


class PoolExporter:
    """Renders the exporter's pool families from ``core``'s pools."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._hosts: RowCache[Host] = RowCache(host_rows)
        self._datastores: RowCache[Datastore] = RowCache(datastore_rows)
        self._vms = VmBlocks()

    async def refresh(self, pause: Callable[[], Awaitable[None]]) -> None:
        """Bring the VM block cache up to date in small steps (see ``VmBlocks.refresh``)."""
        await self._vms.refresh(self.core.vms, self.core.config.api_list_order_desc, pause)

    def render(self) -> list[bytes]:
        """Every family, as pieces to join (the VMs' straight from the block cache)."""
        text = "".join([*self.hosts(), *self.datastores()]).encode()
        return [text, *self.vms(), self.address_ranges().encode()]

    def hosts(self) -> list[str]:
        pool = self.core.hosts
        hosts = sorted(pool.objects(), key=lambda h: h.oid)
        rows = self._hosts.rows((h.oid, pool.body(h.oid), h) for h in hosts)
        cols = _columns(rows, len(HOST_FAMILIES))
        out = [family(*HOST_TOTAL, [f"{HOST_TOTAL[0]} {len(hosts)}\n"])]
        out += [family(n, h, [c]) for (n, h), c in zip(HOST_FAMILIES, cols, strict=True)]
        return out

    def datastores(self) -> list[str]:
        pool = self.core.datastores
        dss = sorted(pool.objects(), key=lambda d: d.oid)
        rows = self._datastores.rows((d.oid, pool.body(d.oid), d) for d in dss)
        cols = _columns(rows, len(DATASTORE_FAMILIES))
        out = [family(*DATASTORE_TOTAL, [f"{DATASTORE_TOTAL[0]} {len(dss)}\n"])]
        out += [family(n, h, [c]) for (n, h), c in zip(DATASTORE_FAMILIES, cols, strict=True)]
        return out

    def vms(self) -> list[bytes]:
        live, cols = self._vms.render(self.core.vms, self.core.config.api_list_order_desc)
        out = [family(*VM_TOTAL, [f"{VM_TOTAL[0]} {live}\n"]).encode()]
        for (name, help_text), lines in zip(VM_FAMILIES, cols, strict=True):
            out += [header(name, help_text).encode(), lines]
        return out

    def address_ranges(self) -> str:
        vnets = sorted(self.core.vnets.objects(), key=lambda v: v.oid)
        return family(*AR_FAMILY, (line for vn in vnets for line in ar_lines(vn)))
