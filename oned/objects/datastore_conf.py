"""How a datastore takes its behaviour from oned.conf (mirrors ``Datastore::insert``,
``set_ds_mad``, ``set_tm_mad``, ``set_ds_disk_type`` and ``post_update_template``).

``DS_MAD_CONF`` and ``TM_MAD_CONF`` describe each driver to the core; creating or updating
a datastore copies their attributes into its template (``LN_TARGET``, ``CLONE_TARGET``,
``SHARED``, ``DS_MIGRATE``, ``ALLOW_ORPHANS``...) and checks ``REQUIRED_ATTRS``. Pure
functions: they change the ``Datastore`` given and raise ``DatastoreConfError`` with
oned's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from oned.objects.datastore import BACKUP_DS, FILE_DS, IMAGE_DS, SYSTEM_DS, Datastore
from oned.objects.image import DISK_TYPE_NAMES, DISK_TYPES

#: ``Datastore::type_to_str``.
TYPE_NAMES = {
    IMAGE_DS: "IMAGE_DS",
    SYSTEM_DS: "SYSTEM_DS",
    FILE_DS: "FILE_DS",
    BACKUP_DS: "BACKUP_DS",
}
_TYPES_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}

_NONE_DISK = 255
_CDROMS = {1, 4, 6, 8}
_IMAGE_DS_DISKS = {0, 2, 9, 3, 5, 7, 10}
_SYSTEM_DS_DISKS = {0, 3, 2, 10}

#: Options that cannot change while a datastore holds images.
_RO_OPTIONS = (
    "LVM_THIN_ENABLE",
    "NFS_AUTO_ENABLE",
    "NFS_AUTO_HOST",
    "NFS_AUTO_PATH",
    "NFS_AUTO_OPTS",
)


class DatastoreConfError(Exception):
    """A datastore template oned refuses; the text is oned's."""


class ConfSource(Protocol):
    def vectors(self, name: str) -> list[dict[str, str]]: ...


def conf_vector(config: ConfSource, section: str, name: str) -> dict[str, str] | None:
    """``Nebula::get_conf_attribute``: the section whose NAME matches, ignoring case."""
    for vector in config.vectors(section):
        if vector.get("NAME", "").lower() == name.lower():
            return vector
    return None


def _bool(vector: dict[str, str], key: str) -> bool | None:
    """``VectorAttribute::vector_value(name, bool&)``: None when missing or empty."""
    raw = vector.get(key, "")
    if not raw:
        return None
    return raw.upper() == "YES"


def _yes(value: bool) -> str:
    return "YES" if value else "NO"


def str_to_type(text: str) -> int:
    return _TYPES_BY_NAME.get(text.upper(), IMAGE_DS) if text else IMAGE_DS


def str_to_disk_type(text: str) -> int:
    return DISK_TYPES.get(text.upper(), _NONE_DISK)


def set_ds_mad(ds: Datastore, config: ConfSource, mad: str) -> None:
    """Copy DATASTORE_CAPACITY_CHECK and check REQUIRED_ATTRS of the DS_MAD."""
    if ds.type == SYSTEM_DS:
        return
    vector = conf_vector(config, "DS_MAD_CONF", mad)
    if vector is None:
        raise DatastoreConfError(f'DS_MAD named "{mad}" is not defined in oned.conf')
    check = _bool(vector, "DATASTORE_CAPACITY_CHECK")
    if check is not None:
        ds.template.set("DATASTORE_CAPACITY_CHECK", _yes(check))
    if "REQUIRED_ATTRS" not in vector:
        return
    for raw in vector["REQUIRED_ATTRS"].split(","):
        attr = raw.strip().upper()
        if not attr:
            continue
        if not ds.template.get(attr):
            raise DatastoreConfError(
                f'Datastore template is missing the "{attr}" attribute or it\'s empty.'
            )


def _target(vector: dict[str, str], key: str, tm_mad: str) -> str:
    value = vector.get(key, "").upper()
    if value not in ("NONE", "SELF", "SYSTEM"):
        raise _tm_error(tm_mad)
    return value


def _tm_error(tm_mad: str) -> DatastoreConfError:
    return DatastoreConfError(
        f"Attribute shared, ln_target or clone_target in TM_MAD_CONF for {tm_mad} "
        "is missing or has wrong value in oned.conf"
    )


def set_tm_mad(ds: Datastore, config: ConfSource, tm_mad: str) -> None:
    """Copy the TM_MAD_CONF attributes that describe the datastore's behaviour."""
    if ds.type == BACKUP_DS:
        return
    if not tm_mad:
        raise DatastoreConfError("No TM_MAD in template.")
    vector = conf_vector(config, "TM_MAD_CONF", tm_mad)
    if vector is None:
        raise DatastoreConfError(f'TM_MAD named "{tm_mad}" is not defined in oned.conf')
    tmpl = ds.template
    if ds.type == SYSTEM_DS:
        shared = _bool(vector, "SHARED")
        if shared is None:
            raise _tm_error(tm_mad)
        tmpl.set("SHARED", _yes(shared))
        migrate = _bool(vector, "DS_MIGRATE")
        tmpl.set("DS_MIGRATE", _yes(True if migrate is None else migrate))
        tmpl.set("DS_LIVE_MIGRATE", _yes(bool(_bool(vector, "DS_LIVE_MIGRATE"))))
        tmpl.set("DS_MIGRATE_SNAP", _yes(bool(_bool(vector, "DS_MIGRATE_SNAP"))))
        tmpl.erase("LN_TARGET")
        tmpl.erase("CLONE_TARGET")
    else:
        systems = vector.get("TM_MAD_SYSTEM", "")
        if systems:
            tmpl.set("TM_MAD_SYSTEM", systems)
            for mode in (m.strip().upper() for m in systems.split(",") if m.strip()):
                tmpl.set(f"LN_TARGET_{mode}", _target(vector, f"LN_TARGET_{mode}", tm_mad))
                tmpl.set(f"CLONE_TARGET_{mode}", _target(vector, f"CLONE_TARGET_{mode}", tm_mad))
                disk = vector.get(f"DISK_TYPE_{mode}", "")
                if not disk:
                    raise _tm_error(tm_mad)
                tmpl.set(f"DISK_TYPE_{mode}", disk)
        tmpl.set("LN_TARGET", _target(vector, "LN_TARGET", tm_mad))
        tmpl.set("CLONE_TARGET", _target(vector, "CLONE_TARGET", tm_mad))
        for key in ("DRIVER", "DISK_TYPE"):
            if vector.get(key):
                tmpl.set(key, vector[key])
        tmpl.erase("SHARED")
    tmpl.set("ALLOW_ORPHANS", vector.get("ALLOW_ORPHANS") or "NO")
    persistent = _bool(vector, "PERSISTENT_SNAPSHOTS")
    tmpl.set("PERSISTENT_SNAPSHOTS", _yes(True if persistent is None else persistent))


def set_disk_type(ds: Datastore, text: str) -> None:
    """``set_ds_disk_type``: validate DISK_TYPE for the datastore type, record it."""
    disk = 0 if not text else str_to_disk_type(text)
    if ds.type in (IMAGE_DS, SYSTEM_DS):
        if disk == _NONE_DISK:
            raise DatastoreConfError("Unknown DISK_TYPE in template.")
        valid = _IMAGE_DS_DISKS if ds.type == IMAGE_DS else _SYSTEM_DS_DISKS
        if disk not in valid:
            kind = "an Image" if ds.type == IMAGE_DS else "a System"
            raise DatastoreConfError(f"Invalid DISK_TYPE for {kind} Datastore.")
        ds.template.add("DISK_TYPE", DISK_TYPE_NAMES[disk])
    else:
        disk = 0
    ds.disk_type = disk


def init_datastore(ds: Datastore, config: ConfSource, ds_location: str) -> None:
    """``Datastore::insert``: derive type, drivers, BASE_PATH and defaults from the
    template (NAME already taken out of it by the caller)."""
    tmpl = ds.template
    ds_mad = tmpl.get("DS_MAD") or ""
    ds.type = str_to_type(tmpl.get("TYPE") or "")
    if ds.type == SYSTEM_DS:
        if ds_mad:
            raise DatastoreConfError("SYSTEM datastores cannot have DS_MAD defined.")
        ds_mad = "-"
    elif not ds_mad:
        raise DatastoreConfError("No DS_MAD in template.")
    ds.ds_mad = ds_mad
    set_ds_mad(ds, config, ds_mad)
    tm_mad = tmpl.get("TM_MAD") or ""
    if ds.type != BACKUP_DS:
        set_tm_mad(ds, config, tm_mad)
    else:
        tm_mad = "-"
    ds.tm_mad = tm_mad
    tmpl.erase("BASE_PATH")
    base = ds_location if ds_location.endswith("/") else ds_location + "/"
    ds.base_path = f"{base}{ds.oid}"
    disk_text = tmpl.get("DISK_TYPE") or ""
    tmpl.erase("DISK_TYPE")
    set_disk_type(ds, disk_text)
    if not tmpl.get("SAFE_DIRS") and not tmpl.get("RESTRICTED_DIRS"):
        tmpl.set("SAFE_DIRS", "/var/tmp")  # noqa: S108 - a path on the hosts, as in oned
        tmpl.set("RESTRICTED_DIRS", "/")


def post_update(ds: Datastore, config: ConfSource, old_options: Sequence[tuple[str, str]]) -> bool:
    """``Datastore::post_update_template`` on ``ds`` whose template was just replaced or
    merged. ``old_options`` are the read-only options before the change. Returns whether
    the monitored capacity must be reset (the driver that monitors it changed)."""
    tmpl = ds.template
    if ds.images:
        for name, old in old_options:
            if (tmpl.get(name) or "") != old:
                raise DatastoreConfError(
                    f"Cannot update option {name} in a datastore with existing images"
                )
    type_text = tmpl.get("TYPE") or ""
    new_type = str_to_type(type_text) if type_text else ds.type
    if ds.oid == 0:
        ds.type = SYSTEM_DS
    elif ds.type != BACKUP_DS:
        ds.type = new_type
    tmpl.set("TYPE", TYPE_NAMES[ds.type])
    disk_text = tmpl.get("DISK_TYPE") or ""
    tmpl.erase("DISK_TYPE")
    if disk_text:
        set_disk_type(ds, disk_text)
    reset = False
    new_tm = tmpl.get("TM_MAD") or ""
    if new_tm and ds.type != BACKUP_DS:
        if ds.type == SYSTEM_DS and new_tm != ds.tm_mad:
            reset = True
        set_tm_mad(ds, config, new_tm)
        ds.tm_mad = new_tm
    else:
        tmpl.set("TM_MAD", ds.tm_mad)
    new_ds = tmpl.get("DS_MAD") or ""
    if ds.type == SYSTEM_DS:
        ds.ds_mad = "-"
        tmpl.erase("DS_MAD")
    elif not new_ds:
        tmpl.set("DS_MAD", ds.ds_mad)
    elif new_ds != ds.ds_mad:
        ds.ds_mad = new_ds
        reset = True
    set_ds_mad(ds, config, ds.ds_mad)
    return reset


def read_only_options(ds: Datastore) -> list[tuple[str, str]]:
    return [(name, ds.template.get(name) or "") for name in _RO_OPTIONS]


def is_persistent_only(ds: Datastore, config: ConfSource) -> bool:
    vector = conf_vector(config, "DS_MAD_CONF", ds.ds_mad)
    return bool(vector and _bool(vector, "PERSISTENT_ONLY"))
