"""DispatchManager: cold and live migration (``DispatchManager::migrate``,
``live_migrate``, with the checks ``VirtualMachineAPI::migrate`` makes once the VM is
locked: state, target host and system datastore, capacity, cluster, VNC port).

``migrate`` is also the entry point of the scheduler (``resched`` VMs): it takes the
same placement tuple as ``deploy``, checks everything under the VM and host locks,
adds the target's history record and hands the VM to the LifeCycleManager in one
transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.errors import ActionError, InternalError, NoExistsError, no_exists
from oned.managers.lifecycle.tx import Tx, state_str
from oned.objects.datastore import SYSTEM_DS
from oned.objects.history import VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S
from oned.vm_disks import datastore_disk_attribute

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.objects.datastore import Datastore
    from oned.objects.host import Host

VNC_BASE, VNC_LAST = 5900, 65535

#: ``one.vm.migrate`` migration type -> the history action of a cold migration.
MIGRATION_ACTIONS = {
    0: VMAction.MIGRATE,
    1: VMAction.POWEROFF_MIGRATE,
    2: VMAction.POWEROFF_HARD_MIGRATE,
}


def _yes(ds: Datastore, name: str) -> bool:
    return (ds.template.get(name) or "").strip().upper() in ("YES", "TRUE", "1")


def fit_error(host: Host, vm: VirtualMachine) -> str:
    """``Host::test_capacity`` with enforce: "" or why the VM does not fit."""
    cpu, mem = vm.host_capacity()
    share = host.share
    if share.max_cpu - share.cpu_usage < cpu:
        return f"Not enough CPU: {cpu}/{share.max_cpu - share.cpu_usage}"
    if share.max_mem - share.mem_usage < mem:
        return f"Not enough memory: {mem}/{share.max_mem - share.mem_usage}"
    return ""


class DispatchMigrate:
    """Mixed into ``DispatchManager``, which provides ``_run_hosts``."""

    core: Core
    lcm: LifeCycleManager

    if TYPE_CHECKING:  # provided by DispatchManager

        async def _run_hosts(
            self, vid: int, step: object, desc: str, hosts: tuple[int, ...]
        ) -> VirtualMachine: ...

    async def migrate(
        self,
        vid: int,
        placement: tuple[int, str, int, str, str, int],
        live: bool,
        enforce: bool,
        mig_type: int,
        who: Any,
    ) -> None:
        """Move VM ``vid`` to ``placement`` (host id, host name, cluster id, VM_MAD,
        TM_MAD, system datastore id or -1 to keep the current one).

        ``live`` migrates a RUNNING VM with VMM MIGRATE; otherwise (or when the VM is
        not RUNNING) a cold migration by ``mig_type``: 0 save, 1 poweroff, 2
        poweroff-hard. Refusals raise ``ActionError`` (or ``InternalError``,
        ``NoExistsError``) with oned's texts.
        """
        hid, hostname, cid, vm_mad, _tm_mad, ds_id = placement

        def step(tx: Tx) -> None:
            vm = tx.vm
            cluster_ids = self._check_migrate(tx, hid, live, enforce, mig_type, ds_id)
            current = vm.current
            assert current is not None
            target_ds = self._target_ds(tx, hid, cid, live, ds_id, cluster_ids)
            if current.cid != cid:
                self._migrate_vnc_port(tx, cid, live)
            tm_mad = target_ds.template.get("TM_MAD") or target_ds.tm_mad
            for disk in vm.template.vectors("DISK"):  # set_volatile_disk_info
                if disk.get("TYPE", "").strip().upper() in ("SWAP", "FS"):
                    datastore_disk_attribute(self.core, disk, target_ds.oid)
            self.lcm.new_history(tx, hid, hostname, cid, vm_mad, tm_mad, target_ds.oid)
            uid, gid, req_id = who.uid, who.gid, who.req_id
            if live and vm.lcm_state == L.RUNNING:
                self.lcm.live_migrate(tx, uid, gid, req_id)
            else:
                action = MIGRATION_ACTIONS.get(mig_type, VMAction.MIGRATE)
                self.lcm.migrate(tx, action, uid, gid, req_id)

        await self._run_hosts(vid, step, f"migrate VM {vid}", (hid,))

    def _check_migrate(
        self, tx: Tx, hid: int, live: bool, enforce: bool, mig_type: int, ds_id: int
    ) -> set[int]:
        """State, live restrictions, same host, capacity, requirements and PCI, in
        oned's order; returns the clusters the VM requires."""
        from oned.api.vm_template import automatic_requirements, cluster_requirements

        vm = tx.vm
        previous = vm.previous
        movable = vm.state in (S.POWEROFF, S.SUSPENDED) or (
            vm.state == S.ACTIVE and vm.lcm_state in (L.RUNNING, L.UNKNOWN)
        )
        if (previous is not None and previous.etime == 0) or not movable or vm.current is None:
            raise ActionError(f"Migrate action is not available for state {state_str(vm)}")
        if live:
            from oned.api.vm_template import is_pinned

            if is_pinned(vm.template):
                raise ActionError("VM with a pinned NUMA topology cannot be live-migrated")
            for disk in vm.template.vectors("DISK"):
                if disk.get("TYPE", "").strip().upper() == "FILESYSTEM":
                    raise ActionError("VM with FILESYSTEM disks cannot be live-migrated")
        current = vm.current
        c_ds = current.ds_id
        if current.hid == hid and ds_id in (-1, c_ds):
            raise ActionError(
                f"VM is already running on host [{current.hid}] and datastore [{c_ds}]"
            )
        if live and current.hid != hid and ds_id not in (-1, c_ds):
            raise ActionError("Cannot live migrate host and datastore at the same time.")
        if current.hid != hid:
            host = tx.host(hid)
            if host is None:
                raise ActionError("Host no longer exists")
            if enforce:
                error = fit_error(host, vm)
                if error:
                    raise ActionError(
                        f"virtual machine [{vm.oid}] does not fit in host [{hid}]. {error}"
                    )
        try:
            cluster_ids = cluster_requirements(vm.template)
            automatic_requirements(vm.template, cluster_ids)
        except InternalError as exc:
            raise ActionError(exc.message) from exc
        if vm.template.vectors("PCI") and not mig_type and vm.state != S.POWEROFF:
            raise ActionError(
                f"Cannot migrate VM [{vm.oid}], use poweroff or poweroff-hard flag for "
                "migrating a VM with PCI devices"
            )
        return cluster_ids

    def _target_ds(
        self, tx: Tx, hid: int, cid: int, live: bool, ds_id: int, cluster_ids: set[int]
    ) -> Datastore:
        """The cluster checks and the system datastore (a change of system datastore
        needs DS_MIGRATE and the same TM_MAD)."""
        vm = tx.vm
        current = vm.current
        assert current is not None
        c_ds = current.ds_id
        if self.core.hosts.get(current.hid) is None:
            raise no_exists("host", current.hid)
        if cluster_ids and cid not in cluster_ids:
            ids = ",".join(str(c) for c in sorted(cluster_ids))
            raise ActionError(
                f"Cannot migrate  VM [{vm.oid}] to host [{hid}]. Host is in cluster [{cid}], "
                f"and VM requires to be placed on cluster [{ids}]"
            )
        changing = ds_id not in (-1, c_ds)
        ds = self._system_ds(ds_id if changing else c_ds)
        if changing:
            if not _yes(ds, "DS_MIGRATE"):
                raise ActionError("System datastore migration not supported by driver")
            if live and not _yes(ds, "DS_LIVE_MIGRATE"):
                raise ActionError("Live system datastore migration not supported by driver")
            if not _yes(ds, "DS_MIGRATE_SNAP") and vm.snapshots_xml:
                raise ActionError(
                    "System datastore migration with disk snapshots not supported by driver"
                )
            if current.tm_mad != (ds.template.get("TM_MAD") or ds.tm_mad):
                raise ActionError("Cannot migrate to a system datastore with a different driver")
        if ds.clusters and cid not in ds.clusters:
            ids = ",".join(str(c) for c in sorted(ds.clusters))
            raise ActionError(
                f"Cannot migrate VM [{vm.oid}] to host [{hid}] and system datastore "
                f"[{ds.oid}]. Host is in cluster [{cid}], and the datastore is in cluster "
                f"[{ids}]"
            )
        return ds

    def _system_ds(self, ds_id: int) -> Datastore:
        """``get_ds_information``: the datastore, which must be a system one."""
        ds = self.core.datastores.get(ds_id)
        if ds is None:
            raise NoExistsError("", ds_id, "datastore")
        if ds.type != SYSTEM_DS:
            raise InternalError(
                f"Trying to use datastore [{ds_id}] to deploy the VM, but it is not of type"
                " system datastore."
            )
        return ds

    def _migrate_vnc_port(self, tx: Tx, cid: int, keep: bool) -> None:
        """``set_migrate_vnc_port``: a port in the new cluster (a live migration keeps
        its own); the old one stays in GRAPHICS/PREVIOUS_PORT until the move ends."""
        graphics = tx.vm.template.get_vector("GRAPHICS")
        if graphics is None or not graphics.get("PORT", "").strip().isdigit():
            return
        previous = int(graphics["PORT"].strip())
        used: set[int] = set()
        for other in self.core.vms.objects():
            current = other.current
            if other.oid == tx.vm.oid or other.state == S.DONE or current is None:
                continue
            if current.cid != cid:
                continue
            raw = (other.template.get_vector("GRAPHICS") or {}).get("PORT", "")
            if raw.strip().isdigit():
                used.add(int(raw))
        port: int | None
        if keep:
            port = None if previous in used else previous
        else:
            base = VNC_BASE + tx.vm.oid
            port = base if base <= VNC_LAST and base not in used else None
            if port is None:
                port = next((p for p in range(VNC_BASE, VNC_LAST + 1) if p not in used), None)
        if port is None:
            raise ActionError("No free VNC port available in the new cluster")
        graphics["PREVIOUS_PORT"] = str(previous)
        graphics["PORT"] = str(port)
