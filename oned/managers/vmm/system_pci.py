"""PCI devices of a VM (mirrors ``VirtualMachine::attach_pci``/``get_pci``/
``detach_pci``, ``VirtualMachine::check_pci_attributes`` and
``HostSharePCI::add/del/set_pci_address``, flat topology).

Pure functions over a VM's TEMPLATE and a host's ``HOST_SHARE/PCI_DEVICES``, called on
the working copies of a ``Tx``; ``host_add_vm_pci``/``host_del_vm_pci`` run inside
``add_capacity``/``del_capacity``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oned.objects.host import Host
    from oned.objects.vm import VirtualMachine
    from oned.template import Template

#: ``PCI_PASSTHROUGH_BUS``'s default in oned.conf.
DEFAULT_BUS = "0x01"


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return default


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


def parse_pci(tmpl: Template, default_bus: str = DEFAULT_BUS) -> str | None:
    """``VirtualMachine::parse_pci`` at allocate: PCI_ID 0, 1, ... in order, then
    ``check_pci_attributes`` of each; oned's refusal or None."""
    devices = tmpl.vectors("PCI")
    for pci_id, pci in enumerate(devices):
        pci["PCI_ID"] = str(pci_id)
    for pci in devices:
        error = check_pci_attributes(pci, default_bus)
        if error:
            return error
    return None
