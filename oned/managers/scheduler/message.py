"""The SCHEDULER_DRIVER_ACTION document (mirrors
``SchedulerManagerDriver::scheduler_message`` and ``SchedMatch::to_xml``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.managers.scheduler.match import Request, host_document

if TYPE_CHECKING:
    from oned.core import Core


def document(core: Core, req: Request) -> str:
    """``scheduler_message``: the SCHEDULER_DRIVER_ACTION sent with PLACE/OPTIMIZE."""
    vms = req.matched()
    hosts = sorted({h for v in vms for h in req.match[v].hosts})
    nets = sorted({n for v in vms for ids in req.match[v].nics.values() for n in ids})
    groups = [g for g in sorted(req.vmgroups) if core.vmgroups.get(g) is not None]
    members: set[int] = set(vms)
    for gid in groups:  # every VM of the groups involved (their placement constrains)
        group = core.vmgroups.get(gid)
        for role in group.roles if group is not None else []:
            members.update(group.vms_of(role) if group is not None else [])
    parts = ["<SCHEDULER_DRIVER_ACTION><VM_POOL>"]
    parts += [core.vms.body(v) for v in sorted(members) if core.vms.get(v) is not None]
    parts.append("</VM_POOL><HOST_POOL>")
    for hid in hosts:
        parts.append(req.host_docs.get(hid) or host_document(core, hid))
    parts.append("</HOST_POOL><DATASTORE_POOL>")
    parts += [core.datastores.body(d.oid) for d in sorted(core.datastores.objects(), key=_oid)]
    parts.append("</DATASTORE_POOL><VNET_POOL>")
    parts += [core.vnets.body(n) for n in nets if core.vnets.get(n) is not None]
    if groups:
        parts.append("</VNET_POOL><VM_GROUP_POOL>")
        parts += [core.vmgroups.body(g) for g in groups]
        parts.append("</VM_GROUP_POOL><CLUSTER_POOL>")
    else:
        parts.append("</VNET_POOL><VM_GROUP_POOL/><CLUSTER_POOL>")
    parts += [core.clusters.body(c) for c in req.clusters if core.clusters.get(c) is not None]
    parts.append("</CLUSTER_POOL><REQUIREMENTS>")
    for vid in sorted(req.match):
        m = req.match[vid]
        parts.append(f"<VM><ID>{vid}</ID><HOSTS>")
        parts += [f"<ID>{h}</ID>" for h in sorted(m.hosts)]
        parts.append("</HOSTS><DATASTORES>")
        parts += [f"<ID>{d}</ID>" for d in sorted(m.datastores)]
        parts.append("</DATASTORES>")
        for nic_id in sorted(m.nics):
            parts.append(f"<NIC><ID>{nic_id}</ID><VNETS>")
            parts += [f"<ID>{n}</ID>" for n in sorted(m.nics[nic_id])]
            parts.append("</VNETS></NIC>")
        parts.append("</VM>")
    parts.append("</REQUIREMENTS></SCHEDULER_DRIVER_ACTION>")
    return "".join(parts)


def _oid(obj: Any) -> int:
    return int(obj.oid)
