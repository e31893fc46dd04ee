"""VM group placement constraints of the rank placer (mirrors ``VMGroupXML`` and
``VMGroupRole``: ``set_affinity_requirements``, ``set_antiaffinity_requirements``,
``set_host_requirements``).

Roles and role rules become requirements on the VMs to place: anti-affinity is
``(CURRENT_VMS != id)`` per other VM, host (anti-)affinity ``(ID = h)``/``(ID != h)``;
an affined set already running somewhere is bound to those hosts, otherwise a leader
carries the capacity and requirements of the whole set and the others follow it with
``CURRENT_VMS = leader``. Stdlib only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from oned.managers.scheduler.rank_model import Vm

_ACTIVE = 3


@dataclass
class Role:
    oid: int
    name: str
    policy: str
    vms: list[int]
    host_affined: list[int]
    host_anti_affined: list[int]


@dataclass
class Member:
    """A VM of a group as the VM pool shows it (placed or not)."""

    hid: int
    active: bool


@dataclass
class Group:
    roles: dict[int, Role] = field(default_factory=dict)
    affined: list[set[int]] = field(default_factory=list)
    anti_affined: list[set[int]] = field(default_factory=list)


def _id_list(text: str | None) -> list[int]:
    out = []
    for raw in (text or "").split(","):
        part = raw.strip()
        if part.lstrip("-").isdigit() and int(part) not in out:
            out.append(int(part))
    return sorted(out)


def parse_groups(root: ET.Element) -> list[Group]:
    groups = []
    for node in root.findall("VM_GROUP_POOL/VM_GROUP"):
        group = Group()
        names: dict[str, int] = {}
        for r in node.findall("ROLES/ROLE"):
            raw = (r.findtext("ID") or "").strip()
            if not raw.isdigit():
                continue
            role = Role(
                int(raw),
                (r.findtext("NAME") or "").strip(),
                (r.findtext("POLICY") or "NONE").strip().upper(),
                _id_list(r.findtext("VMS")),
                _id_list(r.findtext("HOST_AFFINED")),
                _id_list(r.findtext("HOST_ANTI_AFFINED")),
            )
            group.roles[role.oid] = role
            names[role.name] = role.oid
        for tag, rules in (("AFFINED", group.affined), ("ANTI_AFFINED", group.anti_affined)):
            for text in (n.text or "" for n in node.findall(f"TEMPLATE/{tag}")):
                ids = {names[n.strip()] for n in text.split(",") if n.strip() in names}
                if ids:
                    rules.append(ids)
        groups.append(group)
    return groups


def members(root: ET.Element) -> dict[int, Member]:
    """Every VM of the VM pool with its current host (``VirtualMachineRolePoolXML``)."""
    out = {}
    for node in root.findall("VM_POOL/VM"):
        raw = (node.findtext("ID") or "").strip()
        if not raw.lstrip("-").isdigit():
            continue
        history = node.findall("HISTORY_RECORDS/HISTORY")
        hid = (history[-1].findtext("HID") or "-1").strip() if history else "-1"
        out[int(raw)] = Member(
            int(hid) if hid.lstrip("-").isdigit() else -1,
            (node.findtext("STATE") or "").strip() == str(_ACTIVE),
        )
    return out


def _vm_reqs(vms: list[int], skip: int, op: str, joiner: str) -> str:
    return joiner.join(f"(CURRENT_VMS {op} {v})" for v in vms if v != skip)


def _host_reqs(hosts: list[int] | set[int], op: str, joiner: str) -> str:
    return f" {joiner} ".join(f"(ID{op}{h})" for h in sorted(hosts))


def _reduce(rules: list[set[int]]) -> list[set[int]]:
    """``VMGroupRule::reduce``: rules sharing a role merge into one."""
    out: list[set[int]] = []
    for rule in rules:
        merged = set(rule)
        keep = []
        for other in out:
            if other & merged:
                merged |= other
            else:
                keep.append(other)
        out = [*keep, merged]
    return out


def apply(groups: list[Group], vms: dict[int, Vm], pool: dict[int, Member]) -> None:
    """``Scheduler::do_vm_groups``: add every group's constraints to the VMs to place."""
    for group in groups:
        for role in group.roles.values():
            if role.policy == "AFFINED" and len(role.vms) > 1:
                _affined_set(role.vms, vms, pool)
        for rule in _reduce(group.affined):
            rule_vms = sorted({v for r in rule if r in group.roles for v in group.roles[r].vms})
            _affined_set(rule_vms, vms, pool)
        for role in group.roles.values():
            if role.policy != "ANTI_AFFINED" or len(role.vms) <= 1:
                continue
            for vid in role.vms:
                if vid in vms:
                    vms[vid].add_requirements(_vm_reqs(role.vms, vid, "!=", " & "))
        for rule in group.anti_affined:
            for i in sorted(rule):
                reqs = " & ".join(
                    r
                    for j in sorted(rule)
                    if j != i and j in group.roles
                    for r in [_vm_reqs(group.roles[j].vms, -1, "!=", " & ")]
                    if r
                )
                for vid in group.roles[i].vms if i in group.roles else []:
                    if vid in vms:
                        vms[vid].add_requirements(reqs)
        for role in group.roles.values():
            areqs = _host_reqs(role.host_affined, "=", "|")
            aareqs = _host_reqs(role.host_anti_affined, "!=", "&")
            for vid in role.vms:
                if vid in vms:
                    vms[vid].add_requirements(areqs)
                    vms[vid].add_requirements(aareqs)


def _affined_set(set_vms: list[int], vms: dict[int, Vm], pool: dict[int, Member]) -> None:
    """``schecule_affined_set``."""
    if len(set_vms) <= 1:
        return
    hosts = {pool[v].hid for v in set_vms if v in pool and pool[v].active and pool[v].hid != -1}
    if hosts:
        reqs = _host_reqs(hosts, "=", "|")
        for vid in set_vms:
            if vid in vms:
                vms[vid].add_requirements(reqs)
        return
    order = list(set_vms)
    lead = next((i for i, v in enumerate(order) if v in vms), None)
    if lead is None:
        return
    leader = vms[order[lead]]
    follow = f"CURRENT_VMS = {leader.oid}"
    for vid in order[lead + 1 :]:
        other = vms.get(vid)
        if other is None:
            continue
        leader.cpu += other.cpu
        leader.mem += other.mem
        leader.disk += other.disk
        other.cpu = other.mem = other.disk = 0
        leader.add_requirements(other.requirements)
        leader.affined.add(vid)
        other.add_requirements(follow)
