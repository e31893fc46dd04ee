"""The VM-template side of system snapshots, resize, PCI devices and guest exec
(mirrors ``VirtualMachineSystemSnapshot.cc``, ``VirtualMachine::resize``/
``store_resize``, ``attach_pci``/``get_pci``/``detach_pci``,
``VirtualMachine::check_pci_attributes``, ``HostSharePCI::add/del/set_pci_address``
and the ``QEMU_GA_EXEC`` accessors).

Pure functions over a ``VirtualMachine``'s TEMPLATE (and a host's PCI list): the
managers call them on the working copy of a ``Tx``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oned.objects.host import Host
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


# -- PCI devices -------------------------------------------------------------------------

_NODESET = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
_PCI_CLEARED = (
    "DOMAIN",
    "BUS",
    "SLOT",
    "FUNCTION",
    "ADDRESS",
    "PREV_ADDRESS",
    "NUMA_NODE",
    "UUID",
    "MDEV_MODE",
)


def pci_value(pci: dict[str, str], name: str) -> tuple[int, int]:
    """``HostSharePCI::get_pci_value``: (0, 0) unset, (-1, 0) bad hex, (1, value)."""
    text = pci.get(name, "")
    if not text:
        return 0, 0
    try:
        return 1, int(text, 16)
    except ValueError:
        return -1, 0


def check_pci_attributes(pci: dict[str, str], default_bus: str) -> str | None:
    """``check_pci_attributes``: oned's refusal, or None with ``pci`` normalised."""
    found = False
    for attr in ("VENDOR", "DEVICE", "CLASS"):
        rc, _ = pci_value(pci, attr)
        if rc == -1:
            return f"Wrong Hex value for PCI attribute {attr}"
        found = found or rc != 0
    short = pci.get("SHORT_ADDRESS", "")
    if not short and not found:
        return "SHORT_ADDRESS, DEVICE, VENDOR or CLASS must be defined for PCI."
    if short and found:
        return "SHORT_ADDRESS cannot be set with DEVICE, VENDOR or CLASS"
    root = pci.get("ROOT", "")
    if root:
        root = root.lower()
        if root not in ("shared", "dedicated"):
            return "Unknown PCI root mode, has to be SHARED or DEDICATED"
        pci["ROOT"] = root
    nodes = pci.get("ACPI_NODES", "")
    if nodes and not _NODESET.match(nodes):
        return "Invalid nodeset specification in ACPI_NODES"
    bus = pci.get("VM_BUS", "")
    if not bus:
        pci["VM_BUS"] = default_bus
    else:
        try:
            int(bus, 16)
        except ValueError:
            return "Wrong VM_BUS in PCI attribute"
    for attr in _PCI_CLEARED:
        pci.pop(attr, None)
    return None


def is_q35(vm: VirtualMachine) -> bool:
    """``test_machine_type({"q35", "virt"})`` on OS/MACHINE."""
    machine = (vm.template.get_vector("OS") or {}).get("MACHINE", "")
    return "q35" in machine or "virt" in machine


def _showbase4(value: int) -> str:
    """``showbase << internal << hex << setfill('0') << setw(4)`` (no 0x for zero)."""
    return "0000" if value == 0 else "0x" + format(value, "x").rjust(2, "0")


def set_pci_address(pci: dict[str, str], q35: bool) -> bool:
    """``set_pci_address``, flat topology: VM_DOMAIN/FUNCTION/SLOT/BUS/ADDRESS."""
    slot = _int(pci.get("PCI_ID"), -1)
    if slot < 0:
        return True
    pci.pop("VM_BUS_INDEX", None)
    pci["VM_DOMAIN"] = "0x0000"
    pci["VM_FUNCTION"] = "0"
    try:
        bus = int(pci.get("VM_BUS", ""), 16)
    except ValueError:
        return False
    slot += 1
    if q35:
        bus, slot = slot, 0
    pci["VM_SLOT"] = _showbase4(slot)
    pci["VM_BUS"] = _showbase4(bus)
    pci["VM_ADDRESS"] = f"{bus:02x}:{slot:02x}.0"
    return True


def _matches(dev: dict[str, str], pci: dict[str, str]) -> bool:
    for attr in ("CLASS", "VENDOR", "DEVICE"):
        rc, wanted = pci_value(pci, attr)
        if rc <= 0:
            continue
        have_rc, have = pci_value(dev, attr)
        if have_rc != 1 or have != wanted:
            return False
    return True


def host_add_pci(host: Host, vid: int, pci: dict[str, str]) -> bool:
    """``HostSharePCI::add`` of one device: a free host device by SHORT_ADDRESS, else by
    VENDOR/DEVICE/CLASS; copies its address into ``pci`` and marks it VMID."""
    short = pci.get("SHORT_ADDRESS", "")
    by_name = any(pci_value(pci, a)[0] > 0 for a in ("VENDOR", "DEVICE", "CLASS"))
    for dev in host.share.pci:
        if _int(dev.get("VMID"), -1) != -1:
            if short and not by_name and dev.get("SHORT_ADDRESS") == short:
                return False
            continue
        if short and not by_name:
            if dev.get("SHORT_ADDRESS") != short:
                continue
        elif not by_name or not _matches(dev, pci):
            continue
        dev["VMID"] = str(vid)
        address = pci.get("ADDRESS", "")
        if address:
            pci["PREV_ADDRESS"] = address
        for attr in (
            "DOMAIN",
            "BUS",
            "SLOT",
            "FUNCTION",
            "ADDRESS",
            "SHORT_ADDRESS",
            "VENDOR",
            "DEVICE",
            "CLASS",
        ):
            pci[attr] = dev.get(attr, "")
        for attr in ("NUMA_NODE", "UUID", "MDEV_MODE"):
            if dev.get(attr):
                pci[attr] = dev[attr]
        return True
    return False


def host_del_pci(host: Host, vid: int, pci: dict[str, str]) -> None:
    """``HostSharePCI::del`` of one device: the host device is free again."""
    for key in ("PREV_ADDRESS", "ADDRESS"):
        address = pci.get(key, "")
        if not address:
            continue
        dev = next((d for d in host.share.pci if d.get("ADDRESS") == address), None)
        if dev is not None and _int(dev.get("VMID"), -1) == vid:
            dev["VMID"] = "-1"
            pci.pop(key, None)
            return


def attach_pci(vm: VirtualMachine, pci: dict[str, str]) -> str | None:
    """``VirtualMachine::attach_pci``: PCI_ID = max + 1, VM bus address, PCI<n>_ADDRESS
    in CONTEXT. Returns oned's error text or None."""
    tmpl = vm.template
    max_id = max([-1, *(_int(p.get("PCI_ID"), -1) for p in tmpl.vectors("PCI"))])
    new = dict(pci)
    root = new.get("ROOT", "")
    if root:
        root = root.lower()
        if root not in ("shared", "dedicated"):
            return "Unknown PCI root mode, has to be SHARED or DEDICATED"
        if root == "dedicated":
            return "Dedicated PCI devices cannot be hotplug"
        new["ROOT"] = root
    new["PCI_ID"] = str(max_id + 1)
    if not set_pci_address(new, is_q35(vm)):
        return "Cannot assign PCI bus address to device"
    context = tmpl.get_vector("CONTEXT")
    if context is not None and new.get("VM_ADDRESS"):
        context[f"PCI{new['PCI_ID']}_ADDRESS"] = new["VM_ADDRESS"]
    tmpl.add("PCI", new)
    return None


def get_pci(vm: VirtualMachine, pci_id: int) -> dict[str, str] | None:
    return next(
        (p for p in vm.template.vectors("PCI") if _int(p.get("PCI_ID"), -1) == pci_id), None
    )


def detach_pci(vm: VirtualMachine, pci: dict[str, str]) -> None:
    context = vm.template.get_vector("CONTEXT")
    if context is not None:
        context.pop(f"PCI{pci.get('PCI_ID', '')}_ADDRESS", None)
    vm.template.items = [(n, v) for n, v in vm.template.items if v is not pci]


def host_add_vm_pci(host: Host, vm: VirtualMachine) -> None:
    """``HostShare::add`` for the VM's PCI devices (``Host::add_capacity``): each one
    not yet held on this host takes a free device, and its VM address is set again."""
    q35 = is_q35(vm)
    for pci in vm.template.vectors("PCI"):
        address = pci.get("ADDRESS", "")
        held = next((d for d in host.share.pci if address and d.get("ADDRESS") == address), None)
        if held is not None and _int(held.get("VMID"), -1) == vm.oid:
            continue
        if host_add_pci(host, vm.oid, pci):
            set_pci_address(pci, q35)


def host_del_vm_pci(host: Host, vm: VirtualMachine) -> None:
    """``HostShare::del`` for the VM's PCI devices (``Host::del_capacity``)."""
    for pci in vm.template.vectors("PCI"):
        host_del_pci(host, vm.oid, pci)
