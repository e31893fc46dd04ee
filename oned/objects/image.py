"""The IMAGE object (mirrors ``Image.h``, ``Image.cc`` and the image part of
``Snapshots.h``).

Plain data and the pure parts of the image state machine: the document oned renders
(element order of ``image.xsd``), the type and state names, and the state changes
that do not need a driver (``set_state``, ``set_state_unlock``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from lxml import etree

from oned.objects.base import (
    Lock,
    Permissions,
    esc,
    ids_of,
    ids_xml,
    int_of,
    owner_columns,
    owner_fields,
    owner_xml,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template, cdata

# -- ImageState ---------------------------------------------------------------------
INIT = 0
READY = 1
USED = 2
DISABLED = 3
LOCKED = 4
ERROR = 5
CLONE = 6
DELETE = 7
USED_PERS = 8
LOCKED_USED = 9
LOCKED_USED_PERS = 10

STATE_NAMES = (
    "INIT",
    "READY",
    "USED",
    "DISABLED",
    "LOCKED",
    "ERROR",
    "CLONE",
    "DELETE",
    "USED_PERS",
    "LOCKED_USED",
    "LOCKED_USED_PERS",
)

# -- ImageType ----------------------------------------------------------------------
OS = 0
CDROM = 1
DATABLOCK = 2
KERNEL = 3
RAMDISK = 4
CONTEXT = 5
BACKUP = 6
FILESYSTEM = 7

TYPE_NAMES = ("OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT", "BACKUP", "FILESYSTEM")
TYPES = {name: i for i, name in enumerate(TYPE_NAMES)}

#: ``Image::DiskType`` names by value (``disk_type_to_str``), and values by name.
DISK_TYPE_NAMES = (
    "FILE",
    "CDROM",
    "BLOCK",
    "RBD",
    "RBD_CDROM",
    "GLUSTER",
    "GLUSTER_CDROM",
    "SHEEPDOG",
    "SHEEPDOG_CDROM",
    "ISCSI",
    "FILESYSTEM",
)
DISK_TYPES = {name: value for value, name in enumerate(DISK_TYPE_NAMES)}


def state_name(state: int) -> str:
    return STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else ""


def type_name(image_type: int) -> str:
    return TYPE_NAMES[image_type] if 0 <= image_type < len(TYPE_NAMES) else ""


def type_of(text: str, default: str = "OS") -> int | None:
    """``Image::set_type``: the type called ``text`` (empty: ``default``), or None."""
    return TYPES.get((text or default).upper())


def log_time(seconds: float) -> str:
    """``one_util::log_time``: ``ctime`` without its newline."""
    return time.ctime(seconds)


@dataclass
class Snapshots:
    """The ``SNAPSHOTS`` element of an image (``Snapshots`` in DENY orphans mode)."""

    allow_orphans: str = "NO"
    current_base: int = -1
    next_snapshot: int = 0
    items: list[dict[str, str]] = field(default_factory=list)

    def to_xml(self) -> str:
        out = [
            f"<SNAPSHOTS><ALLOW_ORPHANS>{cdata(self.allow_orphans)}</ALLOW_ORPHANS>"
            f"<CURRENT_BASE>{cdata(str(self.current_base))}</CURRENT_BASE>"
            f"<NEXT_SNAPSHOT>{cdata(str(self.next_snapshot))}</NEXT_SNAPSHOT>"
        ]
        for snap in self.items:
            out.append("<SNAPSHOT>")
            out.extend(f"<{k}>{cdata(snap[k])}</{k}>" for k in sorted(snap))
            out.append("</SNAPSHOT>")
        out.append("</SNAPSHOTS>")
        return "".join(out)

    @classmethod
    def from_xml(cls, node: etree._Element | None) -> Snapshots:
        if node is None:
            return cls()
        return cls(
            allow_orphans=text_of(node, "ALLOW_ORPHANS", "NO"),
            current_base=int_of(node, "CURRENT_BASE", -1),
            next_snapshot=int_of(node, "NEXT_SNAPSHOT"),
            items=[
                {str(c.tag): c.text or "" for c in snap if isinstance(c.tag, str)}
                for snap in node.findall("SNAPSHOT")
            ],
        )

    def copy(self) -> Snapshots:
        return replace(self, items=[dict(s) for s in self.items])

    def get(self, sid: int) -> dict[str, str] | None:
        for snap in self.items:
            if snap.get("ID") == str(sid):
                return snap
        return None

    def size_of(self, sid: int) -> int:
        snap = self.get(sid)
        return _int(snap.get("SIZE", "0")) if snap else 0

    def total_size(self) -> int:
        return sum(_int(s.get("SIZE", "0")) for s in self.items)

    def test_delete(self, sid: int) -> str | None:
        """``Snapshots::test_delete_image``: None when ``sid`` may be deleted."""
        snap = self.get(sid)
        if snap is None:
            return "Snapshot does not exist"
        if snap.get("ACTIVE", "").upper() == "YES":
            return "Cannot delete the active snapshot"
        if snap.get("CHILDREN"):
            return "Cannot delete snapshot with children"
        return None

    def delete(self, sid: int) -> None:
        snap = self.get(sid)
        if snap is None:
            return
        parent = self.get(_int(snap.get("PARENT", "-1"), -1))
        if parent is not None:
            children = [c for c in parent.get("CHILDREN", "").split(",") if c and c != str(sid)]
            if children:
                parent["CHILDREN"] = ",".join(children)
            else:
                parent.pop("CHILDREN", None)
        self.items.remove(snap)

    def activate(self, sid: int) -> None:
        for item in self.items:
            item.pop("ACTIVE", None)
        snap = self.get(sid)
        if snap is not None:
            snap["ACTIVE"] = "YES"


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default


@dataclass
class Image:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    lock: Lock = field(default_factory=Lock)
    perms: Permissions = field(default_factory=Permissions)
    type: int = OS
    disk_type: int = 0
    persistent: int = 0
    regtime: int = 0
    modtime: int = 0
    source: str = ""
    path: str = ""
    format: str = ""
    fs: str = ""
    size: int = 0
    state: int = INIT
    prev_state: int = INIT
    running_vms: int = 0
    cloning_ops: int = 0
    cloning_id: int = -1
    target_snapshot: int = -1
    datastore_id: int = -1
    datastore: str = ""
    vms: set[int] = field(default_factory=set)
    clones: set[int] = field(default_factory=set)
    app_clones: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)
    snapshots: Snapshots = field(default_factory=Snapshots)
    increments: str = "<BACKUP_INCREMENTS></BACKUP_INCREMENTS>"
    backup_disk_ids: set[int] = field(default_factory=set)

    TABLE: ClassVar[str] = "image_pool"
    ROOT: ClassVar[str] = "IMAGE"

    def to_xml(self) -> str:
        return (
            f"<IMAGE><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"{self.lock.to_xml()}{self.perms.to_xml()}"
            f"<TYPE>{self.type}</TYPE><DISK_TYPE>{self.disk_type}</DISK_TYPE>"
            f"<PERSISTENT>{self.persistent}</PERSISTENT><REGTIME>{self.regtime}</REGTIME>"
            f"<MODTIME>{self.modtime}</MODTIME><SOURCE>{cdata(self.source)}</SOURCE>"
            f"<PATH>{cdata(self.path)}</PATH><FORMAT>{cdata(self.format)}</FORMAT>"
            f"<FS>{cdata(self.fs)}</FS><SIZE>{self.size}</SIZE><STATE>{self.state}</STATE>"
            f"<PREV_STATE>{self.prev_state}</PREV_STATE>"
            f"<RUNNING_VMS>{self.running_vms}</RUNNING_VMS>"
            f"<CLONING_OPS>{self.cloning_ops}</CLONING_OPS>"
            f"<CLONING_ID>{self.cloning_id}</CLONING_ID>"
            f"<TARGET_SNAPSHOT>{self.target_snapshot}</TARGET_SNAPSHOT>"
            f"<DATASTORE_ID>{self.datastore_id}</DATASTORE_ID>"
            f"<DATASTORE>{esc(self.datastore)}</DATASTORE>"
            f"{ids_xml('VMS', self.vms)}{ids_xml('CLONES', self.clones)}"
            f"{ids_xml('APP_CLONES', self.app_clones)}{self.template.to_xml()}"
            f"{self.snapshots.to_xml()}{self.increments}"
            f"{ids_xml('BACKUP_DISK_IDS', self.backup_disk_ids)}</IMAGE>"
        )

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> Image:
        root = parse_xml(body)
        increments = root.find("BACKUP_INCREMENTS")
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            lock=Lock.from_xml(root),
            type=int_of(root, "TYPE"),
            disk_type=int_of(root, "DISK_TYPE"),
            persistent=int_of(root, "PERSISTENT"),
            regtime=int_of(root, "REGTIME"),
            modtime=int_of(root, "MODTIME"),
            source=text_of(root, "SOURCE"),
            path=text_of(root, "PATH"),
            format=text_of(root, "FORMAT"),
            fs=text_of(root, "FS"),
            size=int_of(root, "SIZE"),
            state=int_of(root, "STATE"),
            prev_state=int_of(root, "PREV_STATE"),
            running_vms=int_of(root, "RUNNING_VMS"),
            cloning_ops=int_of(root, "CLONING_OPS"),
            cloning_id=int_of(root, "CLONING_ID", -1),
            target_snapshot=int_of(root, "TARGET_SNAPSHOT", -1),
            datastore_id=int_of(root, "DATASTORE_ID", -1),
            datastore=text_of(root, "DATASTORE"),
            vms=set(ids_of(root, "VMS")),
            clones=set(ids_of(root, "CLONES")),
            app_clones=set(ids_of(root, "APP_CLONES")),
            template=template_of(root),
            snapshots=Snapshots.from_xml(root.find("SNAPSHOTS")),
            increments=(
                etree.tostring(increments, encoding="unicode", with_tail=False)
                if increments is not None and len(increments)
                else "<BACKUP_INCREMENTS></BACKUP_INCREMENTS>"
            ),
            backup_disk_ids=set(ids_of(root, "BACKUP_DISK_IDS")),
        )

    def copy(self) -> Image:
        """A working copy to change (sets, template and snapshots are copied)."""
        return replace(
            self,
            lock=replace(self.lock),
            perms=replace(self.perms),
            vms=set(self.vms),
            clones=set(self.clones),
            app_clones=set(self.app_clones),
            template=self.template.copy(),
            snapshots=self.snapshots.copy(),
            backup_disk_ids=set(self.backup_disk_ids),
        )

    # -- state machine pieces that need no driver ---------------------------------

    def set_state(self, state: int) -> None:
        """``Image::set_state``: any state but LOCKED also drops the object lock."""
        if state != LOCKED:
            self.lock = Lock()
        self.state = state

    def set_state_unlock(self) -> None:
        """``Image::set_state_unlock``: LOCKED* and ERROR back to their usable state."""
        if self.state == LOCKED:
            self.set_state(READY)
        elif self.state == LOCKED_USED:
            self.set_state(USED)
        elif self.state == LOCKED_USED_PERS:
            self.set_state(USED_PERS)
        elif self.state == ERROR:
            if self.running_vms == 0:
                self.set_state(READY)
            else:
                self.set_state(USED_PERS if self.persistent else USED)

    def set_error(self, message: str, now: float) -> None:
        """``set_template_error_message``: ``ERROR`` = ``<ctime> : message``."""
        self.template.set("ERROR", f"{log_time(now)} : {message}")

    def is_locked_state(self) -> bool:
        return self.state in (LOCKED, LOCKED_USED, LOCKED_USED_PERS)
