"""The VM-template side of system snapshots, resize and guest exec
(mirrors ``VirtualMachineSystemSnapshot.cc``, ``VirtualMachine::resize``/
``store_resize`` and the ``QEMU_GA_EXEC`` accessors); PCI devices are in
``oned.managers.vmm.system_pci``.

Pure functions over a ``VirtualMachine``'s TEMPLATE (and a host's PCI list): the
managers call them on the working copy of a ``Tx``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oned.objects.vm import VirtualMachine
    from oned.template import Template


def float_str(value: float) -> str:
    """A float as C++ streams print it (six significant digits)."""
    return f"{value:g}"


# -- system snapshots ------------------------------------------------------------------


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        try:
            return int(float((text or "").strip()))
        except ValueError:
            return default


def _float(text: str | None, default: float = 0.0) -> float:
    try:
        return float((text or "").strip())
    except ValueError:
        return default


def _volatile(disk: dict[str, str]) -> bool:
    return "IMAGE_ID" not in disk and disk.get("TYPE", "").upper() in ("FS", "SWAP")


def _tm_target(disk: dict[str, str]) -> str:
    if disk.get("CLONE", "").upper() == "YES":
        return disk.get("CLONE_TARGET", "")
    return disk.get("LN_TARGET", "")


def system_ds_size(tmpl: Template, include_snapshots: bool = False) -> int:
    """``VirtualMachineDisks::system_ds_size``: MB of the disks kept in the system DS."""
    total = 0
    for disk in tmpl.vectors("DISK"):
        if "SIZE" not in disk:
            continue
        size = _int(disk.get("SIZE"))
        if include_snapshots and "DISK_SNAPSHOT_TOTAL_SIZE" in disk:
            size += _int(disk.get("DISK_SNAPSHOT_TOTAL_SIZE"))
        if _volatile(disk) or _tm_target(disk) == "SYSTEM":
            total += size
    return total


def snapshots_system_size(tmpl: Template) -> int:
    """``get_snapshots_system_size``: the SYSTEM_DISK_SIZE of every SNAPSHOT."""
    return sum(_int(s.get("SYSTEM_DISK_SIZE")) for s in tmpl.vectors("SNAPSHOT"))


def snapshots_system_size_of(snap: dict[str, str]) -> int:
    return _int(snap.get("SYSTEM_DISK_SIZE"))


def new_snapshot(vm: VirtualMachine, name: str, now: int, factor: float) -> dict[str, str]:
    """``new_snapshot``: the next SNAPSHOT_ID (max + 1), ``snapshot-<id>`` when no
    name, ACTIVE/ACTION=CREATE and SYSTEM_DISK_SIZE = MEMORY + disks x factor."""
    tmpl = vm.template
    ids = [_int(s.get("SNAPSHOT_ID"), -1) for s in tmpl.vectors("SNAPSHOT")]
    snap_id = max([-1, *ids]) + 1
    size = int(system_ds_size(tmpl) * factor) + _int(tmpl.get("MEMORY"))
    snap = {
        "SNAPSHOT_ID": str(snap_id),
        "NAME": name or f"snapshot-{snap_id}",
        "TIME": str(now),
        "HYPERVISOR_ID": "",
        "ACTIVE": "YES",
        "ACTION": "CREATE",
        "SYSTEM_DISK_SIZE": str(size),
    }
    tmpl.add("SNAPSHOT", snap)
    return snap


def find_snapshot(vm: VirtualMachine, snap_id: int) -> dict[str, str] | None:
    for snap in vm.template.vectors("SNAPSHOT"):
        if _int(snap.get("SNAPSHOT_ID"), -1) == snap_id:
            return snap
    return None


def set_active_snapshot(vm: VirtualMachine, snap_id: int, action: str) -> bool:
    """``set_revert_snapshot``/``set_delete_snapshot``: False when there is no such id."""
    snap = find_snapshot(vm, snap_id)
    if snap is None:
        return False
    snap["ACTIVE"] = "YES"
    snap["ACTION"] = action
    return True


def active_snapshot(vm: VirtualMachine) -> dict[str, str] | None:
    return next((s for s in vm.template.vectors("SNAPSHOT") if s.get("ACTIVE") == "YES"), None)


def snapshot_action(vm: VirtualMachine) -> str:
    snap = active_snapshot(vm)
    return snap.get("ACTION", "") if snap is not None else ""


def clear_active_snapshot(vm: VirtualMachine) -> None:
    snap = active_snapshot(vm)
    if snap is not None:
        snap.pop("ACTIVE", None)
        snap.pop("ACTION", None)


def delete_active_snapshot(vm: VirtualMachine) -> dict[str, str] | None:
    """Remove the active SNAPSHOT and return it (its quota is then given back)."""
    snap = active_snapshot(vm)
    if snap is None:
        return None
    vm.template.items = [(n, v) for n, v in vm.template.items if v is not snap]
    return snap


def delete_snapshots(vm: VirtualMachine) -> int:
    """``delete_snapshots``: drop every SNAPSHOT; returns their SYSTEM_DISK_SIZE."""
    size = snapshots_system_size(vm.template)
    vm.template.erase("SNAPSHOT")
    return size


# -- resize ------------------------------------------------------------------------------


def resize(vm: VirtualMachine, cpu: float, memory: int, vcpu: int) -> str | None:
    """``VirtualMachine::resize``: new CPU/MEMORY/VCPU (values > 0 only), TOPOLOGY
    cores follow VCPU. Returns oned's error text or None."""
    tmpl = vm.template
    if cpu > 0:
        tmpl.set("CPU", float_str(cpu))
    if memory > 0:
        tmpl.set("MEMORY", str(memory))
    if vcpu > 0:
        tmpl.set("VCPU", str(vcpu))
    else:
        vcpu = _int(tmpl.get("VCPU"))
    topology = tmpl.get_vector("TOPOLOGY")
    if topology is None:
        return None
    sockets = _int(topology.get("SOCKETS"))
    cores = _int(topology.get("CORES"))
    threads = _int(topology.get("THREADS"))
    if sockets and cores and threads and sockets * cores * threads != vcpu:
        if vcpu % (threads * sockets) != 0:
            return "new VCPU is not multiple of the total number of threads"
        topology["CORES"] = str(vcpu // (threads * sockets))
    tmpl.erase("NUMA_NODE")
    return None


def store_resize(vm: VirtualMachine, cpu: float, memory: int, vcpu: int) -> None:
    """``store_resize``: RESIZE=[CPU, VCPU, MEMORY] keeps the old values."""
    vm.template.set("RESIZE", {"CPU": float_str(cpu), "VCPU": str(vcpu), "MEMORY": str(memory)})


def stored_resize(vm: VirtualMachine) -> tuple[float, int, int] | None:
    """The (cpu, memory, vcpu) kept by ``store_resize``."""
    old = vm.template.get_vector("RESIZE")
    if old is None:
        return None
    return _float(old.get("CPU")), _int(old.get("MEMORY")), _int(old.get("VCPU"))


# -- guest exec --------------------------------------------------------------------------


def exec_attr(vm: VirtualMachine, key: str) -> str:
    block = vm.template.get_vector("QEMU_GA_EXEC")
    return block.get(key, "") if block is not None else ""


def set_exec_attr(vm: VirtualMachine, key: str, value: str) -> None:
    block = vm.template.get_vector("QEMU_GA_EXEC")
    if block is None:
        block = {}
        vm.template.add("QEMU_GA_EXEC", block)
    block[key] = value


def clear_exec(vm: VirtualMachine) -> None:
    vm.template.erase("QEMU_GA_EXEC")
