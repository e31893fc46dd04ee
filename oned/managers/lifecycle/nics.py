"""VM NICs and their leases (mirrors ``VirtualMachine::get_network_leases`` and
``release_network_leases``) on the network family's NIC seam (``oned.managers.ipam.nic``).

Leases are taken at allocation and given back when the VM is DONE, in the same unit as
the VM change; the networks are locked with the VM (``network_ids``) and the in-place
lease changes are rolled back if the unit does not commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import InternalError
from oned.managers.ipam.nic import acquire_nic, network_of, release_nic

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vm import VirtualMachine
    from oned.objects.vnet import LeaseChanges
    from oned.pools.base import Unit
    from oned.template import Template


def network_ids(core: Core, nics: list[dict[str, str]], uid: int) -> set[int]:
    """The networks ``nics`` name (those that do not resolve are skipped)."""
    ids = set()
    for nic in nics:
        try:
            vn = network_of(core, nic, uid)
        except InternalError:
            continue
        if vn is not None:
            ids.add(vn.oid)
    return ids


def secgroup_ids(core: Core, tmpl: Template, uid: int) -> set[int]:
    """The security groups the NICs of ``tmpl`` may join (to lock them at allocate)."""
    from oned.api.secgroup_vm import nic_groups

    ids: set[int] = set()
    for nic in tmpl.vectors("NIC"):
        ids |= nic_groups(nic)
        try:
            vn = network_of(core, nic, uid)
        except InternalError:
            continue
        if vn is not None:
            ids.update(vn.security_groups())
    return ids


async def acquire_all(
    core: Core, unit: Unit, tmpl: Template, vid: int, uid: int, gid: int
) -> list[LeaseChanges]:
    """Take a lease for every NIC, then every NIC_ALIAS of ``tmpl``
    (``VirtualMachineNics::get_network_leases``), and the rules of their security
    groups (the groups record the VM)."""
    from oned.managers.vmm.nic_setup import acquire_aliases, nic_name

    done: list[LeaseChanges] = []
    filled: list[dict[str, str]] = []
    try:
        for nic_id, nic in enumerate(tmpl.vectors("NIC")):
            out, changes = await acquire_nic(core, unit, nic, vid, uid, gid, nic_id)
            done.append(changes)
            out.setdefault("NIC_ID", str(nic_id))
            nic_name(out, f"NIC{nic_id}")
            filled.append(out)
        aliases = await acquire_aliases(core, unit, tmpl, filled, vid, uid, gid, done)
    except Exception:
        for changes in reversed(done):
            changes.rollback()
        raise
    if filled or aliases:
        items, alias_items = iter(filled), iter(aliases)
        tmpl.items = [
            (
                n,
                next(items)
                if n == "NIC" and isinstance(v, dict)
                else next(alias_items)
                if n == "NIC_ALIAS" and isinstance(v, dict)
                else v,
            )
            for n, v in tmpl.items
        ]
    from oned.api.secgroup_vm import nic_groups, stage_vm_rules

    sg_ids: set[int] = set()
    for nic in filled:
        sg_ids |= nic_groups(nic)
    for rule in stage_vm_rules(core, unit, vid, sg_ids):
        tmpl.add("SECURITY_GROUP_RULE", rule)
    return done


async def release_all(core: Core, unit: Unit, vm: VirtualMachine) -> list[LeaseChanges]:
    """Give back the lease of every NIC (and NIC_ALIAS) of ``vm``; its security
    groups forget it (their locks are held by ``transition``)."""
    from oned.api.secgroup_vm import stage_vm_release, vm_groups

    stage_vm_release(core, unit, vm.oid, vm_groups(vm.template))
    out = []
    for name in ("NIC", "NIC_ALIAS"):
        for nic in vm.template.vectors(name):
            out.append(await release_nic(core, unit, nic, vm.oid, vm.uid, vm.gid))
    return out
