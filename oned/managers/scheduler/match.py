"""The core's side of scheduling (mirrors ``SchedulerManagerDriver::setup_place_pools``,
``setup_optimize_pools``, ``match`` and ``scheduler_message``).

For every candidate VM (PENDING, or RESCHED while RUNNING/UNKNOWN/POWEROFF) the hosts,
system datastores and networks (for ``NETWORK_MODE=auto`` NICs) the owner may use and
whose requirements hold are collected; the ``SCHEDULER_DRIVER_ACTION`` document then
carries the matched VMs and objects plus these ``REQUIREMENTS``. What cannot match is
reported per VM (``Cannot dispatch VM: ...``), as oned writes it in SCHED_MESSAGE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from oned.auth.authorize import ObjectAuth
from oned.managers.scheduler.expr import (
    DS_PATHS,
    HOST_PATHS,
    VNET_PATHS,
    ExprError,
    XmlObject,
    eval_bool,
    join_requirements,
)
from oned.objects.base import Op
from oned.objects.datastore import SYSTEM_DS
from oned.objects.host import MONITORED
from oned.objects.vm import LcmState, VirtualMachine, VmState

if TYPE_CHECKING:
    from oned.core import Core

_DS_ENABLED = 0


@dataclass
class VmMatch:
    hosts: set[int] = field(default_factory=set)
    datastores: set[int] = field(default_factory=set)
    nics: dict[int, set[int]] = field(default_factory=dict)

    def complete(self) -> bool:
        return bool(self.hosts) and bool(self.datastores) and all(self.nics.values())


@dataclass
class Request:
    """``SchedRequest``: candidates, matches, and the errors to log per VM."""

    vms: list[int] = field(default_factory=list)
    hosts: list[int] = field(default_factory=list)
    datastores: list[int] = field(default_factory=list)
    vnets: list[int] = field(default_factory=list)
    clusters: list[int] = field(default_factory=list)
    match: dict[int, VmMatch] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)
    host_docs: dict[int, str] = field(default_factory=dict)
    callers: dict[int, Any] = field(default_factory=dict)
    evals: dict[tuple[str, str, int], bool] = field(default_factory=dict)
    auths: dict[tuple[int, int], ObjectAuth] = field(default_factory=dict)
    host_matches: dict[tuple[str, int], tuple[set[int], str | None]] = field(default_factory=dict)
    vmgroups: set[int] = field(default_factory=set)
    _objs: dict[tuple[str, int], XmlObject] = field(default_factory=dict)

    def matched(self) -> list[int]:
        return [v for v in self.vms if v in self.match and self.match[v].complete()]


def is_candidate(vm: VirtualMachine) -> bool:
    """``VirtualMachinePool::get_pending``."""
    if vm.state == VmState.PENDING:
        return True
    return vm.resched == 1 and (
        vm.state == VmState.POWEROFF
        or (vm.state == VmState.ACTIVE and vm.lcm_state in (LcmState.RUNNING, LcmState.UNKNOWN))
    )


def pending(core: Core) -> list[int]:
    return sorted(vm.oid for vm in core.vms.objects() if is_candidate(vm))


def host_document(core: Core, hid: int) -> str:
    """The host with its last MONITORING and its cluster's TEMPLATE as CLUSTER_TEMPLATE
    (``merge_cluster_to_host``)."""
    from oned.api.host import with_monitoring

    host = core.hosts.get(hid)
    if host is None:
        return ""
    body = with_monitoring(core, core.hosts.body(hid), hid)
    cluster = core.clusters.get(host.cluster_id)
    if cluster is None:
        return body
    tmpl = cluster.template.to_xml()
    inner = tmpl[len("<TEMPLATE>") : -len("</TEMPLATE>")] if tmpl.startswith("<TEMPLATE>") else ""
    return body[: -len("</HOST>")] + f"<CLUSTER_TEMPLATE>{inner}</CLUSTER_TEMPLATE></HOST>"


TURN_EVERY = 100


async def next_turn(core: Core) -> None:
    """Give the reactor a turn (a long matching round must not hold API calls)."""
    turn: Deferred[None] = Deferred()
    core.eventually(turn.callback, None)
    await turn


async def setup_place(core: Core) -> Request | None:
    req = Request(vms=pending(core))
    if not req.vms:
        return None
    req.hosts = sorted(h.oid for h in core.hosts.objects() if h.state == MONITORED)
    if not req.hosts:
        req.errors = [(v, "Cannot dispatch VM: No hosts enabled to run VMs") for v in req.vms]
        return req
    req.datastores = _system_datastores(core, None)
    if not req.datastores:
        msg = "Cannot dispatch VM: No system datastores found to run VMs"
        req.errors = [(v, msg) for v in req.vms]
        req.hosts = []
        return req
    req.vnets = sorted(v.oid for v in core.vnets.objects())
    await match(core, req, "Cannot dispatch VM: ")
    return req


async def setup_optimize(core: Core, cid: int) -> tuple[Request | None, str]:
    """The VMs running in cluster ``cid`` with its hosts (MONITORED or MONITORING)."""
    vms = []
    for vm in core.vms.objects():
        current = vm.current
        if vm.state == VmState.ACTIVE and current is not None and current.cid == cid:
            vms.append(vm.oid)
    if not vms:
        return None, ""
    req = Request(vms=sorted(vms), clusters=[cid])
    req.hosts = sorted(
        h.oid for h in core.hosts.objects() if h.cluster_id == cid and h.state in (1, MONITORED)
    )
    if not req.hosts:
        return None, "Optimize: No hosts enabled in cluster"
    req.datastores = _system_datastores(core, cid)
    if not req.datastores:
        return None, "Optimize: No system datastores found in cluster"
    req.vnets = sorted(v.oid for v in core.vnets.objects())
    await match(core, req, "Optimize: ")
    return req, ""


def _system_datastores(core: Core, cid: int | None) -> list[int]:
    out = []
    for ds in core.datastores.objects():
        if ds.type != SYSTEM_DS or ds.state != _DS_ENABLED:
            continue
        shared = (ds.template.get("SHARED") or "").upper() == "YES"
        if shared and ds.total_mb == 0 and ds.free_mb == 0:
            continue
        if cid is not None and cid not in ds.clusters:
            continue
        out.append(ds.oid)
    return sorted(out)


def _authorize(core: Core, req: Request, vm: VirtualMachine, auth: Any, obj: Any, op: Op) -> int:
    """1 allowed, 0 denied, 2 the owner is gone (``authorize`` in the driver); each
    object's ObjectAuth is built once per round."""
    if vm.uid == 0 or vm.gid == 0:
        return 1
    key = (id(auth), obj.oid)
    perms: ObjectAuth | None = req.auths.get(key)
    if perms is None:
        perms = req.auths[key] = auth(core, obj)
    caller = req.callers.get(vm.uid)
    if caller is None:
        user = core.users.get(vm.uid)
        if user is None:
            return 2
        caller = req.callers[vm.uid] = core.auth.caller_for(user)
    return 1 if core.acl.authorize(caller, op, perms) else 0


def _holds(core: Core, req: Request, requirements: str, kind: str, oid: int) -> bool:
    """``eval_bool`` of ``requirements`` on an object, once per round (VMs share them)."""
    key = (requirements, kind, oid)
    got = req.evals.get(key)
    if got is None:
        got = req.evals[key] = eval_bool(requirements, _obj(core, req, kind, oid))
    return got


def _obj(core: Core, req: Request, kind: str, oid: int) -> XmlObject:
    key = (kind, oid)
    obj = req._objs.get(key)
    if obj is None:
        if kind == "HOST":
            text = req.host_docs.get(oid) or host_document(core, oid)
            req.host_docs[oid] = text
            obj = XmlObject.parse(text, HOST_PATHS)
        elif kind == "DATASTORE":
            obj = XmlObject.parse(core.datastores.body(oid), DS_PATHS)
        else:
            obj = XmlObject.parse(core.vnets.body(oid), VNET_PATHS)
        req._objs[key] = obj
    return obj


async def match(core: Core, req: Request, base: str) -> None:
    from oned.api.shared import owned_auth, system_auth
    from oned.api.vm import action_op

    host_auth, ds_auth, net_auth = system_auth("HOST"), owned_auth("DATASTORE"), owned_auth("NET")
    ops = {flag: int(action_op(core, "migrate" if flag else "deploy")) for flag in (0, 1)}
    for n, vid in enumerate(req.vms):
        if n and n % TURN_EVERY == 0:
            await next_turn(core)
        vm = core.vms.get(vid)
        if vm is None:
            continue
        if 0 < vm.lock.locked <= ops[1 if vm.resched else 0]:
            continue
        error = _match_hosts(core, req, vm, host_auth)
        if error is None:
            error = _match_datastores(core, req, vm, ds_auth)
        if error is None:
            error = _match_nics(core, req, vm, net_auth)
        if error:
            req.errors.append((vid, base + error))
        elif error is None:
            gid = vmgroup_id(vm)
            if gid >= 0:
                req.vmgroups.add(gid)


def _match_hosts(core: Core, req: Request, vm: VirtualMachine, auth: Any) -> str | None:
    requirements = join_requirements(
        vm.template.get("AUTOMATIC_REQUIREMENTS") or "",
        vm.user_template.get("SCHED_REQUIREMENTS") or "",
    )
    # VMs of one owner with the same requirements match the same hosts
    key = (requirements, -1 if vm.uid == 0 or vm.gid == 0 else vm.uid)
    if not vm.resched and key in req.host_matches:
        hosts, error = req.host_matches[key]
        if hosts:
            req.match.setdefault(vm.oid, VmMatch()).hosts.update(hosts)
        return error
    error = _match_hosts_of(core, req, vm, auth, requirements)
    if not vm.resched:
        found = req.match.get(vm.oid)
        req.host_matches[key] = (set(found.hosts) if found else set(), error)
    return error


def _usable(
    core: Core,
    req: Request,
    vm: VirtualMachine,
    auth: Any,
    objs: Iterable[tuple[int, Any]],
    op: Op,
    kind: str,
    requirements: str,
) -> tuple[list[int], int, str | ExprError | None]:
    """The ids among ``objs`` the VM's owner may use with ``op`` and ``requirements`` hold
    for, how many were authorized, and why the walk stopped early: "" when an
    authorization cannot be decided (oned gives up on the VM), the ``ExprError`` of the
    requirements, or None."""
    found: list[int] = []
    n_auth = 0
    for oid, obj in objs:
        allowed = _authorize(core, req, vm, auth, obj, op)
        if allowed == 0:
            continue
        if allowed == 2:
            return found, n_auth, ""
        n_auth += 1
        if requirements:
            try:
                ok = _holds(core, req, requirements, kind, oid)
            except ExprError as exc:
                return found, n_auth, exc
            if not ok:
                continue
        found.append(oid)
    return found, n_auth, None


def _match_hosts_of(
    core: Core, req: Request, vm: VirtualMachine, auth: Any, requirements: str
) -> str | None:
    current = vm.current
    candidates = (
        (hid, host)
        for hid in req.hosts
        if (host := core.hosts.get(hid)) is not None
        and not (vm.resched and current is not None and current.hid == hid)
    )
    found, n_auth, stop = _usable(core, req, vm, auth, candidates, Op.MANAGE, "HOST", requirements)
    if found:
        req.match.setdefault(vm.oid, VmMatch()).hosts.update(found)
    if isinstance(stop, ExprError):
        return f"Error in SCHED_REQUIREMENTS: '{requirements}', error: {stop}"
    if stop is not None:
        return stop
    if n_auth == 0:
        return "User is not authorized to use any host"
    if not found:
        return "No host meets SCHED_REQUIREMENTS"
    return None


def _match_datastores(core: Core, req: Request, vm: VirtualMachine, auth: Any) -> str | None:
    m = req.match.get(vm.oid)
    if m is None:
        return ""
    if vm.resched:
        if vm.current is not None:
            m.datastores.add(vm.current.ds_id)
        return None
    requirements = join_requirements(
        vm.template.get("AUTOMATIC_DS_REQUIREMENTS") or "",
        vm.user_template.get("SCHED_DS_REQUIREMENTS") or "",
    )
    candidates = (
        (did, ds) for did in req.datastores if (ds := core.datastores.get(did)) is not None
    )
    found, n_auth, stop = _usable(
        core, req, vm, auth, candidates, Op.USE, "DATASTORE", requirements
    )
    m.datastores.update(found)
    if isinstance(stop, ExprError):
        return f"Error in SCHED_DS_REQUIREMENTS: '{requirements}', error: {stop}"
    if stop is not None:
        return stop
    if n_auth == 0:
        return "User is not authorized to use any system datastore"
    if not found:
        return "No system datastore meets SCHED_DS_REQUIREMENTS"
    return None


def vmgroup_id(vm: VirtualMachine) -> int:
    """``vmgroup_id``: the VM group the VM's VMGROUP names (-1 when none)."""
    raw = ((vm.template.get_vector("VMGROUP") or {}).get("VMGROUP_ID") or "").strip()
    return int(raw) if raw.isdigit() else -1


def auto_nics(vm: VirtualMachine) -> dict[int, dict[str, str]]:
    out = {}
    for nic in vm.template.vectors("NIC"):
        if (nic.get("NETWORK_ID") or "").strip() or nic.get("NETWORK"):
            continue  # its network is chosen already
        if (nic.get("NETWORK_MODE") or "").strip().lower() == "auto":
            raw = (nic.get("NIC_ID") or "").strip()
            if raw.isdigit():
                out[int(raw)] = dict(nic)
    return out


def _match_nics(core: Core, req: Request, vm: VirtualMachine, auth: Any) -> str | None:
    nics = auto_nics(vm)
    m = req.match.get(vm.oid)
    if not nics or vm.resched or m is None:
        return None
    automatic = vm.template.get("AUTOMATIC_NIC_REQUIREMENTS") or ""
    for nic_id, nic in sorted(nics.items()):
        m.nics[nic_id] = set()
        requirements = join_requirements(automatic, nic.get("SCHED_REQUIREMENTS") or "")
        candidates = ((nid, net) for nid in req.vnets if (net := core.vnets.get(nid)) is not None)
        found, n_auth, stop = _usable(core, req, vm, auth, candidates, Op.USE, "VNET", requirements)
        m.nics[nic_id].update(found)
        if isinstance(stop, ExprError):
            return (
                f"Error in SCHED_NIC_REQUIREMENTS in NIC {nic_id}: '{requirements}', error: {stop}"
            )
        if stop is not None:
            return stop
        if n_auth == 0:
            return f"User is not authorized to use any virtual network for NIC {nic_id}"
        if not found:
            return f"No virtual network meets SCHED_NIC_REQUIREMENTS for NIC {nic_id}"
    return None
