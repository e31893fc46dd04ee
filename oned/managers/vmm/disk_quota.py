"""The IMAGE quota (RVMS) of a VM's disks (mirrors ``QuotaImage::check``/``del`` and
``Quota::check_quota``/``del_quota``/``cleanup_quota`` for the ``IMAGE`` section).

Every DISK naming an IMAGE_ID counts one RVMS on that image for the VM's owner and
group, from allocation (or attach) until DONE (or detach). The VM quota functions
(``oned.managers.lifecycle.quota``) carry these amounts as ``IMAGE:<id>`` keys next to
the VM metrics, so every place that moves a VM's usage moves them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.managers.image.quota import float_to_str
from oned.objects.quotas import IMAGE, Quotas

if TYPE_CHECKING:
    from oned.objects.vm import VirtualMachine

PREFIX = "IMAGE:"
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


def split(amounts: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(VM metrics, image ids with their RVMS)."""
    vm = {k: v for k, v in amounts.items() if not k.startswith(PREFIX)}
    images = {k[len(PREFIX) :]: v for k, v in amounts.items() if k.startswith(PREFIX)}
    return vm, images


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
