"""Images used by VMs (mirrors ``ImageManager::acquire_image``/``release_image`` and
``Image::set_state_unlock``'s VM notification).

For the VM family: call these on a ``Stage`` inside the VM's own transaction (holding
the image locks), so the image's USED/USED_PERS/LOCKED_USED* state and VMS list change
with the VM. They return the error text oned gives, or None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.objects import image as im

if TYPE_CHECKING:
    from oned.managers.image.stage import Stage
    from oned.objects.image import Image

_FILE_TYPES = (im.KERNEL, im.RAMDISK, im.CONTEXT, im.BACKUP)


def _shareable(img: Image) -> bool:
    return (img.template.get("PERSISTENT_TYPE") or "").upper() == "SHAREABLE"


def acquire(stage: Stage, vm_id: int, iid: int, attach: bool) -> str | None:
    """A VM takes image ``iid`` as a DISK (None, or why it cannot)."""
    img = stage.image(iid)
    if img is None:
        return f"Image with ID: {iid} does not exist"
    if img.type in _FILE_TYPES:
        return (
            f"Image {img.oid} ({img.name}) of type {im.type_name(img.type)} cannot be used as DISK."
        )
    state = img.state
    locked = f"Cannot acquire image {img.oid}, it is locked"
    in_use = f"Cannot acquire image {img.oid}, it is persistent and already in use"
    if state == im.READY:
        img.set_state(im.USED_PERS if img.persistent else im.USED)
    elif state == im.LOCKED:
        if attach:
            return locked
        img.set_state(im.LOCKED_USED_PERS if img.persistent else im.LOCKED_USED)
    elif state in (im.USED_PERS, im.USED):
        if state == im.USED_PERS and not _shareable(img):
            return in_use
    elif state in (im.LOCKED_USED_PERS, im.LOCKED_USED):
        if state == im.LOCKED_USED_PERS and not _shareable(img):
            return in_use
        if attach:
            return locked
    else:
        return f"Cannot acquire image {img.oid}, it is in state: {im.state_name(state)}"
    img.vms.add(vm_id)
    img.running_vms = len(img.vms)
    return None


def release(stage: Stage, vm_id: int, iid: int, failed: bool, now: int) -> None:
    """A VM gives image ``iid`` back (``failed``: a persistent image goes to ERROR)."""
    img = stage.image(iid)
    if img is None or img.type in _FILE_TYPES:
        return
    state = img.state
    if state not in (im.USED_PERS, im.LOCKED_USED_PERS, im.USED, im.LOCKED_USED):
        return
    img.vms.discard(vm_id)
    img.running_vms = len(img.vms)
    if state in (im.USED_PERS, im.LOCKED_USED_PERS):
        img.modtime = now
        if failed:
            img.set_state(im.ERROR)
        elif img.running_vms == 0:
            img.set_state(im.READY if state == im.USED_PERS else im.LOCKED)
    elif img.running_vms == 0 and img.cloning_ops == 0:
        img.set_state(im.READY if state == im.USED else im.LOCKED)
