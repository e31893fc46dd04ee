"""A VM's VM group role (mirrors ``VMGroupPool::vmgroup_attribute``, ``del_vm`` and
``get_from_attribute``): joining at allocation or ``vmgroupadd``, leaving when the VM is
done or ``vmgroupdel``. Each change is staged in the caller's unit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.objects.vmgroup import VMGroup, VMGroupError

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vm import VirtualMachine
    from oned.pools.base import Unit


def group_of(core: Core, vector: dict[str, str], uid: int) -> VMGroup | None:
    """``VMGroupPool::get_from_attribute``: by VMGROUP_NAME (+VMGROUP_UID) or VMGROUP_ID."""
    name = vector.get("VMGROUP_NAME", "")
    if name:
        raw_uid = vector.get("VMGROUP_UID", "")
        owner = int(raw_uid) if raw_uid.lstrip("-").isdigit() else uid
        for group in core.vmgroups.objects():
            if group.name == name and group.uid == owner:
                return group
        return None
    raw = vector.get("VMGROUP_ID", "")
    return core.vmgroups.get(int(raw)) if raw.lstrip("-").isdigit() else None


def join(core: Core, unit: Unit, vector: dict[str, str], uid: int, vid: int) -> dict[str, str]:
    """``vmgroup_attribute``: the VM joins the role; returns the VM's VMGROUP vector
    (with VMGROUP_ID). Raises ``VMGroupError`` with oned's text."""
    role = vector.get("ROLE", "")
    if not role:
        raise VMGroupError("Missing role name in VM Group definition")
    group = group_of(core, vector, uid)
    if group is None:
        raise VMGroupError("Cannot find VM Group to associate the VM")
    group = group.copy()
    if not group.add_vm(role, vid):
        raise VMGroupError("Role does not exist in VM Group")
    unit.save(core.vmgroups, group)
    return {**vector, "VMGROUP_ID": str(group.oid)}


def leave(core: Core, unit: Unit, vm: VirtualMachine) -> None:
    """``release_vmgroup``: the VM leaves the role its VMGROUP names."""
    vectors = vm.template.vectors("VMGROUP")
    if not vectors:
        return
    raw, role = vectors[0].get("VMGROUP_ID", ""), vectors[0].get("ROLE", "")
    if not raw.lstrip("-").isdigit() or not role:
        return
    group = core.vmgroups.get(int(raw))
    if group is not None:
        group = group.copy()
        group.del_vm(role, vm.oid)
        unit.save(core.vmgroups, group)
