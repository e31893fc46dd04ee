"""The rank placer's model (mirrors the ``*XML`` classes and ``rank.conf`` of
``src/schedm_mad/remotes/rank``): its configuration, the hosts, system datastores,
networks and VMs read from the SCHEDULER_DRIVER_ACTION, and the failure texts of
``SchedulerFailure``. Stdlib only (the place script runs it).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from oned.managers.scheduler.expr import XmlObject

HOST_POLICIES = {0: "RUNNING_VMS", 1: "- RUNNING_VMS", 2: "FREE_CPU", 4: "PRIORITY"}
DS_POLICIES = {0: "- FREE_MB", 1: "FREE_MB", 3: "PRIORITY"}
NIC_POLICIES = {0: "USED_LEASES", 1: "- USED_LEASES", 3: "PRIORITY"}


@dataclass
class RankConf:
    """``rank.conf`` (defaults as shipped)."""

    max_host: int = 1
    different_vnets: bool = True
    memory_system_ds_scale: float = 0.0
    host_policy: int = 1
    host_rank: str = ""
    ds_policy: int = 1
    ds_rank: str = ""
    nic_policy: int = 1
    nic_rank: str = ""

    @classmethod
    def load(cls, path: Path | None = None) -> RankConf:
        if path is None:
            loc = os.environ.get("ONE_LOCATION")
            etc = Path(loc) / "etc" if loc else Path("/etc/one")
            path = etc / "schedulers" / "rank.conf"
        conf = cls()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return conf
        text = re.sub(r"#[^\n]*", "", text)
        single = dict(re.findall(r"^\s*([A-Z_]+)\s*=\s*\"?([^\"\[\n]*?)\"?\s*$", text, re.M))
        vectors = {k: v for k, v in re.findall(r"([A-Z_]+)\s*=\s*\[([^\]]*)\]", text)}
        conf.max_host = to_int(single.get("MAX_HOST"), conf.max_host)
        conf.different_vnets = single.get("DIFFERENT_VNETS", "YES").strip().upper() == "YES"
        conf.memory_system_ds_scale = to_float(single.get("MEMORY_SYSTEM_DS_SCALE"), 0.0)
        for key, attr in (("DEFAULT_SCHED", "host"), ("DEFAULT_DS_SCHED", "ds")):
            inner = dict(re.findall(r"([A-Z_]+)\s*=\s*\"?([^\",]*)\"?", vectors.get(key, "")))
            setattr(conf, f"{attr}_policy", to_int(inner.get("POLICY"), 1))
            setattr(conf, f"{attr}_rank", inner.get("RANK", "").strip())
        inner = dict(
            re.findall(r"([A-Z_]+)\s*=\s*\"?([^\",]*)\"?", vectors.get("DEFAULT_NIC_SCHED", ""))
        )
        conf.nic_policy = to_int(inner.get("POLICY"), 1)
        conf.nic_rank = inner.get("RANK", "").strip()
        return conf

    def default_rank(self, kind: str) -> str:
        policy, custom = {
            "host": (self.host_policy, self.host_rank),
            "ds": (self.ds_policy, self.ds_rank),
            "nic": (self.nic_policy, self.nic_rank),
        }[kind]
        table = {"host": HOST_POLICIES, "ds": DS_POLICIES, "nic": NIC_POLICIES}[kind]
        custom_policy = 3 if kind == "host" else 2
        if policy == custom_policy:
            return custom
        return table.get(policy, table[1])


def to_int(raw: str | None, default: int) -> int:
    try:
        return int(str(raw).strip())
    except ValueError:
        return default


def to_float(raw: str | None, default: float) -> float:
    try:
        return float(str(raw).strip())
    except ValueError:
        return default


def num(node: ET.Element | None, path: str, default: float = 0.0) -> float:
    if node is None:
        return default
    text = node.findtext(path)
    try:
        return float(text) if text is not None and text.strip() else default
    except ValueError:
        return default


@dataclass
class Host:
    oid: int
    cid: int
    obj: XmlObject
    max_cpu: float
    cpu_usage: float
    max_mem: float
    mem_usage: float
    ds_free: dict[int, float]
    dispatched: int = 0

    def test_capacity(self, cpu: float, mem: float) -> str:
        if self.max_cpu - self.cpu_usage < cpu:
            return "HOST_CPU"
        if self.max_mem - self.mem_usage < mem:
            return "HOST_MEMORY"
        return ""


@dataclass
class Datastore:
    oid: int
    clusters: set[int]
    shared: bool
    monitored: bool
    free_mb: float
    obj: XmlObject


@dataclass
class Vnet:
    oid: int
    clusters: set[int]
    free_leases: float
    obj: XmlObject


@dataclass
class Vm:
    oid: int
    node: ET.Element
    cpu: float
    mem: float
    disk: float
    priority: float
    resched: bool
    resume: bool
    requirements: str
    rank: str
    ds_rank: str
    hosts: list[int] = field(default_factory=list)
    datastores: list[int] = field(default_factory=list)
    nics: dict[int, list[int]] = field(default_factory=dict)
    nic_ranks: dict[int, str] = field(default_factory=dict)
    image_ds: dict[int, float] = field(default_factory=dict)
    affined: set[int] = field(default_factory=set)
    #: VM group constraints were added: requirements are evaluated again per host
    constrained: bool = False

    def add_requirements(self, reqs: str) -> None:
        """``VirtualMachineXML::add_requirements``."""
        if not reqs:
            return
        self.requirements = f"{self.requirements} & ({reqs})" if self.requirements else reqs
        self.constrained = True


def disk_usage(tmpl: ET.Element | None) -> tuple[float, dict[int, float]]:
    """``init_storage_usage``: MB the VM takes in its system datastore and in each image
    datastore (disks cloned or linked to SELF), snapshots included."""
    system = 0.0
    images: dict[int, float] = {}
    for d in tmpl.findall("DISK") if tmpl is not None else []:
        raw = (d.findtext("SIZE") or "").strip()
        if not raw.lstrip("-").isdigit():
            continue
        size = float(raw) + num(d, "DISK_SNAPSHOT_TOTAL_SIZE")
        if d.findtext("IMAGE_ID") is None and d.findtext("IMAGE") is None:
            system += size
            continue
        ds_raw = (d.findtext("DATASTORE_ID") or "").strip()
        if not ds_raw.isdigit():
            continue
        ds_id = int(ds_raw)
        images.setdefault(ds_id, 0.0)
        clone = (d.findtext("CLONE") or "").strip().upper()
        if clone not in ("YES", "NO"):
            continue
        target = d.findtext("CLONE_TARGET" if clone == "YES" else "LN_TARGET") or ""
        if target.strip().upper() == "SELF":
            images[ds_id] += size
        elif target.strip().upper() == "SYSTEM":
            system += size
    return system, images


_FAILURE_TEXT = {
    "HOST_NULL": "[HOST] No existing hosts: ",
    "HOST_CPU": "[HOST] Not enough CPU on hosts: ",
    "HOST_MEMORY": "[HOST] Not enough MEMORY on hosts: ",
    "HOST_REQUIREMENTS": "[HOST] Requirements not met on hosts: ",
    "HOST_DISPATCH_LIMIT": "[HOST] Dispatch limit reached on hosts: ",
    "HOST_AFFINITY": "[HOST] Cannot fulfill affinity constraints on hosts: ",
    "DATASTORE_NULL": "[DS] No existing datastores: ",
    "DATASTORE_UNAVAILABLE_IN_CLUSTER": "[DS] Unavailable datastores: ",
    "DATASTORE_CAPACITY": "[DS] Not enough capacity on datastores: ",
    "DATASTORE_MONITOR": "[DS] Unmonitored datastores: ",
    "DATASTORE_NONE": "[DS] No datastores matched the VM requirements",
    "NETWORK_NULL": "[VNET] No existing vnets: ",
    "NETWORK_UNAVAILABLE_IN_CLUSTER": "[VNET] Unavailable vnets: ",
    "NETWORK_LEASES": "[VNET] Unavailable leases on vnets: ",
    "NETWORK_ROLLBACK": "[VNET] Cannot satisfy all NETWORK requirements. Only available vnets: ",
}
_FAILURE_ORDER = list(_FAILURE_TEXT)


def log_failures(failures: dict[str, set[int]]) -> str:
    """``SchedulerFailure::log_failures`` (failure types in their enum order)."""
    out = ""
    for kind in sorted(failures, key=_FAILURE_ORDER.index):
        ids = failures[kind]
        if not ids:
            continue
        out += _FAILURE_TEXT[kind]
        if kind != "DATASTORE_NONE":
            out += ",".join(str(i) for i in sorted(ids))
    return out


def ids_of(node: ET.Element | None, path: str) -> list[int]:
    if node is None:
        return []
    out = []
    for n in node.findall(path):
        try:
            out.append(int((n.text or "").strip()))
        except ValueError:
            continue
    return out
