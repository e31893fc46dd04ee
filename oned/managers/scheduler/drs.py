"""A cluster optimizer for OPTIMIZE (our ``remotes/scheduler/one_drs/optimize``).

OpenNebula's one_drs solves an ILP with PuLP; this one is a greedy balancer with the
same contract: from the SCHEDULER_DRIVER_ACTION of one cluster (its running VMs, its
hosts and, per VM, the hosts the core matched) it proposes ``migrate`` actions that
lower the most loaded host's allocated CPU share (memory as tie-break), each move
keeping the target within its capacity, until no move improves the balance or every
VM moved once. The plan keeps each VM's system datastore. Stdlib only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from oned.managers.scheduler.rank_model import ids_of, num


@dataclass
class _Host:
    oid: int
    max_cpu: float
    cpu: float
    max_mem: float
    mem: float

    def load(self) -> tuple[float, float]:
        return (
            self.cpu / self.max_cpu if self.max_cpu > 0 else 1.0,
            self.mem / self.max_mem if self.max_mem > 0 else 1.0,
        )


@dataclass
class _Vm:
    oid: int
    hid: int
    ds_id: int
    cpu: float
    mem: float
    allowed: list[int]


def _read(root: ET.Element) -> tuple[dict[int, _Host], list[_Vm]]:
    hosts = {}
    for node in root.findall("HOST_POOL/HOST"):
        host = _Host(
            int(num(node, "ID", -1)),
            num(node, "HOST_SHARE/MAX_CPU"),
            num(node, "HOST_SHARE/CPU_USAGE"),
            num(node, "HOST_SHARE/MAX_MEM"),
            num(node, "HOST_SHARE/MEM_USAGE"),
        )
        hosts[host.oid] = host
    allowed = {
        int(num(r, "ID", -1)): ids_of(r, "HOSTS/ID") for r in root.findall("REQUIREMENTS/VM")
    }
    vms = []
    for node in root.findall("VM_POOL/VM"):
        vid = int(num(node, "ID", -1))
        history = node.findall("HISTORY_RECORDS/HISTORY")
        if vid not in allowed or not history or num(node, "STATE") != 3:
            continue
        vms.append(
            _Vm(
                vid,
                int(num(history[-1], "HID", -1)),
                int(num(history[-1], "DS_ID", -1)),
                num(node, "TEMPLATE/CPU") * 100,
                num(node, "TEMPLATE/MEMORY") * 1024,
                allowed[vid],
            )
        )
    return hosts, vms


def _best_move(hosts: dict[int, _Host], vms: list[_Vm], moved: set[int]) -> tuple[_Vm, int] | None:
    ranked = sorted(hosts.values(), key=lambda h: (h.load(), h.oid), reverse=True)
    top = ranked[0]
    before = top.load()
    for vm in sorted((v for v in vms if v.hid == top.oid), key=lambda v: (v.cpu, v.mem, v.oid)):
        if vm.oid in moved:
            continue
        targets = [hosts[h] for h in vm.allowed if h in hosts and h != top.oid]
        for target in sorted(targets, key=lambda h: (h.load(), h.oid)):
            if target.max_cpu - target.cpu < vm.cpu or target.max_mem - target.mem < vm.mem:
                continue
            after_target = _Host(
                target.oid, target.max_cpu, target.cpu + vm.cpu, target.max_mem, target.mem + vm.mem
            ).load()
            after_top = _Host(
                top.oid, top.max_cpu, top.cpu - vm.cpu, top.max_mem, top.mem - vm.mem
            ).load()
            if max(after_target, after_top) < before:
                return vm, target.oid
    return None


def optimize(document: str, cluster_id: int) -> str:
    """The PLAN for ``cluster_id`` (no ACTION when the cluster is balanced)."""
    root = ET.fromstring(document)  # noqa: S314 - documents come from the core
    hosts, vms = _read(root)
    actions = []
    moved: set[int] = set()
    while hosts and len(moved) < len(vms):
        move = _best_move(hosts, vms, moved)
        if move is None:
            break
        vm, target = move
        source = hosts[vm.hid]
        source.cpu, source.mem = source.cpu - vm.cpu, source.mem - vm.mem
        hosts[target].cpu += vm.cpu
        hosts[target].mem += vm.mem
        vm.hid = target
        moved.add(vm.oid)
        actions.append(
            f"  <ACTION>\n    <VM_ID>{vm.oid}</VM_ID>\n    <HOST_ID>{target}</HOST_ID>\n"
            f"    <DS_ID>{vm.ds_id}</DS_ID>\n    <OPERATION>migrate</OPERATION>\n  </ACTION>\n"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<PLAN>\n  <ID>{cluster_id}</ID>\n'
        + "".join(actions)
        + "</PLAN>\n"
    )
