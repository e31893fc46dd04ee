"""VM disks and their images (mirrors ``VirtualMachine::get_disk_images`` and
``release_disk_images``) on the image family's seams (``oned.vm_disks`` completes each
DISK from its image and datastore; ``oned.managers.image.usage`` takes and gives back
the image in the VM's own transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import InternalError
from oned.managers.image import usage
from oned.objects import image as im
from oned.vm_disks import disk_image_id, extended_disks

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.image.stage import Stage
    from oned.objects.vm import VirtualMachine
    from oned.template import Template


def image_ids(core: Core, disks: list[dict[str, str]], uid: int) -> set[int]:
    """The images the DISKs name (to lock them)."""
    ids = set()
    for disk in disks:
        iid = disk_image_id(core, disk, uid)
        if iid is not None:
            ids.add(iid)
    return ids


def acquire_all(core: Core, stage: Stage, tmpl: Template, vid: int, uid: int) -> None:
    """Complete every DISK and take its image for VM ``vid`` (oned's texts on refusal)."""
    for disk in tmpl.vectors("DISK"):
        named = "IMAGE_ID" in disk or bool(disk.get("IMAGE"))
        iid = disk_image_id(core, disk, uid)
        if named and iid is None:
            if "IMAGE_ID" in disk:
                raise InternalError(f"Image with ID: {disk['IMAGE_ID']} does not exist")
            raise InternalError(
                f"User {uid} does not own an image with name: {disk.get('IMAGE', '')} . "
                "Set IMAGE_UNAME or IMAGE_UID of owner in DISK."
            )
    extended_disks(core, tmpl, uid)
    for disk in tmpl.vectors("DISK"):
        iid = disk_image_id(core, disk, uid)
        if iid is None:
            continue
        error = usage.acquire(stage, vid, iid, attach=False)
        if error:
            raise InternalError(error)
        img = stage.image(iid)
        if img is not None:
            disk["IMAGE_STATE"] = str(img.state)
    assign_targets(core, tmpl)


def _letters(index: int) -> str:
    """``a``..``z``, ``aa``..: the device suffix of ``index``."""
    out = chr(ord("a") + index % 26)
    quotient = index // 26
    while quotient > 0:
        remainder = (quotient - 1) % 26
        out = chr(ord("a") + remainder) + out
        quotient = (quotient - 1) // 26
    return out


def _assign(queue: list[tuple[str, dict[str, str]]], used: set[str]) -> None:
    for prefix, disk in queue:
        index = 0
        while f"{prefix}{_letters(index)}" in used:
            index += 1
        disk["TARGET"] = f"{prefix}{_letters(index)}"
        used.add(disk["TARGET"])


def assign_targets(core: Core, tmpl: Template) -> None:
    """``assign_disk_targets``: the first OS disk, then CDROMs and the context, then
    the rest get the first free ``<DEV_PREFIX><letter>``."""
    default = core.config.get("DEFAULT_DEVICE_PREFIX") or "sd"
    cdrom_prefix = core.config.get("DEFAULT_CDROM_DEVICE_PREFIX") or "sd"
    used: set[str] = set()
    os_disk: list[tuple[str, dict[str, str]]] = []
    cdroms: list[tuple[str, dict[str, str]]] = []
    others: list[tuple[str, dict[str, str]]] = []
    for disk in tmpl.vectors("DISK"):
        if disk.get("TARGET"):
            used.add(disk["TARGET"])
            continue
        raw = disk.get("IMAGE_ID", "").strip()
        img = core.images.get(int(raw)) if raw.isdigit() else None
        if img is None:
            if not raw and disk.get("TYPE", "").upper() in ("SWAP", "FS"):
                if not disk.get("DEV_PREFIX"):  # volatile: acquire_disk's DATABLOCK
                    disk["DEV_PREFIX"] = default
                others.append((disk["DEV_PREFIX"], disk))
            continue
        prefix = disk.get("DEV_PREFIX") or default
        if img.type == im.OS and not os_disk:
            os_disk.append((prefix, disk))
        elif img.type == im.CDROM:
            cdroms.append((disk.get("DEV_PREFIX") or cdrom_prefix, disk))
        elif img.type in (im.OS, im.DATABLOCK):
            others.append((prefix, disk))
    _assign(os_disk, used)
    context = tmpl.get_vector("CONTEXT")
    if context is not None:
        if context.get("TARGET"):
            used.add(context["TARGET"])
        else:
            cdroms.append((context.get("DEV_PREFIX") or cdrom_prefix, context))
    _assign(cdroms, used)
    _assign(others, used)


def release_all(stage: Stage, vm: VirtualMachine, now: int) -> None:
    """Give back every image the VM's DISKs hold."""
    from oned.managers.vmm.disk_state import return_to_image, to_int, vm_snapshots

    snapshots = vm_snapshots(vm)
    for disk in vm.template.vectors("DISK"):
        raw = disk.get("IMAGE_ID", "").strip()
        if raw.isdigit():
            img = stage.image(int(raw))
            if img is not None:
                return_to_image(img, disk, snapshots.get(to_int(disk.get("DISK_ID"), -1)), True)
            usage.release(stage, vm.oid, int(raw), False, now)


def images_of(vm: VirtualMachine) -> set[int]:
    return {
        int(d["IMAGE_ID"])
        for d in vm.template.vectors("DISK")
        if d.get("IMAGE_ID", "").strip().isdigit()
    }
