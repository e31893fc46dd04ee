"""A new image from its template (mirrors ``ImagePool::allocate``, ``Image::insert``,
``Image::clone_template``, ``Image::test_set_persistent`` and the argument half of
``ImageManager::stat_image``).

Pure functions over the core's pools and configuration; errors are the texts oned
puts after ``Error allocating a new image.``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from oned.api.shared import validate_name
from oned.objects import image as im
from oned.objects.base import Permissions
from oned.objects.datastore import FILE_DS, IMAGE_DS
from oned.template import Template, xml_escape

if TYPE_CHECKING:
    from oned.auth.authorize import Caller
    from oned.core import Core
    from oned.objects.datastore import Datastore

BACKUP_DS = 3


class InsertError(ValueError):
    """The image cannot be created (the message is oned's)."""


#: oned.conf values by config object (read once: a lookup scans the whole file).
_SETTINGS: dict[int, tuple[object, dict[str, object]]] = {}


def _cache(core: Core) -> dict[str, object]:
    entry = _SETTINGS.get(id(core.config))
    if entry is None or entry[0] is not core.config:
        entry = _SETTINGS[id(core.config)] = (core.config, {})
    return entry[1]


def setting(core: Core, name: str) -> str | None:
    """``core.config.get(name)``, cached (oned.conf does not change while running)."""
    cache = _cache(core)
    if name not in cache:
        cache[name] = core.config.get(name)
    value = cache[name]
    return value if isinstance(value, str) else None


def _yes(value: str | None) -> bool:
    return (value or "").strip().upper() == "YES"


def default_type(core: Core) -> str:
    value = (setting(core, "DEFAULT_IMAGE_TYPE") or "OS").upper()
    return value if value in ("OS", "CDROM", "DATABLOCK") else "OS"


def str_to_type(core: Core, text: str | None) -> tuple[int, str]:
    """``Image::str_to_type``: unknown names map to OS; returns the upper-cased text."""
    name = (text or "").upper() or default_type(core)
    return im.TYPES.get(name, im.OS), name


def config_attr(core: Core, uid: int, gid: int, name: str) -> str | None:
    """``Nebula::get_configuration_attribute``: user, then group, then oned.conf."""
    for holder in (core.users.get(uid), core.groups.get(gid)):
        if holder is None:
            continue
        vector = holder.template.get_vector("OPENNEBULA") or {}
        if name in vector:
            return vector[name]
    return setting(core, name)


def test_set_persistent(core: Core, tmpl: Template, uid: int, gid: int, allocate: bool) -> bool:
    """``Image::test_set_persistent``: decide PERSISTENT and write it back."""
    conf = "DEFAULT_IMAGE_PERSISTENT_NEW" if allocate else "DEFAULT_IMAGE_PERSISTENT"
    raw = tmpl.get("PERSISTENT")
    tmpl_persis = _yes(raw)
    per_oned = config_attr(core, uid, gid, conf)
    persistent = tmpl_persis if not per_oned else _yes(per_oned)
    if allocate and raw is not None:
        persistent = tmpl_persis
    tmpl.set("PERSISTENT", "YES" if persistent else "NO")
    if not persistent and (tmpl.get("PERSISTENT_TYPE") or "").upper() == "SHAREABLE":
        tmpl.erase("PERSISTENT_TYPE")
    return persistent


def avail_mb(core: Core, ds: Datastore) -> tuple[bool, int]:
    """``Datastore::get_avail_mb``: (whether capacity is checked, free MB)."""
    avail = ds.free_mb
    limit = ds.template.get("LIMIT_MB")
    if limit is not None:
        try:
            avail = int(float(limit)) - ds.used_mb
        except ValueError:
            pass
    avail = max(avail, 0)
    check = ds.template.get("DATASTORE_CAPACITY_CHECK")
    if check is None:
        check = setting(core, "DATASTORE_CAPACITY_CHECK") or "NO"
    return _yes(check), avail


def _conf_vector(core: Core, section: str, name: str) -> dict[str, str] | None:
    key = f"{section}/{name}"
    cache = _cache(core)
    if key not in cache:
        found = [v for v in core.config.vectors(section) if v.get("NAME") == name]
        cache[key] = found[0] if found else None
    value = cache[key]
    return value if isinstance(value, dict) else None


def persistent_only(core: Core, ds: Datastore) -> bool:
    mad = ds.template.get("DS_MAD") or ds.ds_mad
    return _yes((_conf_vector(core, "DS_MAD_CONF", mad) or {}).get("PERSISTENT_ONLY"))


def ds_driver(core: Core, ds: Datastore) -> str:
    """``Datastore::get_ds_driver``: TM_MAD_CONF/DRIVER, else the DS's DRIVER."""
    tm = ds.template.get("TM_MAD") or ds.tm_mad
    driver = (_conf_vector(core, "TM_MAD_CONF", tm) or {}).get("DRIVER", "")
    return driver or ds.template.get("DRIVER") or ""


def _size(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def stat_request(core: Core, tmpl: Template) -> tuple[str | None, str]:
    """``stat_image`` without the driver: (image data to STAT, or None, and the
    SIZE text or the error)."""
    _, type_att = str_to_type(core, tmpl.get("TYPE"))
    itype = im.TYPES.get(type_att, im.OS)
    path = tmpl.get("PATH") or ""
    if itype == im.FILESYSTEM:
        if not path:
            raise InsertError("Missing PATH attribute.")
        return f"<IMAGE><PATH>{xml_escape(path)}</PATH></IMAGE>", ""
    if itype == im.BACKUP:
        size = tmpl.get("SIZE")
        if size is None:
            raise InsertError("")
        return None, size
    source = tmpl.get("SOURCE") or ""
    if itype in (im.CDROM, im.KERNEL, im.RAMDISK, im.CONTEXT) and not source and not path:
        raise InsertError(f"Either PATH or SOURCE are required for {type_att}")
    if source or not path:
        if _size(tmpl.get("SIZE")) is None:
            raise InsertError("Wrong number or missing SIZE attribute.")
        return None, tmpl.get("SIZE") or ""
    data = f"<IMAGE><PATH>{xml_escape(path)}</PATH>"
    if itype in (im.OS, im.DATABLOCK):
        data += f"<SIZE>{xml_escape(tmpl.get('SIZE') or '')}</SIZE>"
        job = tmpl.get("BACKUP_JOB_ID")
        if job:
            data += f"<BACKUP_JOB_ID>{job}</BACKUP_JOB_ID>"
    return data + "</IMAGE>", ""


def clone_template(img: im.Image, name: str) -> Template:
    """``Image::clone_template``."""
    tmpl = img.template.copy()
    tmpl.set("NAME", name)
    tmpl.set("TYPE", im.type_name(img.type))
    tmpl.set("PATH", img.source)
    tmpl.set("FORMAT", img.format)
    tmpl.set("SIZE", str(img.size))
    tmpl.set("PERSISTENT", "YES" if img.persistent else "NO")
    return tmpl


@dataclass
class NewImage:
    """Everything ``build`` needs besides the template."""

    oid: int
    caller: Caller
    ds: Datastore
    now: int
    cloning_id: int = -1


def check_name_and_type(core: Core, tmpl: Template, uid: int, ds_type: int) -> str:
    """``ImagePool::allocate`` before the insert: NAME and datastore type rules."""
    name = tmpl.get("NAME") or ""
    problem = validate_name(name)
    if problem:
        raise InsertError(problem)
    itype, _ = str_to_type(core, tmpl.get("TYPE"))
    if itype in (im.OS, im.DATABLOCK, im.CDROM, im.FILESYSTEM) and ds_type != IMAGE_DS:
        raise InsertError(
            "Only IMAGES of type KERNEL, RAMDISK and CONTEXT can be registered in a FILE_DS "
            "datastore"
        )
    if itype in (im.KERNEL, im.RAMDISK, im.CONTEXT) and ds_type != FILE_DS:
        raise InsertError(
            "IMAGES of type KERNEL, RAMDISK and CONTEXT cannot be registered in an IMAGE_DS "
            "datastore"
        )
    if itype == im.BACKUP and ds_type != BACKUP_DS:
        raise InsertError("IMAGES of type BACKUP can only be registered in an BACKUP_DS datastore")
    found = core.images.by_name(name)
    if found is not None and found.uid == uid:
        raise InsertError(f"NAME is already taken by IMAGE {found.oid}.")
    # Otherwise the UNIQUE(name, uid) index refuses a clash at commit (name_clash).
    return name


def name_clash(core: Core, name: str, uid: int, skip: int = -1) -> int:
    """The image ``uid`` already owns with ``name`` (-1: none)."""
    for other in core.images.objects():
        if other.name == name and other.uid == uid and other.oid != skip:
            return other.oid
    return -1


def build(core: Core, tmpl: Template, new: NewImage) -> im.Image:
    """``Image::insert``: the image, LOCKED (READY for BACKUP images)."""
    tmpl = tmpl.copy()
    caller, ds = new.caller, new.ds
    img = im.Image(
        oid=new.oid,
        name="",
        uid=caller.uid,
        gid=caller.gid,
        uname=caller.uname,
        gname=caller.gname,
        perms=Permissions.for_new_object(
            caller.uid, caller.gid, caller.umask, core.config.enable_other_permissions
        ),
        regtime=new.now,
        modtime=new.now,
        datastore_id=ds.oid,
        datastore=ds.name,
        disk_type=ds.disk_type,
        cloning_id=new.cloning_id,
    )
    img.name = tmpl.get("NAME") or ""
    tmpl.erase("NAME")
    type_text = (tmpl.get("TYPE") or "").upper() or default_type(core)
    tmpl.erase("TYPE")
    if type_text not in im.TYPES:
        raise InsertError("Unknown type ")
    img.type = im.TYPES[type_text]
    persistent_attr = tmpl.get("PERSISTENT") or ""
    tmpl.erase("PERSISTENT")
    if img.type in (im.OS, im.DATABLOCK):
        img.persistent = int(_yes(persistent_attr))
        if not tmpl.get("DEV_PREFIX"):
            prefix = setting(core, "DEFAULT_DEVICE_PREFIX") or "hd"
            tmpl.set("DEV_PREFIX", prefix)
    elif img.type == im.BACKUP:
        img.persistent = 1
        tmpl.erase("DEV_PREFIX")
    else:
        img.persistent = int(img.type == im.FILESYSTEM and _yes(persistent_attr))
        tmpl.erase("DEV_PREFIX")
    img.size = _leading_int(tmpl.get("SIZE") or "")
    tmpl.erase("SIZE")
    img.fs = tmpl.get("FS") or ""
    tmpl.erase("FS")
    tmpl.erase("DRIVER")
    img.path = tmpl.get("PATH") or ""
    img.source = tmpl.get("SOURCE") or ""
    img.format = tmpl.get("FORMAT") or ""
    for name in ("PATH", "SOURCE", "FORMAT", "TM_MAD"):
        tmpl.erase(name)
    if (tmpl.get("SAVE_AS_HOT") or "").upper() == "YES":
        img.format = "save_as"
    elif new.cloning_id == -1:
        if img.source:
            if img.path:
                raise InsertError("PATH and SOURCE cannot be both set.")
            if not img.format:
                raise InsertError("SOURCE needs FORMAT to be set.")
        elif img.type == im.BACKUP:
            raise InsertError("SOURCE cannot be empty for BACKUP images")
        elif img.path:
            img.format = ""
        elif img.type in (im.DATABLOCK, im.OS):
            driver = ds_driver(core, ds)
            if driver:
                tmpl.set("DRIVER", driver)
                img.format = driver
            elif not img.format:
                img.format = "raw"
        elif img.type == im.FILESYSTEM:
            img.format = "dir"
        else:
            raise InsertError("No PATH nor SOURCE in template.")
    img.state = im.LOCKED
    if img.type == im.BACKUP:
        vm_id = tmpl.get("VM_ID")
        if vm_id is None:
            raise InsertError("No associated VM ID for BACKUP image.")
        tmpl.erase("VM_ID")
        img.state = im.READY
        img.vms.add(_leading_int(vm_id))
        img.running_vms = len(img.vms)
    img.template = tmpl
    return img


def _leading_int(text: str) -> int:
    """``istringstream >> long long``: the leading integer, 0 when there is none."""
    text = text.strip()
    end = 0
    if text[:1] in ("-", "+"):
        end = 1
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0
