"""VM quota usage (mirrors ``QuotaVirtualMachine``, ``Quota::check_quota`` and
``Quota::del_quota`` for the ``VM`` section).

A VM counts VMS, CPU, MEMORY and SYSTEM_DISK_SIZE from allocation until DONE, and
RUNNING_VMS/RUNNING_CPU/RUNNING_MEMORY while it is not POWEROFF, SUSPENDED, STOPPED
or UNDEPLOYED. These functions work on working copies (``Quotas``) that a ``Tx``
commits; uid 0 and gid 0 are never counted, as in oned.
"""

from __future__ import annotations

from oned.managers.image.quota import float_to_str
from oned.managers.vmm.disk_quota import add as add_images
from oned.managers.vmm.disk_quota import (
    datastore_add,
    datastore_check,
    datastore_release,
    datastore_usage,
    image_usage,
    split,
)
from oned.managers.vmm.disk_quota import refusal as image_refusal
from oned.managers.vmm.disk_quota import release as release_images
from oned.managers.vmm.disk_state import vm_system_size
from oned.objects.quotas import VM, Quotas
from oned.objects.vm import VirtualMachine, VmState

DEFAULT = -1.0
UNLIMITED = -2.0

#: States that hold no RUNNING_* usage.
OFF_STATES = (VmState.POWEROFF, VmState.SUSPENDED, VmState.STOPPED, VmState.UNDEPLOYED)


def _num(text: str | None, default: float = 0.0) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def usage(vm: VirtualMachine, allocated: bool = True, running: bool = True) -> dict[str, float]:
    """``get_quota_template``: what the VM counts."""
    out: dict[str, float] = {}
    pci = float(sum(1 for p in vm.template.vectors("PCI") if p.get("TYPE", "") != "NIC"))
    if allocated:
        out.update({"VMS": 1.0, "CPU": vm.cpu, "MEMORY": float(vm.memory)})
        snapshots = sum(_num(s.get("SYSTEM_DISK_SIZE")) for s in vm.template.vectors("SNAPSHOT"))
        snapshots += vm_system_size(vm)  # disks in the system datastore
        if snapshots:  # system snapshots (``get_snapshots_system_size``)
            out["SYSTEM_DISK_SIZE"] = snapshots
        if pci:
            out["PCI_DEV"] = pci
        out.update(image_usage(vm))  # IMAGE RVMS, one per DISK image
        out.update(datastore_usage(vm))  # DATASTORE SIZE of SELF-target disks
    if running:
        out.update({"RUNNING_VMS": 1.0, "RUNNING_CPU": vm.cpu, "RUNNING_MEMORY": float(vm.memory)})
        if pci:
            out["RUNNING_PCI_DEV"] = pci
    return out


def _entry(quotas: Quotas, create: bool) -> dict[str, str] | None:
    entries = quotas.entries[VM.entry]
    if entries:
        return entries[0]
    if not create:
        return None
    entry: dict[str, str] = {}
    for metric in VM.metrics:
        entry[metric] = "-1"
        entry[f"{metric}_USED"] = "0"
    entries.append(entry)
    return entry


def check(quotas: Quotas, defaults: Quotas, amounts: dict[str, float]) -> str | None:
    """Add ``amounts`` or return why not (``quotas`` changes only on success)."""
    amounts, images, stores = split(amounts)
    entry = _entry(quotas, create=True)
    assert entry is not None
    default_entry = _entry(defaults, create=False)
    for metric, amount in amounts.items():
        limit = _num(entry.get(metric), DEFAULT)
        if limit == DEFAULT:
            limit = _num(default_entry.get(metric), UNLIMITED) if default_entry else UNLIMITED
        used = _num(entry.get(f"{metric}_USED"))
        if limit != UNLIMITED and limit >= 0 and used + amount > limit:
            return f"limit of {limit:g} reached for {metric} quota in VM"
    error = image_refusal(quotas, defaults, images) or datastore_check(quotas, defaults, stores)
    if error:
        return error
    add_images(quotas, images)
    for metric, amount in amounts.items():
        entry[f"{metric}_USED"] = float_to_str(_num(entry.get(f"{metric}_USED")) + amount)
    return None


def add(quotas: Quotas, amounts: dict[str, float]) -> None:
    """Count ``amounts`` without checking limits (usage coming back on resume)."""
    amounts, images, stores = split(amounts)
    add_images(quotas, images)
    datastore_add(quotas, stores)
    entry = _entry(quotas, create=True)
    assert entry is not None
    for metric, amount in amounts.items():
        entry[f"{metric}_USED"] = float_to_str(_num(entry.get(f"{metric}_USED")) + amount)


def release(quotas: Quotas, amounts: dict[str, float]) -> None:
    """``del_quota`` then ``cleanup_quota`` (an all-default unused entry goes)."""
    amounts, images, stores = split(amounts)
    release_images(quotas, images)
    datastore_release(quotas, stores)
    entry = _entry(quotas, create=False)
    if entry is None:
        return
    for metric, amount in amounts.items():
        left = max(0.0, _num(entry.get(f"{metric}_USED")) - amount)
        entry[f"{metric}_USED"] = float_to_str(left)
    for metric in VM.metrics:
        if _num(entry.get(f"{metric}_USED")) != 0 or _num(entry.get(metric), DEFAULT) != DEFAULT:
            return
    quotas.entries[VM.entry].remove(entry)
