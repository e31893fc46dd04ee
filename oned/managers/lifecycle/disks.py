"""VM disks and their images (mirrors ``VirtualMachine::get_disk_images`` and
``release_disk_images``) on the image family's seams (``oned.vm_disks`` completes each
DISK from its image and datastore; ``oned.managers.image.usage`` takes and gives back
the image in the VM's own transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import InternalError
from oned.managers.image import usage
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


def release_all(stage: Stage, vm: VirtualMachine, now: int) -> None:
    """Give back every image the VM's DISKs hold."""
    for disk in vm.template.vectors("DISK"):
        raw = disk.get("IMAGE_ID", "").strip()
        if raw.isdigit():
            usage.release(stage, vm.oid, int(raw), False, now)


def images_of(vm: VirtualMachine) -> set[int]:
    return {
        int(d["IMAGE_ID"])
        for d in vm.template.vectors("DISK")
        if d.get("IMAGE_ID", "").strip().isdigit()
    }
