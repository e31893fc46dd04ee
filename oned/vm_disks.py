"""DISK attributes a VM template gets from its images (mirrors ``VirtualMachineDisks``).

``extended_disks`` is ``VirtualMachineDisks::extended_info``: each DISK that names an
image (IMAGE_ID, or IMAGE with IMAGE_UNAME/IMAGE_UID/the caller) is completed by
``Image::disk_attribute`` and ``Datastore::disk_attribute`` and gets its DISK_ID.
``disk_image_id`` is ``VirtualMachineDisk::get_image_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.objects.image import DISK_TYPE_NAMES
from oned.template import Template

if TYPE_CHECKING:
    from oned.core import Core

_CDROM = 1
_FILESYSTEM = 7
_LOCKED_STATES = (4, 9, 10)  # LOCKED, LOCKED_USED, LOCKED_USED_PERS
_CDROM_DISK_TYPES = {3: 4, 5: 6, 7: 8}  # RBD, GLUSTER, SHEEPDOG -> their CDROM kinds


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def disk_uid(core: Core, disk: dict[str, str], uid: int) -> int:
    """``VirtualMachineDisk::get_uid``: IMAGE_UID, else IMAGE_UNAME's id, else ``uid``."""
    if disk.get("IMAGE_UID", ""):
        value = _int(disk["IMAGE_UID"])
        return -1 if value is None else value
    if disk.get("IMAGE_UNAME", ""):
        user = core.users.by_name(disk["IMAGE_UNAME"])
        return -1 if user is None else user.oid
    return uid


def disk_image(core: Core, disk: dict[str, str], uid: int) -> Any:
    """The image a DISK names, or None."""
    iid = _int(disk.get("IMAGE_ID"))
    if iid is not None:
        return core.images.get(iid)
    if "IMAGE" not in disk:
        return None
    name = disk["IMAGE"]
    owner = disk_uid(core, disk, uid)
    if owner == -1:
        return None
    for image in core.images.objects():
        if image.name == name and image.uid == owner:
            return image
    return None


def disk_image_id(core: Core, disk: dict[str, str], uid: int) -> int | None:
    """``get_image_id``: an integer IMAGE_ID as written (even of a missing image), else
    the id of the image IMAGE names."""
    iid = _int(disk.get("IMAGE_ID"))
    if iid is not None:
        return iid
    image = disk_image(core, disk, uid)
    return None if image is None else int(image.oid)


def _bool_text(value: bool) -> str:
    return "YES" if value else "NO"


def _inherit(disk: dict[str, str], tmpl: Template, names: list[str]) -> None:
    for name in names:
        vector = tmpl.get_vector(name)
        if vector is not None:
            for key, value in vector.items():
                if not disk.get(key) and value:
                    disk[key] = value
            continue
        value = tmpl.get(name) or ""
        if not disk.get(name) and value:
            disk[name] = value


def image_disk_attribute(core: Core, disk: dict[str, str], image: Any) -> None:
    """``Image::disk_attribute``."""
    img_tmpl: Template = image.template
    img_type = int(image.type)
    ptype = (img_tmpl.get("PERSISTENT_TYPE") or "").upper()
    if not disk.get("DEV_PREFIX") and img_type not in (_CDROM, _FILESYSTEM):
        prefix = img_tmpl.get("DEV_PREFIX") or ""
        if not prefix:
            prefix = (core.config.get("DEFAULT_DEVICE_PREFIX") or "hd").strip()
        disk["DEV_PREFIX"] = prefix
    disk["IMAGE"] = image.name
    disk["IMAGE_ID"] = str(image.oid)
    disk["SOURCE"] = image.source
    disk["ORIGINAL_SIZE"] = str(image.size)
    if not disk.get("SIZE"):
        disk["SIZE"] = str(image.size)
    disk["DISK_SNAPSHOT_TOTAL_SIZE"] = str(image.snapshots.total_size())
    if image.format:
        disk["DRIVER"] = disk["FORMAT"] = image.format.lower()
    else:
        disk.pop("DRIVER", None)
        disk.pop("FORMAT", None)
    disk["IMAGE_STATE"] = str(image.state)
    if img_type == _CDROM or ptype == "IMMUTABLE":
        disk.update(SAVE="NO", CLONE="NO", READONLY="YES")
    else:
        if disk.get("READONLY", "") == "":
            ro = img_tmpl.get("READONLY")
            disk["READONLY"] = _bool_text(ro is not None and ro.upper() == "YES")
        if image.persistent:
            disk.update(PERSISTENT="YES", CLONE="NO", SAVE="YES")
            if ptype == "SHAREABLE" and image.format in ("raw", "dir"):
                disk["SHAREABLE"] = "YES"
        else:
            disk.update(CLONE="YES", SAVE="NO")
    if int(image.state) in _LOCKED_STATES:
        disk["CLONING"] = "YES"
    else:
        disk.pop("CLONING", None)
    disk_type = int(image.disk_type)
    if img_type == _CDROM:
        disk_type = _CDROM_DISK_TYPES.get(disk_type, 1)
    if img_type in (0, 2, _FILESYSTEM, _CDROM) and 0 <= disk_type < len(DISK_TYPE_NAMES):
        disk["TYPE"] = DISK_TYPE_NAMES[disk_type]
    else:
        disk["TYPE"] = ""
    target = img_tmpl.get("TARGET") or ""
    if not disk.get("TARGET") and target:
        disk["TARGET"] = target
    if disk.get("TYPE") == "FILESYSTEM":
        for key, default in (("MOUNT_POINT", "/mnt/one-fs-"), ("MOUNT_TAG", "one-tag-")):
            if not disk.get(key):
                disk[key] = img_tmpl.get(key) or f"{default}{image.oid}"
    _inherit(disk, img_tmpl, core.attr_list("INHERIT_IMAGE_ATTR"))


def datastore_disk_attribute(core: Core, disk: dict[str, str], ds_id: int) -> None:
    """``Datastore::disk_attribute`` (without a TM_MAD_SYSTEM: templates have none)."""
    store = core.datastores.get(ds_id)
    if store is None:
        return
    ds_tmpl: Template = store.template
    disk["DATASTORE"] = store.name
    disk["DATASTORE_ID"] = str(store.oid)
    disk["TM_MAD"] = store.tm_mad
    disk["CLUSTER_ID"] = ",".join(str(c) for c in sorted(store.clusters))
    for key in ("CLONE_TARGET", "LN_TARGET"):
        value = ds_tmpl.get(key) or ""
        if value and not disk.get(key):
            disk[key] = value
    _inherit(disk, ds_tmpl, core.attr_list("INHERIT_DATASTORE_ATTR"))


def extended_disks(core: Core, tmpl: Template, uid: int) -> None:
    """Complete every DISK of ``tmpl`` in place and number them (DISK_ID)."""
    index = 0
    for name, value in tmpl.items:
        if name != "DISK" or not isinstance(value, dict):
            continue
        image = disk_image(core, value, uid)
        if image is not None:
            image_disk_attribute(core, value, image)
            datastore_disk_attribute(core, value, int(image.datastore_id))
        value["DISK_ID"] = str(index)
        index += 1


def disk_images(core: Core, tmpl: Template, uid: int) -> list[Any]:
    """The images the DISKs of ``tmpl`` name (for USE authorization)."""
    found = []
    for disk in tmpl.vectors("DISK"):
        image = disk_image(core, disk, uid)
        if image is not None:
            found.append(image)
    return found
