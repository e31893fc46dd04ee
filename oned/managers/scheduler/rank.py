"""The rank placer (mirrors ``src/schedm_mad/remotes/rank``: ``Scheduler::match_schedule``
and ``Scheduler::dispatch`` with the ``RankPolicy`` defaults of ``rank.conf``).

Input: the ``SCHEDULER_DRIVER_ACTION`` document oned sends with PLACE (the core has
already filtered hosts, system datastores and networks by ACL and requirements, in
``REQUIREMENTS``). Output: the ``PLAN`` document and the log lines (``ERROR: <vm>
text``) the driver turns into LOG messages. Stdlib only: ``remotes/scheduler/rank/place``
runs it.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from oned.managers.scheduler.expr import (
    DS_PATHS,
    HOST_PATHS,
    VNET_PATHS,
    ExprError,
    XmlObject,
    eval_bool,
    eval_rank,
    join_requirements,
)

HOST_POLICIES = {0: "RUNNING_VMS", 1: "- RUNNING_VMS", 2: "FREE_CPU", 4: "PRIORITY"}
DS_POLICIES = {0: "- FREE_MB", 1: "FREE_MB", 3: "PRIORITY"}
NIC_POLICIES = {0: "USED_LEASES", 1: "- USED_LEASES", 3: "PRIORITY"}
_STOP, _UNDEPLOY, _UNDEPLOY_HARD = 10, 33, 34  # VMActions of a resumed VM


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
        conf.max_host = _int(single.get("MAX_HOST"), conf.max_host)
        conf.different_vnets = single.get("DIFFERENT_VNETS", "YES").strip().upper() == "YES"
        conf.memory_system_ds_scale = _float(single.get("MEMORY_SYSTEM_DS_SCALE"), 0.0)
        for key, attr in (("DEFAULT_SCHED", "host"), ("DEFAULT_DS_SCHED", "ds")):
            inner = dict(re.findall(r"([A-Z_]+)\s*=\s*\"?([^\",]*)\"?", vectors.get(key, "")))
            setattr(conf, f"{attr}_policy", _int(inner.get("POLICY"), 1))
            setattr(conf, f"{attr}_rank", inner.get("RANK", "").strip())
        inner = dict(
            re.findall(r"([A-Z_]+)\s*=\s*\"?([^\",]*)\"?", vectors.get("DEFAULT_NIC_SCHED", ""))
        )
        conf.nic_policy = _int(inner.get("POLICY"), 1)
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


def _int(raw: str | None, default: int) -> int:
    try:
        return int(str(raw).strip())
    except ValueError:
        return default


def _float(raw: str | None, default: float) -> float:
    try:
        return float(str(raw).strip())
    except ValueError:
        return default


def _num(node: ET.Element | None, path: str, default: float = 0.0) -> float:
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


_FAILURE_TEXT = {
    "HOST_NULL": "[HOST] No existing hosts: ",
    "HOST_CPU": "[HOST] Not enough CPU on hosts: ",
    "HOST_MEMORY": "[HOST] Not enough MEMORY on hosts: ",
    "HOST_REQUIREMENTS": "[HOST] Requirements not met on hosts: ",
    "HOST_DISPATCH_LIMIT": "[HOST] Dispatch limit reached on hosts: ",
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


def _ids(node: ET.Element | None, path: str) -> list[int]:
    if node is None:
        return []
    out = []
    for n in node.findall(path):
        try:
            out.append(int((n.text or "").strip()))
        except ValueError:
            continue
    return out


class RankPlacer:
    """One PLACE round: ``place()`` returns (plan XML, stderr log lines)."""

    def __init__(self, document: str, conf: RankConf | None = None) -> None:
        self.conf = conf or RankConf()
        self.root = ET.fromstring(document)  # noqa: S314 - documents come from the core
        self.logs: list[str] = []
        self.hosts: dict[int, Host] = {}
        self.dss: dict[int, Datastore] = {}
        self.vnets: dict[int, Vnet] = {}
        self.vms: list[Vm] = []
        self._ranks: dict[tuple[int, str], float] = {}
        self._load()

    def error(self, vid: int, text: str) -> None:
        self.logs.append(f"ERROR: {vid} {text}")

    # -- input ------------------------------------------------------------------------

    def _load(self) -> None:
        for node in self.root.findall("HOST_POOL/HOST"):
            obj = XmlObject(node, HOST_PATHS, current_vms=True)
            ds_free = {}
            for ds in node.findall("HOST_SHARE/DATASTORES/DS"):
                ds_free[int(_num(ds, "ID", -1))] = _num(ds, "FREE_MB")
            host = Host(
                int(_num(node, "ID", -1)),
                int(_num(node, "CLUSTER_ID", -1)),
                obj,
                _num(node, "HOST_SHARE/MAX_CPU"),
                _num(node, "HOST_SHARE/CPU_USAGE"),
                _num(node, "HOST_SHARE/MAX_MEM"),
                _num(node, "HOST_SHARE/MEM_USAGE"),
                ds_free,
            )
            self.hosts[host.oid] = host
        for node in self.root.findall("DATASTORE_POOL/DATASTORE"):
            if int(_num(node, "TYPE", -1)) != 1:
                continue
            shared = (node.findtext("TEMPLATE/SHARED") or "").strip().upper() == "YES"
            free, total = _num(node, "FREE_MB"), _num(node, "TOTAL_MB")
            sds = Datastore(
                int(_num(node, "ID", -1)),
                set(_ids(node, "CLUSTERS/ID")),
                shared,
                not (free == 0 and total == 0),
                free,
                XmlObject(node, DS_PATHS),
            )
            self.dss[sds.oid] = sds
        for node in self.root.findall("VNET_POOL/VNET"):
            size = sum(_num(ar, "SIZE") for ar in node.findall("AR_POOL/AR"))
            used = _num(node, "USED_LEASES")
            vn = Vnet(
                int(_num(node, "ID", -1)),
                set(_ids(node, "CLUSTERS/ID")),
                size - used,
                XmlObject(node, VNET_PATHS),
            )
            self.vnets[vn.oid] = vn
        reqs = {int(_num(r, "ID", -1)): r for r in self.root.findall("REQUIREMENTS/VM")}
        for node in self.root.findall("VM_POOL/VM"):
            vid = int(_num(node, "ID", -1))
            req = reqs.get(vid)
            if req is None:
                continue
            self.vms.append(self._vm(vid, node, req))

    def _vm(self, vid: int, node: ET.Element, req: ET.Element) -> Vm:
        tmpl, user = node.find("TEMPLATE"), node.find("USER_TEMPLATE")
        cpu, mem = _num(tmpl, "CPU"), _num(tmpl, "MEMORY")
        disk = 0.0
        for d in tmpl.findall("DISK") if tmpl is not None else []:
            volatile = d.findtext("IMAGE_ID") is None
            to_system = (d.findtext("CLONE_TARGET") or "").upper() == "SYSTEM" and (
                d.findtext("CLONE") or ""
            ).upper() == "YES"
            if volatile or to_system:
                disk += _num(d, "SIZE")
        if mem > 0 and self.conf.memory_system_ds_scale >= 0:
            disk += mem * self.conf.memory_system_ds_scale
        history = node.findall("HISTORY_RECORDS/HISTORY")
        action = int(_num(history[-1], "ACTION", -1)) if history else -1
        rank = (user.findtext("SCHED_RANK") if user is not None else None) or (
            user.findtext("RANK") if user is not None else None
        )
        requirements = join_requirements(
            (tmpl.findtext("AUTOMATIC_REQUIREMENTS") or "") if tmpl is not None else "",
            (user.findtext("SCHED_REQUIREMENTS") or "") if user is not None else "",
        )
        vm = Vm(
            vid,
            node,
            0 if cpu == 0 or mem == 0 else cpu * 100,
            0 if cpu == 0 or mem == 0 else mem * 1024,
            0 if cpu == 0 or mem == 0 else disk,
            _num(user, "USER_PRIORITY"),
            int(_num(node, "RESCHED")) == 1,
            action in (_STOP, _UNDEPLOY, _UNDEPLOY_HARD),
            requirements,
            (rank or "").strip() or self.conf.default_rank("host"),
            ((user.findtext("SCHED_DS_RANK") if user is not None else "") or "").strip()
            or self.conf.default_rank("ds"),
        )
        vm.hosts = _ids(req, "HOSTS/ID")
        vm.datastores = _ids(req, "DATASTORES/ID")
        nic_nodes = {int(_num(n, "NIC_ID", -1)): n for n in tmpl.findall("NIC")} if tmpl else {}
        for nic in req.findall("NIC"):
            nic_id = int(_num(nic, "ID", -1))
            vm.nics[nic_id] = _ids(nic, "VNETS/ID")
            own = nic_nodes.get(nic_id)
            vm.nic_ranks[nic_id] = (
                (own.findtext("SCHED_RANK") or "").strip() if own is not None else ""
            ) or self.conf.default_rank("nic")
        return vm

    # -- ranking ----------------------------------------------------------------------

    def _ranked(self, ids: list[int], objs: dict[int, XmlObject], expr: str) -> list[int]:
        """``ids`` by rank, highest first (ties keep their order); each (object, rank)
        is evaluated once per round."""

        def rank(i: int) -> float:
            key = (id(objs[i]), expr)
            got = self._ranks.get(key)
            if got is None:
                try:
                    got = eval_rank(expr, objs[i])
                except ExprError:
                    got = 0.0
                self._ranks[key] = got
            return got

        return sorted(ids, key=lambda i: -int(rank(i)))

    # -- match and dispatch -----------------------------------------------------------

    def place(self) -> tuple[str, list[str]]:
        actions: list[str] = []
        if not self.hosts or not self.dss:
            return self._plan(actions), self.logs
        order = sorted(self.vms, key=lambda v: -v.priority)
        for vm in order:
            if not self._match(vm):
                continue
            action = self._dispatch(vm)
            if action:
                actions.append(action)
        return self._plan(actions), self.logs

    def _match(self, vm: Vm) -> bool:
        failures: dict[str, set[int]] = {}
        fits = []
        for hid in vm.hosts:
            host = self.hosts.get(hid)
            if host is None:
                continue
            kind = host.test_capacity(vm.cpu, vm.mem)
            if kind:
                failures.setdefault(kind, set()).add(hid)
                continue
            fits.append(hid)
        if not fits:
            self.error(vm.oid, log_failures(failures))
            return False
        objs = {h: self.hosts[h].obj for h in fits}
        vm.hosts = self._ranked(fits, objs, vm.rank)
        if vm.resched:
            return True
        ds_ok = []
        failures = {}
        for did in vm.datastores:
            ds = self.dss.get(did)
            if ds is None:
                continue
            if ds.shared and not vm.resume:
                if not ds.monitored:
                    failures.setdefault("DATASTORE_MONITOR", set()).add(did)
                    continue
                if ds.free_mb < vm.disk:
                    failures.setdefault("DATASTORE_CAPACITY", set()).add(did)
                    continue
            ds_ok.append(did)
        if not ds_ok:
            self.error(vm.oid, log_failures(failures))
            return False
        vm.datastores = self._ranked(ds_ok, {d: self.dss[d].obj for d in ds_ok}, vm.ds_rank)
        for nic_id, vnet_ids in vm.nics.items():
            ok = []
            failures = {}
            for nid in vnet_ids:
                vn = self.vnets.get(nid)
                if vn is None:
                    failures.setdefault("NETWORK_NULL", set()).add(nid)
                elif vn.free_leases <= 0:
                    failures.setdefault("NETWORK_LEASES", set()).add(nid)
                else:
                    ok.append(nid)
            if not ok:
                self.error(vm.oid, log_failures(failures))
                return False
            objs = {n: self.vnets[n].obj for n in ok}
            vm.nics[nic_id] = self._ranked(ok, objs, vm.nic_ranks[nic_id])
        return True

    def _dispatch(self, vm: Vm) -> str:
        failures: dict[str, set[int]] = {}
        for hid in vm.hosts:
            host = self.hosts[hid]
            if "CURRENT_VMS" in vm.requirements:
                try:
                    ok = eval_bool(vm.requirements, host.obj)
                except ExprError:
                    ok = False
                if not ok:
                    failures.setdefault("HOST_REQUIREMENTS", set()).add(hid)
                    continue
            kind = host.test_capacity(vm.cpu, vm.mem)
            if kind:
                failures.setdefault(kind, set()).add(hid)
                continue
            if self.conf.max_host > 0 and host.dispatched >= self.conf.max_host:
                failures.setdefault("HOST_DISPATCH_LIMIT", set()).add(hid)
                continue
            chosen = self._pick_ds(vm, host, failures)
            if chosen is None:
                failures.setdefault("DATASTORE_NONE", set()).add(-1)
                continue
            nics = self._pick_nics(vm, host, failures)
            if nics is None:
                continue
            if chosen.shared:
                if not vm.resched and not vm.resume:
                    chosen.free_mb -= vm.disk
            else:
                host.ds_free[chosen.oid] = host.ds_free.get(chosen.oid, 0) - vm.disk
            host.cpu_usage += vm.cpu
            host.mem_usage += vm.mem
            host.dispatched += 1
            return self._action(vm, hid, chosen.oid, nics)
        self.error(vm.oid, "Cannot dispatch VM to any Host. Check VM log for detailed reasons.")
        if failures:
            self.error(vm.oid, log_failures(failures))
        return ""

    def _pick_ds(self, vm: Vm, host: Host, failures: dict[str, set[int]]) -> Datastore | None:
        if vm.resched:
            did = vm.datastores[0] if vm.datastores else -1
            return self.dss.get(did) or Datastore(did, set(), True, True, 0, host.obj)
        for did in vm.datastores:
            ds = self.dss.get(did)
            if ds is None:
                failures.setdefault("DATASTORE_NULL", set()).add(did)
                continue
            if host.cid not in ds.clusters:
                failures.setdefault("DATASTORE_UNAVAILABLE_IN_CLUSTER", set()).add(did)
                continue
            if ds.shared:
                fits = ds.monitored and (vm.resched or vm.resume or ds.free_mb >= vm.disk)
            else:
                fits = host.ds_free.get(did, 0) >= vm.disk
            if not fits:
                failures.setdefault("DATASTORE_CAPACITY", set()).add(did)
                continue
            return ds
        return None

    def _pick_nics(
        self, vm: Vm, host: Host, failures: dict[str, set[int]]
    ) -> list[tuple[int, int]] | None:
        if vm.resched:
            return []
        picked: list[tuple[int, int]] = []
        used: dict[int, int] = {}
        for nic_id in sorted(vm.nics):
            chosen = -1
            for nid in vm.nics[nic_id]:
                if self.conf.different_vnets and nid in used:
                    continue
                vn = self.vnets[nid]
                if host.cid not in vn.clusters:
                    failures.setdefault("NETWORK_UNAVAILABLE_IN_CLUSTER", set()).add(nid)
                    continue
                if vn.free_leases <= 0:
                    failures.setdefault("NETWORK_LEASES", set()).add(nid)
                    continue
                vn.free_leases -= 1
                chosen = nid
                break
            if chosen == -1:
                break
            picked.append((nic_id, chosen))
            used[chosen] = used.get(chosen, 0) + 1
        if len(picked) < len(vm.nics):
            for nid, count in used.items():
                self.vnets[nid].free_leases += count
                failures.setdefault("NETWORK_ROLLBACK", set()).add(nid)
            return None
        return picked

    @staticmethod
    def _action(vm: Vm, hid: int, did: int, nics: list[tuple[int, int]]) -> str:
        op = "migrate" if vm.resched else "deploy"
        out = (
            f"  <ACTION>\n    <VM_ID>{vm.oid}</VM_ID>\n    <HOST_ID>{hid}</HOST_ID>\n"
            f"    <DS_ID>{did}</DS_ID>\n    <OPERATION>{op}</OPERATION>\n"
        )
        for nic_id, nid in nics:
            out += (
                f"    <NIC>\n      <NIC_ID>{nic_id}</NIC_ID>\n"
                f"      <NETWORK_ID>{nid}</NETWORK_ID>\n    </NIC>\n"
            )
        return out + "  </ACTION>\n"

    @staticmethod
    def _plan(actions: list[str]) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<PLAN>\n  <ID>-1</ID>\n'
            + "".join(actions)
            + "</PLAN>\n"
        )


def place(document: str, conf: RankConf | None = None) -> tuple[str, list[str]]:
    """Plan the placement of the VMs in ``document`` (a SCHEDULER_DRIVER_ACTION)."""
    return RankPlacer(document, conf).place()
