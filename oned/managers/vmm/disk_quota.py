"""The IMAGE quota (RVMS) of a VM's disks (mirrors ``QuotaImage::check``/``del`` and
``Quota::check_quota``/``del_quota``/``cleanup_quota`` for the ``IMAGE`` section).

Every DISK naming an IMAGE_ID counts one RVMS on that image for the VM's owner and
group, from allocation (or attach) until DONE (or detach). The VM quota functions
(``oned.managers.lifecycle.quota``) carry these amounts as ``IMAGE:<id>`` keys next to
the VM metrics, so every place that moves a VM's usage moves them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.managers.image import quota as ds_quota
from oned.managers.image.quota import float_to_str
from oned.managers.vmm import disk_state as ds
from oned.objects.quotas import DATASTORE, IMAGE, Quotas

if TYPE_CHECKING:
    from oned.objects.vm import VirtualMachine

PREFIX = "IMAGE:"
DS_PREFIX = "DATASTORE:"
DEFAULT = -1.0
UNLIMITED = -2.0


def _num(text: str | None, default: float = 0.0) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def image_usage(vm: VirtualMachine) -> dict[str, float]:
    """One RVMS per DISK with an IMAGE_ID (``QuotaImage::check`` of the template)."""
    out: dict[str, float] = {}
    for disk in vm.template.vectors("DISK"):
        iid = disk.get("IMAGE_ID", "")
        if iid:
            out[PREFIX + iid] = out.get(PREFIX + iid, 0.0) + 1.0
    return out


def datastore_usage(vm: VirtualMachine) -> dict[str, float]:
    """``image_ds_quotas``: the image datastore space of SELF-target disks (their size
    and snapshots), counted in the VM owner's DATASTORE quota."""
    out: dict[str, float] = {}
    for disk in vm.template.vectors("DISK"):
        if ds.tm_target(disk) != "SELF" or "SIZE" not in disk:
            continue
        size = ds.to_int(disk.get("SIZE")) + ds.to_int(disk.get("DISK_SNAPSHOT_TOTAL_SIZE"))
        key = DS_PREFIX + disk.get("DATASTORE_ID", "")
        out[key] = out.get(key, 0.0) + float(size)
    return out


def split(
    amounts: dict[str, float],
) -> tuple[dict[str, float], dict[str, float], dict[int, float]]:
    """(VM metrics, image ids with their RVMS, datastores with their SIZE)."""
    vm = {k: v for k, v in amounts.items() if not k.startswith((PREFIX, DS_PREFIX))}
    images = {k[len(PREFIX) :]: v for k, v in amounts.items() if k.startswith(PREFIX)}
    stores = {
        ds.to_int(k[len(DS_PREFIX) :], -1): v for k, v in amounts.items() if k.startswith(DS_PREFIX)
    }
    return vm, images, stores


def datastore_check(quotas: Quotas, defaults: Quotas, stores: dict[int, float]) -> str | None:
    """``quota_authorization(DATASTORE)`` of each store (``quotas`` changes)."""
    for ds_id, size in stores.items():
        error = ds_quota.check(quotas, defaults, ds_id, ds_quota.usage_of(size, 0))
        if error:
            return error
    return None


def datastore_add(quotas: Quotas, stores: dict[int, float]) -> None:
    """Count ``stores`` without checking limits (usage coming back)."""
    for ds_id, size in stores.items():
        entries = quotas.entries[DATASTORE.entry]
        entry = next((e for e in entries if e.get("ID") == str(ds_id)), None)
        if entry is None:
            entry = {"ID": str(ds_id)}
            for metric in DATASTORE.metrics:
                entry[metric] = "-1"
                entry[f"{metric}_USED"] = "0"
            entries.append(entry)
        entry["SIZE_USED"] = float_to_str(_num(entry.get("SIZE_USED")) + size)


def datastore_release(quotas: Quotas, stores: dict[int, float]) -> None:
    for ds_id, size in stores.items():
        ds_quota.release(quotas, ds_id, ds_quota.usage_of(size, 0))


def _entry(quotas: Quotas, iid: str) -> dict[str, str] | None:
    for entry in quotas.entries[IMAGE.entry]:
        if entry.get("ID") == iid:
            return entry
    return None


def refusal(quotas: Quotas, defaults: Quotas, images: dict[str, float]) -> str | None:
    """Why adding ``images`` is over a limit, or None (nothing changes)."""
    for iid, amount in images.items():
        entry = _entry(quotas, iid) or {}
        default_entry = _entry(defaults, iid)
        limit = _num(entry.get("RVMS"), DEFAULT)
        if limit == DEFAULT:
            limit = _num(default_entry.get("RVMS"), UNLIMITED) if default_entry else UNLIMITED
        used = _num(entry.get("RVMS_USED"))
        if limit != UNLIMITED and limit >= 0 and used + amount > limit:
            return f"limit of {limit:g} reached for RVMS quota in IMAGE with ID: {iid}"
    return None


def add(quotas: Quotas, images: dict[str, float]) -> None:
    for iid, amount in images.items():
        entry = _entry(quotas, iid)
        if entry is None:
            entry = {"ID": iid, "RVMS": "-1", "RVMS_USED": "0"}
            quotas.entries[IMAGE.entry].append(entry)
        entry["RVMS_USED"] = float_to_str(_num(entry.get("RVMS_USED")) + amount)


def release(quotas: Quotas, images: dict[str, float]) -> None:
    """``del_quota`` then ``cleanup_quota`` (an unused all-default entry goes)."""
    for iid, amount in images.items():
        entry = _entry(quotas, iid)
        if entry is None:
            continue
        entry["RVMS_USED"] = float_to_str(max(0.0, _num(entry.get("RVMS_USED")) - amount))
        if _num(entry.get("RVMS_USED")) == 0 and _num(entry.get("RVMS"), DEFAULT) == DEFAULT:
            quotas.entries[IMAGE.entry].remove(entry)
