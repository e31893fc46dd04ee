"""DispatchManager: NIC attach/detach/update and security groups
(``DispatchManager::attach_nic``, ``detach_nic``, ``update_nic``, ``attach_sg``,
``detach_sg``).

Each call is one VM transition holding the VM, its networks and security groups plus
the network and groups the new NIC brings. The DB-only cases (a POWEROFF VM whose
driver has no cold NIC attach, a VM that is not ACTIVE for updatenic/attachsg) finish
in that transaction; the others leave the VM in HOTPLUG_NIC(_POWEROFF) and send
ATTACHNIC/DETACHNIC/UPDATENIC after the commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.api.secgroup_vm import (
    GroupEdits,
    add_rules,
    drop_group,
    join_ids,
    nic_groups,
    vm_groups,
)
from oned.errors import ActionError, InternalError
from oned.managers.ipam.nic import network_of
from oned.managers.lifecycle.nic_actions import (
    ALIAS_ATTACH,
    ALIAS_DETACH,
    NIC_ATTACH,
    NIC_DETACH,
    NIC_UPDATE,
    SG_LIVE,
    SG_REFUSED,
)
from oned.managers.lifecycle.tx import state_str, transition
from oned.managers.vmm import nic as vmm_nic
from oned.managers.vmm.nic_setup import (
    charge_attach_quota,
    clear_attach,
    delete_attach_nic,
    find_nic,
    set_detach_nic,
    set_up_attach_nic,
)
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.managers.lifecycle.tx import Tx
    from oned.objects.vm import VirtualMachine
    from oned.objects.vnet import LeaseChanges
    from oned.pools.base import Pool
    from oned.template import Template

#: ``VirtualMachine::nic_update``: the NIC attributes updatenic changes.
UPDATE_ATTRIBUTES = (
    "INBOUND_AVG_BW",
    "INBOUND_PEAK_BW",
    "INBOUND_PEAK_KB",
    "OUTBOUND_AVG_BW",
    "OUTBOUND_PEAK_BW",
    "OUTBOUND_PEAK_KB",
)


def close_cp_history(tx: Tx, action: int, who: Any) -> None:
    """``close_cp_history``: close the open record with ``action`` and who asked, and
    open a copy on the same host that keeps the action in progress."""
    record = tx.history
    keep_off = record.retime != 0
    if not keep_off:
        record.retime = tx.now
    record.etime = tx.now
    current = record.action
    record.action, record.uid, record.gid, record.req_id = action, who.uid, who.gid, who.req_id
    new = record.successor(len(tx.vm.history), tx.now)
    new.action = current
    new.stime = new.rstime = tx.now
    if keep_off:
        new.retime = tx.now
    tx.add_history(new)


class DispatchNics:
    """Mixed into ``DispatchManager``, which provides ``_run`` and ``_act``."""

    core: Core
    lcm: LifeCycleManager

    if TYPE_CHECKING:  # provided by DispatchManager

        async def _run(self, vid: int, step: Any, desc: str) -> VirtualMachine: ...

        def _act(self, tx: Tx, action: int, who: Any) -> None: ...

    def _nic_locks(self, nic: dict[str, str], uid: int) -> list[tuple[Pool[Any], int]]:
        """The network a new NIC names and the security groups it brings."""
        core = self.core
        groups = nic_groups(nic)
        out: list[tuple[Pool[Any], int]] = []
        try:
            vn = network_of(core, nic, uid)
        except InternalError:
            vn = None
        if vn is not None:
            out.append((core.vnets, vn.oid))
            groups.update(vn.security_groups())
        return out + [(core.secgroups, g) for g in sorted(groups)]

    async def attach_nic(self, vid: int, tmpl: Template, who: Any) -> None:
        core = self.core
        vm = core.vms.get(vid)
        if vm is None:
            raise ActionError(f"Could not add a new NIC to VM {vid}, VM does not exist")
        alias = tmpl.get_vector("NIC") is None
        vector = tmpl.get_vector("NIC") or tmpl.get_vector("NIC_ALIAS")
        locks = self._nic_locks(vector, vm.uid) if vector is not None else []

        def step(tx: Tx) -> None:
            vm = tx.vm
            quota = charge_attach_quota(core, tx, vector or {})
            running = vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING
            poweroff = vm.state == S.POWEROFF and vm.lcm_state == L.LCM_INIT
            if not running and not poweroff:
                quota.rollback()
                raise ActionError(
                    f"Could not add a new NIC to VM {vid}, wrong state {state_str(vm)}."
                )
            if vector is None:
                raise ActionError("Wrong format or missing NIC/NIC_ALIAS/PCI attribute")
            current = vm.current
            cold = current is not None and vmm_nic.is_cold_nic_attach(core, current.vm_mad)
            cid = current.cid if current is not None else -1

            async def work() -> list[LeaseChanges]:
                try:
                    changes = await set_up_attach_nic(core, tx, vector, alias, cid)
                except Exception:
                    quota.rollback()
                    raise
                changes.append(quota)
                if running:
                    tx.lcm(L.HOTPLUG_NIC)
                elif cold:
                    tx.state(S.ACTIVE)
                    tx.lcm(L.HOTPLUG_NIC_POWEROFF)
                vm.resched = 0
                close_cp_history(tx, ALIAS_ATTACH if alias else NIC_ATTACH, who)
                if vm.state == S.ACTIVE:
                    tx.then(lambda: vmm_nic.attach_nic(self.lcm.vmm, vm))
                else:
                    tx.log("DiM", "I", "VM NIC Successfully attached.")
                    clear_attach(vm.template)
                    tx.history.retime = tx.now
                return changes

            tx.before.append(work)

        await transition(core, vid, step, f"attach nic to VM {vid}", extra_targets=locks)

    async def detach_nic(self, vid: int, nic_id: int, who: Any) -> None:
        core = self.core
        if core.vms.get(vid) is None:
            raise ActionError(f"VirtualMachine {vid} no longer exists")

        def step(tx: Tx) -> None:
            vm = tx.vm
            running = vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING
            poweroff = vm.state == S.POWEROFF and vm.lcm_state == L.LCM_INIT
            if not running and not poweroff:
                raise ActionError(
                    f"Could not detach NIC from VM {vid}, wrong state {state_str(vm)}."
                )
            found = set_detach_nic(vm.template, nic_id)
            if found is None:
                raise ActionError(f"Could not detach NIC with NIC_ID {nic_id}, it does not exist.")
            alias = found[0] == "NIC_ALIAS"
            close_cp_history(tx, ALIAS_DETACH if alias else NIC_DETACH, who)
            current = vm.current
            cold = current is not None and vmm_nic.is_cold_nic_attach(core, current.vm_mad)
            if running or (cold and poweroff):
                if not running:
                    tx.state(S.ACTIVE)
                tx.lcm(L.HOTPLUG_NIC if running else L.HOTPLUG_NIC_POWEROFF)
                vm.resched = 0
                tx.then(lambda: vmm_nic.detach_nic(self.lcm.vmm, vm))
            else:
                tx.log("DiM", "I", "VM NIC Successfully detached.")
                delete_attach_nic(core, tx)

        await transition(core, vid, step, f"detach nic from VM {vid}")

    async def update_nic(
        self, vid: int, nic_id: int, tmpl: Template, append: bool, who: Any
    ) -> None:
        core = self.core
        head = f"Error updating NIC ({nic_id}) for VM {vid}: "
        if core.vms.get(vid) is None:
            raise ActionError(head + "VM does not exist")

        def step(tx: Tx) -> bool:
            vm = tx.vm
            found = find_nic(vm.template, nic_id)
            if found is None:
                raise ActionError(head + "NIC does not exist")
            nic = found[1]
            live = vm.state == S.ACTIVE
            if live and vm.lcm_state != L.RUNNING:
                raise ActionError(head + f"Wrong state {state_str(vm)}")
            given = tmpl.get_vector("NIC")
            if given is None:
                raise ActionError(head + "Wrong NIC definition, attribute is missing")
            new = {**nic, **given} if append else dict(given)
            changed = self._nic_update(vm.template, nic, new, live)
            if live and changed > 0:
                tx.lcm(L.HOTPLUG_NIC)
                close_cp_history(tx, NIC_UPDATE, who)
                raw = nic.get("NETWORK_ID", "").strip()
                net_id = int(raw) if raw.lstrip("-").isdigit() else -1
                tx.then(lambda: vmm_nic.updatenic(self.lcm.vmm, vm, net_id))
            return True

        await self._run(vid, step, f"update nic of VM {vid}")

    @staticmethod
    def _nic_update(tmpl: Template, nic: dict[str, str], new: dict[str, str], live: bool) -> int:
        """``VirtualMachine::nic_update``: only the bandwidth attributes change; a live
        update keeps their old values in VNET_UPDATE."""
        update = tmpl.get_vector("VNET_UPDATE")
        if live and update is None:
            update = {}
            tmpl.add("VNET_UPDATE", update)
        count = 0
        for key, value in new.items():
            if key in UPDATE_ATTRIBUTES and (key not in nic or nic[key] != value):
                count += 1
                old = nic.get(key, "")
                nic[key] = value
                if update is not None and live:
                    update[key] = old
        for key in [k for k in nic if k in UPDATE_ATTRIBUTES and k not in new]:
            count += 1
            if update is not None and live:
                update[key] = nic[key]
            del nic[key]
        return count

    # -- security groups -------------------------------------------------------------

    def _sg_state(self, vm: VirtualMachine) -> bool:
        """Refuse the states that cannot take rules; True when UPDATESG must go out."""
        lcm = L(vm.lcm_state)
        if lcm in SG_REFUSED:
            raise ActionError(f"VM {vm.oid} is in wrong state {state_str(vm)}")
        return lcm in SG_LIVE

    async def attach_sg(self, vid: int, nic_id: int, sg_id: int, who: Any) -> None:
        core = self.core
        if core.secgroups.get(sg_id) is None:
            raise ActionError(f"Could not attach SG {sg_id} to VM, SG does not exist")
        if core.vms.get(vid) is None:
            raise ActionError(f"Could not attach SG to VM {vid}, VM does not exist")

        def step(tx: Tx) -> None:
            vm = tx.vm
            live = self._sg_state(vm)
            found = find_nic(vm.template, nic_id)
            if found is None:
                raise ActionError(f"VM {vid} doesn't have NIC id {nic_id}")
            nic = found[1]
            groups = nic_groups(nic)
            if sg_id in groups:
                raise ActionError(f"VM {vid} SG {sg_id} already in NIC {nic_id}")
            edits = GroupEdits(core)
            rules = edits.rules(sg_id)
            nic["SECURITY_GROUPS"] = join_ids(groups | {sg_id})
            drop_group(edits, vm.template, vid, sg_id)
            add_rules(vm.template, rules)
            edits.add(vid, sg_id, updating=live)
            edits.stage(tx.unit)
            if live:
                tx.then(lambda: vmm_nic.updatesg(self.lcm.vmm, vm, sg_id))

        await transition(
            core, vid, step, f"attach sg {sg_id} to VM {vid}", [], [(core.secgroups, sg_id)]
        )

    async def detach_sg(self, vid: int, nic_id: int, sg_id: int, who: Any) -> None:
        core = self.core
        if core.vms.get(vid) is None:
            raise ActionError(f"Could not attach SG to VM {vid}, VM does not exist")

        def step(tx: Tx) -> None:
            vm = tx.vm
            live = self._sg_state(vm)
            found = find_nic(vm.template, nic_id)
            if found is None:
                raise ActionError(f"VM {vid} doesn't have NIC id {nic_id}")
            nic = found[1]
            groups = nic_groups(nic)
            if sg_id not in groups:
                raise ActionError(f"VM {vid} NIC {nic_id} doesn't contain SG {sg_id}")
            nic["SECURITY_GROUPS"] = join_ids(groups - {sg_id})
            edits = GroupEdits(core)
            drop_group(edits, vm.template, vid, sg_id)
            rules: list[dict[str, str]] = []
            if sg_id in vm_groups(vm.template):
                rules = edits.rules(sg_id)
                add_rules(vm.template, rules)
            edits.release(vid, sg_id)
            if rules:
                edits.add(vid, sg_id, updating=live)
            edits.stage(tx.unit)
            if live:
                tx.then(lambda: vmm_nic.updatesg(self.lcm.vmm, vm, sg_id))

        await transition(
            core, vid, step, f"detach sg {sg_id} from VM {vid}", [], [(core.secgroups, sg_id)]
        )
