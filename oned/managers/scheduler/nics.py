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
            vm.template.items = items
            return done

        tx.before.append(work)
        return True

    await transition(
        core,
        a.vm_id,
        step,
        f"auto NICs of VM {a.vm_id}",
        extra_targets=[(core.vnets, n) for n in sorted(set(wanted.values()))],
    )
