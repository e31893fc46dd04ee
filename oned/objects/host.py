"""The HOST object (mirrors ``Host.h``/``Host.cc``, ``HostShare*.cc``).

A host is stored with an empty ``<MONITORING/>``, as oned stores it; ``one.host.info``
splices the last monitoring sample in (see ``oned.objects.host_monitoring``). The
capacity bookkeeping of ``HOST_SHARE`` (totals from the SYSTEM_HOST probe, MAX_* after
host or cluster ``RESERVED_CPU``/``RESERVED_MEM``, DATASTORES, PCI_DEVICES, NUMA_NODES)
follows ``HostShare::set_monitorization`` and ``update_capacity``.
"""

from __future__ import annotations

import copy as _copy
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lxml import etree

from oned.objects.base import esc, ids_of, ids_xml, int_of, parse_xml, template_of, text_of
from oned.template import Template

INIT = 0
MONITORING_MONITORED = 1
MONITORED = 2
ERROR = 3
DISABLED = 4
MONITORING_ERROR = 5
MONITORING_INIT = 6
MONITORING_DISABLED = 7
OFFLINE = 8

STATE_NAMES = {
    INIT: "INIT",
    MONITORING_MONITORED: "MONITORING_MONITORED",
    MONITORED: "MONITORED",
    ERROR: "ERROR",
    DISABLED: "DISABLED",
    MONITORING_ERROR: "MONITORING_ERROR",
    MONITORING_INIT: "MONITORING_INIT",
    MONITORING_DISABLED: "MONITORING_DISABLED",
    OFFLINE: "OFFLINE",
}

#: Probe attributes an OFFLINE host loses (``Host::offline``).
_OFFLINE_DROPS = ("TOTALCPU", "TOTALMEMORY", "FREECPU", "FREEMEMORY", "USEDCPU", "USEDMEMORY")

EMPTY_MONITORING = "<MONITORING/>"


def log_time(seconds: float) -> str:
    """``one_util::log_time``: ``ctime`` without its newline."""
    return time.ctime(seconds)


def _to_int(text: str | None) -> int | None:
    """``istringstream >> long long`` on a whole value (None when it is not one)."""
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return None


def reserved_metric(total: int, reserved: str) -> int:
    """``set_reserved_metric``: ``total`` minus an absolute or ``N%`` reservation."""
    if not reserved:
        return total
    reserved = reserved.strip()
    percent = reserved.endswith("%")
    if percent:
        reserved = reserved[:-1]
    try:
        value = int(reserved)
    except ValueError:
        return total
    if percent:
        return int(total * (1 - value / 100.0))
    return total - value


def _datastores_default() -> Template:
    return Template(
        [("DISK_USAGE", "0"), ("MAX_DISK", "0"), ("FREE_DISK", "0"), ("USED_DISK", "0")]
    )


@dataclass
class NumaNode:
    """One ``HOST_SHARE/NUMA_NODES/NODE`` (``HostShareNode``)."""

    node_id: int
    cores: list[dict[str, str]] = field(default_factory=list)
    pages: list[dict[str, str]] = field(default_factory=list)
    memory: dict[str, str] | None = None

    def to_xml(self) -> str:
        tmpl = Template()
        for core in self.cores:
            tmpl.add("CORE", core)
        for page in self.pages:
            tmpl.add("HUGEPAGE", page)
        if self.memory is not None:
            tmpl.add("MEMORY", self.memory)
        tmpl.add("NODE_ID", str(self.node_id))
        return tmpl.to_xml("NODE")


def _core_attribute(core_id: str, cpus: str, vms_thread: int) -> dict[str, str]:
    """``HostShareNode::Core`` built from a probe's ``CPUS`` list, as an attribute."""
    ids: list[int] = []
    for part in cpus.split(","):
        head = part.split(":", 1)[0].strip()
        if head.isdigit() and int(head) not in ids:
            ids.append(int(head))
    ids.sort()
    return {
        "ID": core_id,
        "CPUS": ",".join(f"{i}:-1" for i in ids),
        "FREE": str(len(ids) * vms_thread),
        "DEDICATED": "NO",
    }


def _core_free(core: dict[str, str], vms_thread: int) -> int:
    """``Core::set_cpu_usage``: free slots of a core for its CPUS usage."""
    if core.get("DEDICATED") == "YES":
        return 0
    cpus = [c.split(":") for c in core.get("CPUS", "").split(",") if c]
    reserved = sum(1 for c in cpus if len(c) > 1 and c[1] == "-2")
    used = sum(1 for c in cpus if len(c) > 1 and c[1].isdigit())
    free = (len({c[0] for c in cpus}) - reserved) * vms_thread
    return max(free - used, 0)


@dataclass
class HostShare:
    """``HOST_SHARE``: allocated capacity of a host (``HostShare.h``)."""

    mem_usage: int = 0
    cpu_usage: int = 0
    total_mem: int = 0
    total_cpu: int = 0
    max_mem: int = 0
    max_cpu: int = 0
    running_vms: int = 0
    vms_thread: int = 1
    datastores: Template = field(default_factory=_datastores_default)
    pci: list[dict[str, str]] = field(default_factory=list)
    numa: dict[int, NumaNode] = field(default_factory=dict)

    def to_xml(self) -> str:
        pci = Template([("PCI", dev) for dev in self.pci]).to_xml("PCI_DEVICES")
        numa = "".join(self.numa[n].to_xml() for n in sorted(self.numa))
        return (
            f"<HOST_SHARE><MEM_USAGE>{self.mem_usage}</MEM_USAGE>"
            f"<CPU_USAGE>{self.cpu_usage}</CPU_USAGE><TOTAL_MEM>{self.total_mem}</TOTAL_MEM>"
            f"<TOTAL_CPU>{self.total_cpu}</TOTAL_CPU><MAX_MEM>{self.max_mem}</MAX_MEM>"
            f"<MAX_CPU>{self.max_cpu}</MAX_CPU><RUNNING_VMS>{self.running_vms}</RUNNING_VMS>"
            f"<VMS_THREAD>{self.vms_thread}</VMS_THREAD>"
            f"{self.datastores.to_xml('DATASTORES')}{pci}<NUMA_NODES>{numa}</NUMA_NODES>"
            "</HOST_SHARE>"
        )

    @classmethod
    def from_xml(cls, node: etree._Element | None) -> HostShare:
        share = cls()
        if node is None:
            return share
        share.mem_usage = int_of(node, "MEM_USAGE")
        share.cpu_usage = int_of(node, "CPU_USAGE")
        share.total_mem = int_of(node, "TOTAL_MEM")
        share.total_cpu = int_of(node, "TOTAL_CPU")
        share.max_mem = int_of(node, "MAX_MEM")
        share.max_cpu = int_of(node, "MAX_CPU")
        share.running_vms = int_of(node, "RUNNING_VMS")
        share.vms_thread = int_of(node, "VMS_THREAD", 1) or 1
        share.datastores = template_of(node, "DATASTORES")
        share.pci = template_of(node, "PCI_DEVICES").vectors("PCI")
        for elem in node.findall("NUMA_NODES/NODE"):
            tmpl = template_of(elem, ".")
            nid = _to_int(tmpl.get("NODE_ID")) or 0
            share.numa[nid] = NumaNode(
                nid, tmpl.vectors("CORE"), tmpl.vectors("HUGEPAGE"), tmpl.get_vector("MEMORY")
            )
        return share

    # -- HostShare::set_monitorization -------------------------------------------

    def set_datastores(self, tmpl: Template) -> None:
        """Overall DS_LOCATION_* figures and the per-DS vectors of non-shared system DS."""
        ds = self.datastores
        for key, probe in (
            ("MAX_DISK", "DS_LOCATION_TOTAL_MB"),
            ("FREE_DISK", "DS_LOCATION_FREE_MB"),
            ("USED_DISK", "DS_LOCATION_USED_MB"),
        ):
            value = _to_int(tmpl.get(probe))
            if value is not None:
                ds.set(key, str(value))
            tmpl.erase(probe)
        if ds.get("DISK_USAGE") is None:
            ds.set("DISK_USAGE", "0")
        ds.erase("DS")
        for vector in tmpl.vectors("DS"):
            ds.add("DS", dict(vector))
        tmpl.erase("DS")

    def set_pci(self, tmpl: Template, pci_filter: str, short_addresses: str) -> None:
        """Add new PCI devices, refresh known ones, drop vanished free ones."""
        filters = [
            [t.strip() or "*" for t in ([*f.split(":"), "*", "*"])[:3]]
            for f in pci_filter.split(",")
            if pci_filter
        ]
        shorts = [s.strip() for s in short_addresses.split(",") if s.strip()]
        known = {dev.get("ADDRESS", ""): dev for dev in self.pci}
        missing = set(known)
        for dev in tmpl.vectors("PCI"):
            address = dev.get("ADDRESS", "")
            if not address or not _pci_match(filters, shorts, dev):
                continue
            if address in known:
                missing.discard(address)
                old = known[address]
                for key, drop in (("PROFILES", False), ("SRIOV", False), ("SRIOV_NUM", True)):
                    if dev.get(key):
                        old[key] = dev[key]
                    elif drop:
                        old.pop(key, None)
                continue
            new = dict(dev)
            if _to_int(new.get("VMID")) is None:
                new["VMID"] = "-1"
            self.pci.append(new)
            known[address] = new
        self.pci = [
            d for d in self.pci if d.get("ADDRESS", "") not in missing or d.get("VMID") != "-1"
        ]
        tmpl.erase("PCI")

    def set_numa(self, tmpl: Template) -> None:
        for core in tmpl.vectors("CORE"):
            nid = _to_int(core.get("NODE_ID"))
            if nid is None:
                continue
            node = self.numa.setdefault(nid, NumaNode(nid))
            core_id = core.get("ID", "")
            if any(c.get("ID") == core_id for c in node.cores):
                continue
            node.cores.append(_core_attribute(core_id, core.get("CPUS", ""), self.vms_thread))
        for page in tmpl.vectors("HUGEPAGE"):
            nid = _to_int(page.get("NODE_ID"))
            if nid is None:
                continue
            node = self.numa.setdefault(nid, NumaNode(nid))
            size = str(_to_int(page.get("SIZE")) or 0)
            pages = str(_to_int(page.get("PAGES")) or 0)
            found = next((p for p in node.pages if p.get("SIZE") == size), None)
            if found is None:
                node.pages.append({"SIZE": size, "PAGES": pages, "USAGE": "0"})
            else:
                found["PAGES"] = pages
        for mem in tmpl.vectors("MEMORY_NODE"):
            nid = _to_int(mem.get("NODE_ID"))
            if nid is None:
                continue
            node = self.numa.setdefault(nid, NumaNode(nid))
            usage = node.memory.get("USAGE", "0") if node.memory else "0"
            distance = " ".join(d for d in mem.get("DISTANCE", "").split(" ") if d)
            node.memory = {
                "TOTAL": str(_to_int(mem.get("TOTAL")) or 0),
                "USAGE": usage,
                "DISTANCE": distance,
            }
        for name in ("CORE", "HUGEPAGE", "MEMORY_NODE"):
            tmpl.erase(name)

    def reset_capacity(self) -> None:
        """``HostShare::reset_capacity`` (OFFLINE): no totals, no devices."""
        self.total_cpu = self.total_mem = 0
        self.max_cpu = self.max_mem = 0
        self.pci = [d for d in self.pci if d.get("VMID", "-1") != "-1"]
        self.numa = {}
        self.datastores = _datastores_default()


def _pci_match(filters: list[list[str]], shorts: list[str], dev: dict[str, str]) -> bool:
    if shorts and dev.get("SHORT_ADDRESS", "") not in shorts:
        return False
    if not filters:
        return True
    values = (dev.get("VENDOR", ""), dev.get("DEVICE", ""), dev.get("CLASS", ""))
    for flt in filters:
        if all(f == "*" or f.lower() == v.lower() for f, v in zip(flt, values, strict=True)):
            return True
    return False


@dataclass
class Host:
    oid: int
    name: str
    state: int = INIT
    prev_state: int = INIT
    im_mad: str = ""
    vm_mad: str = ""
    cluster_id: int = 0
    cluster: str = "default"
    share: HostShare = field(default_factory=HostShare)
    vms: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "host_pool"
    ROOT: ClassVar[str] = "HOST"

    @classmethod
    def new(cls, oid: int, name: str, im_mad: str, vm_mad: str, cid: int, cname: str) -> Host:
        """A freshly allocated host (``Host::Host``): INIT, empty reservations."""
        tmpl = Template(
            [("RESERVED_CPU", ""), ("RESERVED_MEM", ""), ("IM_MAD", im_mad), ("VM_MAD", vm_mad)]
        )
        return cls(oid, name, INIT, INIT, im_mad, vm_mad, cid, cname, template=tmpl)

    def to_xml(self) -> str:
        """The stored body (monitoring is never stored in it)."""
        return (
            f"<HOST><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME>"
            f"<STATE>{self.state}</STATE><PREV_STATE>{self.prev_state}</PREV_STATE>"
            f"<IM_MAD><![CDATA[{self.im_mad}]]></IM_MAD>"
            f"<VM_MAD><![CDATA[{self.vm_mad}]]></VM_MAD>"
            f"<CLUSTER_ID>{self.cluster_id}</CLUSTER_ID><CLUSTER>{esc(self.cluster)}</CLUSTER>"
            f"{self.share.to_xml()}{ids_xml('VMS', self.vms)}"
            f"{self.template.to_xml()}{EMPTY_MONITORING}</HOST>"
        )

    def columns(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "uid": 0,
            "gid": 0,
            "owner_u": 1,
            "group_u": 0,
            "other_u": 0,
            "cid": self.cluster_id,
        }

    @classmethod
    def from_xml(cls, body: str) -> Host:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            state=int_of(root, "STATE"),
            prev_state=int_of(root, "PREV_STATE"),
            im_mad=text_of(root, "IM_MAD"),
            vm_mad=text_of(root, "VM_MAD"),
            cluster_id=int_of(root, "CLUSTER_ID"),
            cluster=text_of(root, "CLUSTER"),
            share=HostShare.from_xml(root.find("HOST_SHARE")),
            vms=set(ids_of(root, "VMS")),
            template=template_of(root),
        )

    def copy(self) -> Host:
        share = _copy.copy(self.share)
        share.datastores = self.share.datastores.copy()
        share.pci = [dict(d) for d in self.share.pci]
        share.numa = {
            n: NumaNode(
                node.node_id,
                [dict(c) for c in node.cores],
                [dict(p) for p in node.pages],
                dict(node.memory) if node.memory is not None else None,
            )
            for n, node in self.share.numa.items()
        }
        new = _copy.copy(self)
        new.share = share
        new.vms = set(self.vms)
        new.template = self.template.copy()
        return new

    @property
    def clusters(self) -> tuple[int, ...]:
        """Cluster ids for ACL cluster rules."""
        return (self.cluster_id,)

    def saved(self) -> Host:
        """``HostPool::update`` sets PREV_STATE to the state being written."""
        self.prev_state = self.state
        return self

    # -- state machine (Host::enable/disable/offline/error) -------------------------

    def enable(self) -> None:
        if self.state == DISABLED and self.share.total_cpu > 0:
            self.state = MONITORED
        else:
            self.state = INIT

    def disable(self) -> None:
        self.state = DISABLED

    def offline(self) -> None:
        self.state = OFFLINE
        self.share.reset_capacity()
        for name in _OFFLINE_DROPS:
            self.template.erase(name)

    def error(self, message: str, now: float) -> str:
        """Mark ERROR (unless DISABLED/OFFLINE) with ``TEMPLATE/ERROR``; returns the text."""
        text = f"Error monitoring Host {self.name} ({self.oid}): {message}"
        if self.state not in (OFFLINE, DISABLED):
            self.state = ERROR
        self.template.set("ERROR", f"{log_time(now)} : {text}")
        return text

    # -- capacity --------------------------------------------------------------------

    def reserved_capacity(self, cluster_template: Template | None) -> tuple[str, str]:
        """Host RESERVED_CPU/RESERVED_MEM, each falling back to the cluster's."""
        rcpu = self.template.get("RESERVED_CPU") or ""
        rmem = self.template.get("RESERVED_MEM") or ""
        if cluster_template is not None:
            rcpu = rcpu or cluster_template.get("RESERVED_CPU") or ""
            rmem = rmem or cluster_template.get("RESERVED_MEM") or ""
        return rcpu, rmem

    def hostcluster_attr(self, name: str, cluster_template: Template | None) -> str:
        value = self.template.get(name) or ""
        if not value and cluster_template is not None:
            value = cluster_template.get(name) or ""
        return value

    def update_reserved_capacity(self, cluster_rcpu: str, cluster_rmem: str) -> bool:
        """``Host::update_reserved_capacity``: apply a cluster's RESERVED_CPU/MEM (after
        a cluster template change or a move); False when the host defines both itself."""
        rcpu = self.template.get("RESERVED_CPU") or ""
        rmem = self.template.get("RESERVED_MEM") or ""
        if rcpu and rmem:
            return False
        cluster = Template([("RESERVED_CPU", cluster_rcpu), ("RESERVED_MEM", cluster_rmem)])
        self.update_capacity(cluster)
        return True

    def update_capacity(self, cluster_template: Template | None) -> None:
        """``post_update_template``/cluster change: MAX_* from the reservations,
        ``VMS_THREAD`` from the template."""
        rcpu, rmem = self.reserved_capacity(cluster_template)
        share = self.share
        share.max_cpu = reserved_metric(share.total_cpu, rcpu)
        share.max_mem = reserved_metric(share.total_mem, rmem)
        vthread = _to_int(self.template.get("VMS_THREAD"))
        if vthread is not None and vthread >= 0:
            if vthread == 0:
                vthread = 1
                self.template.set("VMS_THREAD", "1")
            share.vms_thread = vthread
            for node in share.numa.values():
                for core in node.cores:
                    core["FREE"] = str(_core_free(core, vthread))

    def post_update_template(self, cluster_template: Template | None) -> None:
        """After ``one.host.update``: IM_MAD/VM_MAD follow the template, capacity too."""
        im_mad = self.template.get("IM_MAD") or ""
        vm_mad = self.template.get("VM_MAD") or ""
        if im_mad:
            self.im_mad = im_mad
        if vm_mad:
            self.vm_mad = vm_mad
        self.template.set("IM_MAD", self.im_mad)
        self.template.set("VM_MAD", self.vm_mad)
        self.update_capacity(cluster_template)

    def update_info(self, tmpl: Template, cluster_template: Template | None) -> None:
        """``Host::update_info``: merge a SYSTEM_HOST report (not for OFFLINE hosts)."""
        if self.state == OFFLINE:
            return
        own = self.template
        for name in ("ERROR", "VM", "VM_POLL"):
            own.erase(name)
        own.merge(tmpl)
        if self.state != DISABLED:
            self.state = MONITORED
        self._update_wilds()
        share = self.share
        total_cpu = _to_int(own.get("TOTALCPU"))
        total_mem = _to_int(own.get("TOTALMEMORY"))
        if total_cpu is None:
            total_cpu = share.total_cpu
        if total_mem is None:
            total_mem = share.total_mem
        if (total_cpu, total_mem) != (share.total_cpu, share.total_mem):
            rcpu, rmem = self.reserved_capacity(cluster_template)
            share.total_cpu, share.total_mem = total_cpu, total_mem
            share.max_cpu = reserved_metric(total_cpu, rcpu)
            share.max_mem = reserved_metric(total_mem, rmem)
        share.set_datastores(own)
        share.set_pci(
            own,
            self.hostcluster_attr("PCI_FILTER", cluster_template),
            self.hostcluster_attr("PCI_SHORT_ADDRESS", cluster_template),
        )
        share.set_numa(own)

    def _update_wilds(self) -> None:
        own = self.template
        own.erase("WILDS")
        own.erase("TOTAL_WILDS")
        wilds = [v for v in own.vectors("VM") if v.get("ID", "").strip() == "-1"]
        own.erase("VM")
        names = []
        for vm in wilds:
            own.add("VM", vm)
            names.append(vm.get("VM_NAME") or vm.get("DEPLOY_ID", ""))
        if names:
            own.add("TOTAL_WILDS", str(len(names)))
            own.add("WILDS", ", ".join(names))
