"""The rank placer (mirrors ``src/schedm_mad/remotes/rank``: ``Scheduler::match_schedule``
and ``Scheduler::dispatch`` with the ``RankPolicy`` defaults of ``rank.conf``).

Input: the ``SCHEDULER_DRIVER_ACTION`` document oned sends with PLACE (the core has
already filtered hosts, system datastores and networks by ACL and requirements, in
``REQUIREMENTS``). Output: the ``PLAN`` document and the log lines (``ERROR: <vm>
text``) the driver turns into LOG messages. Stdlib only: ``remotes/scheduler/rank/place``
runs it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from oned.managers.scheduler import rank_groups
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
from oned.managers.scheduler.rank_model import (
    Datastore,
    Host,
    RankConf,
    Vm,
    Vnet,
    disk_usage,
    ids_of,
    log_failures,
    num,
)

__all__ = ["RankConf", "RankPlacer", "log_failures", "place"]

_STOP, _UNDEPLOY, _UNDEPLOY_HARD = 10, 33, 34  # VMActions of a resumed VM


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
        self.image_free: dict[int, float] = {}
        self._load()

    def error(self, vid: int, text: str) -> None:
        self.logs.append(f"ERROR: {vid} {text}")

    # -- input ------------------------------------------------------------------------

    def _load(self) -> None:
        for node in self.root.findall("HOST_POOL/HOST"):
            obj = XmlObject(node, HOST_PATHS, current_vms=True)
            ds_free = {}
            for ds in node.findall("HOST_SHARE/DATASTORES/DS"):
                ds_free[int(num(ds, "ID", -1))] = num(ds, "FREE_MB")
            host = Host(
                int(num(node, "ID", -1)),
                int(num(node, "CLUSTER_ID", -1)),
                obj,
                num(node, "HOST_SHARE/MAX_CPU"),
                num(node, "HOST_SHARE/CPU_USAGE"),
                num(node, "HOST_SHARE/MAX_MEM"),
                num(node, "HOST_SHARE/MEM_USAGE"),
                ds_free,
            )
            self.hosts[host.oid] = host
        for node in self.root.findall("DATASTORE_POOL/DATASTORE"):
            if int(num(node, "TYPE", -1)) == 0:
                self.image_free[int(num(node, "ID", -1))] = num(node, "FREE_MB")
            if int(num(node, "TYPE", -1)) != 1:
                continue
            shared = (node.findtext("TEMPLATE/SHARED") or "").strip().upper() == "YES"
            free, total = num(node, "FREE_MB"), num(node, "TOTAL_MB")
            sds = Datastore(
                int(num(node, "ID", -1)),
                set(ids_of(node, "CLUSTERS/ID")),
                shared,
                not (free == 0 and total == 0),
                free,
                XmlObject(node, DS_PATHS),
            )
            self.dss[sds.oid] = sds
        for node in self.root.findall("VNET_POOL/VNET"):
            size = sum(num(ar, "SIZE") for ar in node.findall("AR_POOL/AR"))
            used = num(node, "USED_LEASES")
            vn = Vnet(
                int(num(node, "ID", -1)),
                set(ids_of(node, "CLUSTERS/ID")),
                size - used,
                XmlObject(node, VNET_PATHS),
            )
            self.vnets[vn.oid] = vn
        reqs = {int(num(r, "ID", -1)): r for r in self.root.findall("REQUIREMENTS/VM")}
        for node in self.root.findall("VM_POOL/VM"):
            vid = int(num(node, "ID", -1))
            req = reqs.get(vid)
            if req is None:
                continue
            self.vms.append(self._vm(vid, node, req))
        groups = rank_groups.parse_groups(self.root)
        if groups:
            rank_groups.apply(groups, {v.oid: v for v in self.vms}, rank_groups.members(self.root))

    def _vm(self, vid: int, node: ET.Element, req: ET.Element) -> Vm:
        tmpl, user = node.find("TEMPLATE"), node.find("USER_TEMPLATE")
        cpu, mem = num(tmpl, "CPU"), num(tmpl, "MEMORY")
        disk, image_ds = disk_usage(tmpl)
        if mem > 0 and self.conf.memory_system_ds_scale >= 0:
            disk += mem * self.conf.memory_system_ds_scale
        history = node.findall("HISTORY_RECORDS/HISTORY")
        action = int(num(history[-1], "ACTION", -1)) if history else -1
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
            num(user, "USER_PRIORITY"),
            int(num(node, "RESCHED")) == 1,
            action in (_STOP, _UNDEPLOY, _UNDEPLOY_HARD),
            requirements,
            (rank or "").strip() or self.conf.default_rank("host"),
            ((user.findtext("SCHED_DS_RANK") if user is not None else "") or "").strip()
            or self.conf.default_rank("ds"),
        )
        vm.image_ds = image_ds
        vm.hosts = ids_of(req, "HOSTS/ID")
        vm.datastores = ids_of(req, "DATASTORES/ID")
        nic_nodes = {int(num(n, "NIC_ID", -1)): n for n in tmpl.findall("NIC")} if tmpl else {}
        for nic in req.findall("NIC"):
            nic_id = int(num(nic, "ID", -1))
            vm.nics[nic_id] = ids_of(nic, "VNETS/ID")
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
        # match_schedule: every VM in pool order against the capacity sent, then
        # dispatch: by USER_PRIORITY (ties in pool order) against what is left
        matched = [vm for vm in self.vms if self._match(vm)]
        for vm in sorted(matched, key=lambda v: -v.priority):
            action = self._dispatch(vm)
            if action:
                actions.append(action)
        return self._plan(actions), self.logs

    @staticmethod
    def _holds(vm: Vm, host: Host) -> bool:
        try:
            return eval_bool(vm.requirements, host.obj)
        except ExprError:
            return False

    def _images_fit(self, vm: Vm) -> str:
        """``test_image_datastore_capacity``: "" or the error."""
        for ds_id, size in vm.image_ds.items():
            if size == 0:
                continue
            free = self.image_free.get(ds_id)
            if free is None or free < size:
                return f"Image Datastore {ds_id} does not have enough capacity"
        return ""

    def _match(self, vm: Vm) -> bool:
        if not vm.resched and not vm.resume:
            error = self._images_fit(vm)
            if error:
                self.error(vm.oid, f"Cannot schedule VM. {error}")
                return False
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
            if vm.constrained and not self._holds(vm, host):
                failures.setdefault("HOST_AFFINITY", set()).add(hid)
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
        if vm.hosts and not vm.resched and not vm.resume:
            error = self._images_fit(vm)
            if error:
                self.error(vm.oid, f"Cannot dispatch VM. {error}")
                return ""
        for hid in vm.hosts:
            host = self.hosts[hid]
            if "CURRENT_VMS" in vm.requirements:
                if not self._holds(vm, host):
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
            if not vm.resched:
                for ds_id, size in vm.image_ds.items():
                    if ds_id in self.image_free:
                        self.image_free[ds_id] -= size
            host.cpu_usage += vm.cpu
            host.mem_usage += vm.mem
            host.dispatched += 1
            host.obj.dispatched.add(vm.oid)
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
