"""A network's changed attributes reach its VMs' NICs (mirrors
``LifeCycleManager::trigger_updatevnet``, ``VirtualMachine::nic_update(vnid)``,
``VirtualNetwork::nic_update`` and the network side of ``_updatenic``).

``one.vn.update`` leaves the old values of what changed in the network's VNET_UPDATE
and every VM of the network in OUTDATED_VMS. VMs are then taken one at a time: a
NIC still holding the network's old value gets the new one; a RUNNING VM whose NICs
changed goes to HOTPLUG_NIC with UPDATENIC (and waits in UPDATING_VMS for the answer,
which continues with the next VM), others are only updated (UPDATED_VMS), and VMs in
states that cannot take it land in ERROR_VMS. With no VM left the network forgets
VNET_UPDATE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.managers.lifecycle.tx import Tx, transition
from oned.managers.vmm import nic as vmm_nic
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.objects.vnet import UPDATE_FAILURE

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vnet import VirtualNetwork

NIC_UPDATE = 51

#: ACTIVE states whose NICs cannot be updated now.
VNET_REFUSED = {
    L.BOOT,
    L.BOOT_MIGRATE,
    L.BOOT_SUSPENDED,
    L.BOOT_STOPPED,
    L.BOOT_UNDEPLOY,
    L.BOOT_POWEROFF,
    L.BOOT_UNKNOWN,
    L.BOOT_FAILURE,
    L.BOOT_MIGRATE_FAILURE,
    L.BOOT_UNDEPLOY_FAILURE,
    L.BOOT_STOPPED_FAILURE,
    L.MIGRATE,
    L.HOTPLUG_NIC,
    L.HOTPLUG_NIC_POWEROFF,
    L.HOTPLUG,
    L.HOTPLUG_SNAPSHOT,
    L.HOTPLUG_SAVEAS,
    L.HOTPLUG_RESIZE,
    L.DISK_SNAPSHOT,
    L.DISK_SNAPSHOT_DELETE,
    L.DISK_RESIZE,
    L.UNKNOWN,
}


def _nic_update(vn: VirtualNetwork, nic: dict[str, str]) -> dict[str, str] | None:
    """``VirtualNetwork::nic_update``: attributes the NIC took from the network (its
    value is still the old one) get the new value, from the range or the network."""
    changes = vn.template.get_vector("VNET_UPDATE")
    if changes is None:
        return None
    raw = nic.get("AR_ID", "").strip()
    ar = vn.ar(int(raw)) if raw.isdigit() else None
    for name, old in changes.items():
        if name in nic and nic[name] != old:
            continue
        new = ar.attrs.get(name) if ar is not None else None
        if new is None:
            new = vn.template.get(name)
        if new is None:
            nic.pop(name, None)
        else:
            nic[name] = new
    return dict(changes)


def vm_nic_update(core: Core, tx: Tx, vnet_id: int) -> bool:
    """``VirtualMachine::nic_update(vnid)`` on the VM's NICs of network ``vnet_id``
    (False when the network is gone)."""
    vn = core.vnets.get(vnet_id)
    if vn is None:
        return False
    updating: dict[str, str] | None = None
    for nic in tx.vm.template.vectors("NIC"):
        if nic.get("NETWORK_ID", "").strip() == str(vnet_id):
            got = _nic_update(vn, nic)
            updating = got if got is not None else updating
    current = tx.vm.template.get_vector("VNET_UPDATE")
    if current is not None:
        if updating:
            current.update(updating)
    elif updating is not None:
        tx.vm.template.add("VNET_UPDATE", updating)
    return True


async def update_vnet(lcm: Any, vnet_id: int) -> None:
    """``trigger_updatevnet``: one OUTDATED VM after another until one is RUNNING."""
    from oned.managers.dispatch.nics import close_cp_history

    core = lcm.core
    while True:
        async with core.vnets.lock(vnet_id):
            vn = core.vnets.get(vnet_id)
            if vn is None:
                return
            if not vn.outdated:
                if vn.template.get_vector("VNET_UPDATE") is not None:
                    vn = vn.copy()
                    vn.template.erase("VNET_UPDATE")
                    unit = core.unit()
                    unit.save(core.vnets, vn)
                    await unit.commit(f"update virtual network {vnet_id}")
                return
            vid = min(vn.outdated)
            vn = vn.copy()
            vn.outdated.discard(vid)
            unit = core.unit()
            unit.save(core.vnets, vn)
            await unit.commit(f"update virtual network {vnet_id}")
        live: list[bool] = []

        def step(tx: Tx, vid: int = vid, live: list[bool] = live) -> bool:
            vm = tx.vm
            lcm_state = L(vm.lcm_state)
            active = vm.state == S.ACTIVE
            error = active and lcm_state in VNET_REFUSED
            update = active and lcm_state == L.RUNNING
            template = not error and not update
            if template or update:
                if not vm_nic_update(core, tx, vnet_id):
                    tx.log("LCM", "E", f"Unable to update Virtual Network {vnet_id}")
                    error, template, update = True, False, False
                if update and tx.vm.template.get_vector("VNET_UPDATE") is None:
                    update, template = False, True
                if update:
                    tx.lcm(L.HOTPLUG_NIC)
                    close_cp_history(tx, NIC_UPDATE, _Owner(vm.uid, vm.gid))
            network = core.vnets.get(vnet_id)
            if network is not None:
                network = network.copy()
                (
                    network.error_vms
                    if error
                    else network.updated
                    if template
                    else network.updating
                ).add(vid)
                tx.unit.save(core.vnets, network)
            if update:
                live.append(True)
                tx.then(lambda: vmm_nic.updatenic(lcm.vmm, vm, vnet_id))
            return True

        await transition(
            core, vid, step, f"update vnet {vnet_id} of VM {vid}", (), [(core.vnets, vnet_id)]
        )
        if live:
            return


class _Owner:
    """The requester of an update triggered by the network: the VM's owner."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid, self.gid, self.req_id = uid, gid, 0


async def updatenic_vnet(core: Core, vid: int, vnet_id: int, success: bool) -> None:
    """The network side of ``_updatenic``: UPDATING_VMS to UPDATED_VMS, or ERROR_VMS
    with the network in UPDATE_FAILURE."""
    async with core.vnets.lock(vnet_id):
        vn = core.vnets.get(vnet_id)
        if vn is None or vid not in vn.updating:
            return
        vn = vn.copy()
        vn.updating.discard(vid)
        if success:
            vn.updated.add(vid)
        else:
            vn.error_vms.add(vid)
            vn.state = UPDATE_FAILURE
        unit = core.unit()
        unit.save(core.vnets, vn)
        await unit.commit(f"update virtual network {vnet_id}")
