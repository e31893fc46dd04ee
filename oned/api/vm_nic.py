"""``one.vm.attachnic/detachnic/updatenic/attachsg/detachsg`` (mirrors
``VirtualMachineAPI::nic_attach``, ``nic_detach``, ``nic_update``, ``sg_attach`` and
``sg_detach``): authorization, restricted attributes, then the DispatchManager, whose
refusals are ACTION errors with oned's texts.
"""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.secgroup_vm import nic_groups
from oned.api.shared import ObjectAuth
from oned.api.vm import VM, action_op, dispatcher, requester
from oned.api.vnet import VNET
from oned.core import Core
from oned.errors import ActionError, AuthorizationError, InternalError, no_exists
from oned.managers.ipam.nic import network_of
from oned.managers.vmm.nic_setup import find_nic
from oned.objects.base import Op
from oned.objects.vm import VirtualMachine
from oned.template import Template
from oned.template_merge import parse_restricted, restricted_in

_VROUTER = "Action is not supported for virtual router VMs"


def _vm(core: Core, oid: int) -> VirtualMachine:
    vm = core.vms.get(oid)
    if vm is None:
        raise no_exists("virtual machine", oid)
    return vm


def _not_vrouter(vm: VirtualMachine) -> None:
    if vm.template.get("VROUTER_ID") is not None:
        raise ActionError(_VROUTER)


def nic_requests(core: Core, nic: dict[str, str], uid: int) -> list[tuple[Op, ObjectAuth]]:
    """``VirtualMachineNic::authorize``: USE on the network and on every security
    group of the NIC and of its network (none for NETWORK_MODE=auto)."""
    from oned.api.secgroup import SECGROUP

    if nic.get("NETWORK_MODE", "").upper() == "AUTO":
        return []
    out: list[tuple[Op, ObjectAuth]] = []
    groups = nic_groups(nic)
    if nic.get("NETWORK_MODE", "").upper() != "DUMMY":
        try:
            vn = network_of(core, nic, uid)
        except InternalError:
            vn = None
        if vn is not None:
            out.append((Op.USE, VNET.auth(core, vn)))
            groups.update(vn.security_groups())
    for sg_id in sorted(groups):
        group = core.secgroups.get(sg_id)
        if group is not None:
            out.append((Op.USE, SECGROUP.auth(core, group)))
    return out


def _template_requests(core: Core, tmpl: Template, uid: int) -> list[tuple[Op, ObjectAuth]]:
    out: list[tuple[Op, ObjectAuth]] = []
    for name in ("NIC", "NIC_ALIAS"):
        for nic in tmpl.vectors(name):
            out += nic_requests(core, nic, uid)
    return out


def _restricted(core: Core, call: Call, tmpl: Template) -> None:
    if call.is_admin:
        return
    found = restricted_in(tmpl, parse_restricted(core.attr_list("VM_RESTRICTED_ATTR")))
    if found is not None:
        raise AuthorizationError(f"NIC includes a restricted attribute {found}")


@rpc("one.vm.attachnic", "is")
async def attachnic(core: Core, call: Call, oid: int, text: str) -> int:
    """Attaches a new network interface to the virtual machine."""
    _not_vrouter(_vm(core, oid))
    await attach_nic(core, call, oid, shared.parse_template(text))
    return oid


async def attach_nic(core: Core, call: Call, oid: int, tmpl: Template) -> None:
    """``VirtualMachineAPI::nic_attach`` on a parsed template, without the virtual router
    check: what ``one.vrouter.attachnic`` runs on each of its VMs."""
    vm = _vm(core, oid)
    if tmpl.get_vector("PCI") is not None and tmpl.get_vector("NIC") is None:
        pci = tmpl.get_vector("PCI") or {}
        if pci.get("TYPE") != "NIC":
            raise ActionError("PCI device is not of type NIC")
    requests = [(action_op(core, "nic-attach"), VM.auth(core, vm))]
    requests += _template_requests(core, tmpl, call.uid)
    core.acl.check_all(call.caller, requests)
    _restricted(core, call, tmpl)
    await dispatcher(core).attach_nic(oid, tmpl, requester(call))


@rpc("one.vm.detachnic", "ii")
async def detachnic(core: Core, call: Call, oid: int, nic_id: int) -> int:
    """Detaches a network interface from the virtual machine."""
    _not_vrouter(_vm(core, oid))
    await detach_nic(core, call, oid, nic_id)
    return oid


async def detach_nic(core: Core, call: Call, oid: int, nic_id: int) -> None:
    """``VirtualMachineAPI::nic_detach_helper``: no virtual router check (the path of
    ``one.vrouter.detachnic`` for each of its VMs)."""
    shared.get_authorized(core, call, VM, oid, action_op(core, "nic-detach"))
    await dispatcher(core).detach_nic(oid, nic_id, requester(call))


@rpc("one.vm.updatenic", "iisi", required=3)
async def updatenic(core: Core, call: Call, oid: int, nic_id: int, text: str, mode: int = 0) -> int:
    """Updates the attributes of a network interface of the virtual machine."""
    vm = _vm(core, oid)
    _not_vrouter(vm)
    found = find_nic(vm.template, nic_id)
    if found is None:
        raise ActionError(f"VM {oid}: NIC {nic_id} does not exists")
    if found[0] == "NIC_ALIAS":
        raise ActionError("Action not supported for NIC_ALIAS")
    tmpl = shared.parse_template(text)
    requests = [(action_op(core, "nic-update"), VM.auth(core, vm))]
    requests += _template_requests(core, tmpl, call.uid)
    core.acl.check_all(call.caller, requests)
    _restricted(core, call, tmpl)
    await dispatcher(core).update_nic(oid, nic_id, tmpl, mode != 0, requester(call))
    return oid


@rpc("one.vm.attachsg", "iii")
async def attachsg(core: Core, call: Call, oid: int, nic_id: int, sg_id: int) -> int:
    """Attaches a security group to a network interface of the virtual machine."""
    vm = _vm(core, oid)
    found = find_nic(vm.template, nic_id)
    if found is None:
        raise InternalError(f"VM {oid} doesn't have NIC id {nic_id}")
    nic = dict(found[1])
    nic["SECURITY_GROUPS"] = ",".join(str(g) for g in sorted(nic_groups(nic) | {sg_id}))
    requests = [(action_op(core, "sg-attach"), VM.auth(core, vm))]
    requests += nic_requests(core, nic, call.uid)
    core.acl.check_all(call.caller, requests)
    await dispatcher(core).attach_sg(oid, nic_id, sg_id, requester(call))
    return oid


@rpc("one.vm.detachsg", "iii")
async def detachsg(core: Core, call: Call, oid: int, nic_id: int, sg_id: int) -> int:
    """Detaches a security group from a network interface of the virtual machine."""
    shared.get_authorized(core, call, VM, oid, action_op(core, "sg-detach"))
    await dispatcher(core).detach_sg(oid, nic_id, sg_id, requester(call))
    return oid
