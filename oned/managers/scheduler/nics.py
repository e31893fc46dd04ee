"""NETWORK_MODE=auto NICs of a planned deploy (mirrors the ``NIC=[NIC_ID, NETWORK_MODE=auto,
NETWORK_ID]`` template ``PlanManager::start_action`` hands to ``VirtualMachineAPI::deploy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.objects.vm import VmState

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.scheduler.plans import PlanAction


def auto_nic_id(name: str, value: Any) -> int | None:
    """The NIC_ID of an auto NIC still without a network (else None)."""
    if name != "NIC" or not isinstance(value, dict):
        return None
    if (value.get("NETWORK_MODE") or "").strip().lower() != "auto":
        return None
    if (value.get("NETWORK_ID") or "").strip() or value.get("NETWORK"):
        return None
    raw = (value.get("NIC_ID") or "").strip()
    return int(raw) if raw.isdigit() else None


async def auto_nics(core: Core, a: PlanAction) -> None:
    """The networks the plan chose for the VM's ``NETWORK_MODE=auto`` NICs: each NIC
    gets its NETWORK_ID and a lease (the ``NIC=[NIC_ID, NETWORK_MODE=auto,
    NETWORK_ID]`` template oned's plan manager hands to deploy)."""
    from oned.managers.ipam.nic import acquire_nic
    from oned.managers.lifecycle.tx import transition

    wanted = {nic_id: net_id for nic_id, net_id in a.nics if net_id >= 0}
    if not wanted:
        return

    def step(tx: Any) -> bool:
        vm = tx.vm
        if vm.state not in (VmState.PENDING, VmState.HOLD):
            return False

        async def work() -> list[Any]:
            done: list[Any] = []
            filled: list[dict[str, str]] = []
            items: list[tuple[str, Any]] = []
            for name, value in vm.template.items:
                nic_id = auto_nic_id(name, value)
                if nic_id is None or nic_id not in wanted:
                    items.append((name, value))
                    continue
                nic = dict(value)
                nic["NETWORK_ID"] = str(wanted[nic_id])
                out, changes = await acquire_nic(core, tx.unit, nic, vm.oid, vm.uid, vm.gid, nic_id)
                done.append(changes)
                out.setdefault("NIC_ID", str(nic_id))
                items.append((name, out))
                filled.append(out)
            vm.template.items = items
            _security_groups(core, tx, filled)
            _network_context(core, vm.template, filled)
            return done

        tx.before.append(work)
        return True

    await transition(
        core,
        a.vm_id,
        step,
        f"auto NICs of VM {a.vm_id}",
        extra_targets=[
            *((core.vnets, n) for n in sorted(set(wanted.values()))),
            *((core.secgroups, g) for g in _network_groups(core, set(wanted.values()))),
        ],
    )


def _network_groups(core: Core, nets: set[int]) -> list[int]:
    """The security groups the planned networks hand to their NICs (locked with the VM)."""
    from oned.api.secgroup_vm import ids_of

    out: set[int] = {0}
    for nid in nets:
        vn = core.vnets.get(nid)
        if vn is not None:
            out |= ids_of(vn.template.get("SECURITY_GROUPS") or "")
    return sorted(out)


def _security_groups(core: Core, tx: Any, filled: list[dict[str, str]]) -> None:
    """The rules of the new NICs' security groups the VM does not hold yet."""
    from oned.api.secgroup_vm import nic_groups, stage_vm_rules

    tmpl = tx.vm.template
    held = {int(r.get("SECURITY_GROUP_ID", "-1")) for r in tmpl.vectors("SECURITY_GROUP_RULE")}
    new: set[int] = set()
    for nic in filled:
        new |= nic_groups(nic)
    for rule in stage_vm_rules(core, tx.unit, tx.vm.oid, new - held):
        tmpl.add("SECURITY_GROUP_RULE", rule)


def _network_context(core: Core, tmpl: Any, filled: list[dict[str, str]]) -> None:
    """``generate_network_context(only_auto)``: ETH<n>_* of the NICs just given a network."""
    from oned.api.vm_context import NETWORK6_CONTEXT, NETWORK_CONTEXT, _network_value

    context = tmpl.get_vector("CONTEXT")
    if context is None or context.get("NETWORK", "").upper() not in ("YES", "TRUE"):
        return
    for nic in filled:
        nic_id = nic.get("NIC_ID", "0")
        for cvars in (NETWORK_CONTEXT, NETWORK6_CONTEXT):
            for cname, nic_name, alt, lookup in cvars:
                value = nic.get(nic_name, "") or (nic.get(alt, "") if alt else "")
                if not value and lookup:
                    value = _network_value(core, tmpl, nic_name, nic_id)
                context[f"ETH{nic_id}_{cname}"] = value
