"""A VM's disks as the disk operations see them (mirrors ``VirtualMachineDisk``,
``VirtualMachineDisks`` and the VM half of ``Snapshots.cc``).

Pure functions over a VM working copy: the DISK vectors of its template, the flags
oned sets on the disk an operation works on (``ATTACH``, ``RESIZE``,
``DISK_SNAPSHOT_ACTIVE``, ``HOTPLUG_SAVE_AS_ACTIVE``) and the per-disk ``SNAPSHOTS``
elements of the VM document (kept rendered in ``VirtualMachine.snapshots_xml``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lxml import etree

from oned.objects import image as im
from oned.objects.image import Snapshots
from oned.template import cdata

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vm import VirtualMachine
    from oned.pools.base import Pool

Disk = dict[str, str]

#: ``Snapshots::AllowOrphansMode`` names as stored in ``ALLOW_ORPHANS``.
DENY, ALLOW, MIXED, LINEAR, FORMAT = "NO", "YES", "MIXED", "LINEAR", "FORMAT"


def to_int(text: str | None, default: int = 0) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return default


def yes(disk: Disk, name: str) -> bool:
    return disk.get(name, "").strip().upper() == "YES"


def disks(vm: VirtualMachine) -> list[Disk]:
    return vm.template.vectors("DISK")


def disk_by_id(vm: VirtualMachine, did: int) -> Disk | None:
    for disk in disks(vm):
        if to_int(disk.get("DISK_ID"), -1) == did:
            return disk
    return None


def flagged(vm: VirtualMachine, flag: str) -> Disk | None:
    """The disk carrying ``flag=YES`` (``get_attach_disk``, ``get_resize_disk``...)."""
    for disk in disks(vm):
        if yes(disk, flag):
            return disk
    return None


def is_volatile(disk: Disk) -> bool:
    return disk.get("TYPE", "").upper() in ("SWAP", "FS")


def is_filesystem(disk: Disk) -> bool:
    return disk.get("TYPE", "").upper() == "FILESYSTEM"


def is_persistent(disk: Disk) -> bool:
    return yes(disk, "PERSISTENT")


def snapshot_support(disk: Disk) -> bool:
    return not is_volatile(disk) and not is_filesystem(disk)


def persistent_snapshots(disk: Disk) -> bool:
    value = disk.get("PERSISTENT_SNAPSHOTS")
    return value is None or value.strip().upper() in ("YES", "TRUE", "1")


def tm_target(disk: Disk) -> str:
    """``get_tm_target``: CLONE_TARGET for cloned disks, LN_TARGET for linked ones."""
    if "CLONE" not in disk:
        return ""
    key = "CLONE_TARGET" if yes(disk, "CLONE") else "LN_TARGET"
    return disk.get(key, "").upper()


def allow_orphans(disk: Disk) -> str:
    """``VirtualMachineDisk::allow_orphans`` (FORMAT resolved by the disk format)."""
    mode = (disk.get("ALLOW_ORPHANS") or DENY).strip().upper()
    if mode not in (DENY, ALLOW, MIXED, LINEAR, FORMAT):
        mode = DENY
    if mode == FORMAT:
        mode = ALLOW if disk.get("FORMAT", "").lower() == "raw" else DENY
    return mode


# -- SNAPSHOTS of the VM document ------------------------------------------------------


def vm_snapshots(vm: VirtualMachine) -> dict[int, Snapshots]:
    """The disk snapshots of ``vm`` by DISK_ID."""
    if not vm.snapshots_xml:
        return {}
    root = etree.fromstring(f"<R>{vm.snapshots_xml}</R>".encode())
    out: dict[int, Snapshots] = {}
    for node in root.findall("SNAPSHOTS"):
        out[to_int(node.findtext("DISK_ID"), -1)] = Snapshots.from_xml(node)
    return out


def render(did: int, snaps: Snapshots) -> str:
    body = snaps.to_xml()
    head = f"<NEXT_SNAPSHOT>{cdata(str(snaps.next_snapshot))}</NEXT_SNAPSHOT>"
    return body.replace(head, f"<DISK_ID>{cdata(str(did))}</DISK_ID>{head}", 1)


def set_vm_snapshots(vm: VirtualMachine, snaps: dict[int, Snapshots]) -> None:
    """Store ``snaps`` in disk order (the order oned writes them)."""
    order = [to_int(d.get("DISK_ID"), -1) for d in disks(vm)]
    ids = sorted(snaps, key=lambda i: (order.index(i) if i in order else len(order), i))
    vm.snapshots_xml = "".join(render(i, snaps[i]) for i in ids)


def active_id(snaps: Snapshots) -> int:
    for snap in snaps.items:
        if snap.get("ACTIVE", "").upper() == "YES":
            return to_int(snap.get("ID"), -1)
    return -1


def _add_child(parent: dict[str, str] | None, child: int) -> None:
    if parent is None:
        return
    children = parent.get("CHILDREN", "")
    parent["CHILDREN"] = f"{children},{child}" if children else str(child)


def create(snaps: Snapshots, mode: str, name: str, size: int, now: int) -> int:
    """``Snapshots::create_snapshot``: the new id, or -1 (DENY with a lost parent)."""
    sid = snaps.next_snapshot
    snap: dict[str, str] = {}
    if name:
        snap["NAME"] = name
    snap.update(SIZE=str(size), ID=str(sid), DATE=str(now))
    if mode == DENY:
        active = active_id(snaps)
        snap["PARENT"] = str(active)
        if active != -1:
            parent = snaps.get(active)
            if parent is None:
                return -1
            _add_child(parent, sid)
    elif mode == MIXED:
        snap["PARENT"] = str(snaps.current_base)
        if snaps.current_base != -1:
            _add_child(snaps.get(snaps.current_base), sid)
    else:
        snap["PARENT"] = "-1"
    snaps.next_snapshot = sid + 1
    snaps.items.append(snap)
    return sid


def activate(snaps: Snapshots, mode: str, sid: int, revert: bool) -> int:
    """``Snapshots::active_snapshot``."""
    active = active_id(snaps)
    if sid == active:
        return 0
    snap = snaps.get(sid)
    if snap is None:
        return -1
    if mode == MIXED:
        if not revert:
            return 0
        snaps.current_base = sid
    snap["ACTIVE"] = "YES"
    old = snaps.get(active)
    if old is not None:
        old.pop("ACTIVE", None)
    return 0


def _children(snap: dict[str, str] | None) -> list[str]:
    if snap is None:
        return []
    return [c for c in snap.get("CHILDREN", "").split(",") if c]


def test_delete(snaps: Snapshots, mode: str, sid: int, persistent: bool) -> str | None:
    """``Snapshots::test_delete``: None when ``sid`` may go, else oned's text."""
    snap = snaps.get(sid)
    if snap is None:
        return "Snapshot does not exist"
    active = active_id(snaps)
    if mode in (DENY, LINEAR):
        if persistent and sid == 0:
            return "Cannot delete snapshot 0 for persistent disk images"
        kids = _children(snap)
        if len(kids) > 1:
            return "Cannot delete snapshot with more than one children"
        if not kids:
            return None
        if active == sid:
            return "Cannot delete the active snapshot with children"
        child = to_int(kids[0], -1)
        grand = _children(snaps.get(child))
        if len(grand) > 1 or (len(grand) == 1 and active == child):
            return "Cannot delete snapshot if child has children"
        parent = to_int(snap.get("PARENT"), -1)
        if parent != -1 and len(_children(snaps.get(parent))) > 1:
            return "Cannot delete snapshot if parent has more than one child"
    elif mode == MIXED:
        if sid == active:
            return "Cannot delete the active snapshot"
        if _children(snap):
            return "Cannot delete snapshot with children"
    return None


def delete(snaps: Snapshots, mode: str, sid: int) -> None:
    """``Snapshots::delete_snapshot``."""
    snap = snaps.get(sid)
    if snap is None:
        return
    if mode in (DENY, MIXED):
        pid = to_int(snap.get("PARENT"), -1)
        parent = snaps.get(pid) if pid != -1 else None
        if parent is not None:
            kids = {int(c) for c in _children(parent) if c.lstrip("-").isdigit()}
            kids.discard(sid)
            mine = _children(snap)
            if len(mine) == 1:
                child_id = to_int(mine[0], -1)
                kids.add(child_id)
                child = snaps.get(child_id)
                if child is not None:
                    child["PARENT"] = str(pid)
            if kids:
                parent["CHILDREN"] = ",".join(str(k) for k in sorted(kids))
            else:
                parent.pop("CHILDREN", None)
            if active_id(snaps) == sid:
                parent["ACTIVE"] = "YES"
    snaps.items.remove(snap)


def younger(snaps: Snapshots, sid: int) -> list[int]:
    return sorted(to_int(s.get("ID")) for s in snaps.items if to_int(s.get("ID")) > sid)


def return_to_image(img: im.Image, disk: Disk, snaps: Snapshots | None, resize: bool) -> None:
    """``set_image_size``/``set_image_snapshots``/``clear_image_snapshots`` when a
    disk gives its persistent image back (only a USED_PERS OS/DATABLOCK image)."""
    if img.type not in (im.OS, im.DATABLOCK) or img.state != im.USED_PERS:
        return
    size, original = to_int(disk.get("SIZE")), to_int(disk.get("ORIGINAL_SIZE"))
    if resize and size > original:
        img.size = size
    if snaps is not None and snaps.items and persistent_snapshots(disk):
        img.snapshots = Snapshots(
            snaps.allow_orphans,
            snaps.current_base,
            snaps.next_snapshot,
            [dict(s) for s in snaps.items],
        )
    else:
        img.snapshots = Snapshots(allow_orphans=img.snapshots.allow_orphans)


def system_size(disk: Disk) -> int:
    """``VirtualMachineDisk::system_ds_size(true)``: what the disk takes in the system
    datastore (volatile disks and disks cloned or linked into it), snapshots included."""
    if "SIZE" not in disk:
        return 0
    if not is_volatile(disk) and tm_target(disk) != "SYSTEM":
        return 0
    return to_int(disk.get("SIZE")) + to_int(disk.get("DISK_SNAPSHOT_TOTAL_SIZE"))


def vm_system_size(vm: VirtualMachine) -> int:
    """``VirtualMachineDisks::system_ds_size(true)`` of every disk of ``vm``."""
    return sum(system_size(d) for d in disks(vm))


def image_owner_locks(core: Core, vm: VirtualMachine) -> list[tuple[Pool[Any], int]]:
    """The users and groups owning the VM's images (their DATASTORE quotas move with
    the snapshots and sizes of persistent disks)."""
    out: list[tuple[Pool[Any], int]] = []
    for disk in disks(vm):
        raw = disk.get("IMAGE_ID", "").strip()
        img = core.images.get(int(raw)) if raw.isdigit() else None
        if img is not None:
            out += [(core.users, img.uid)] if img.uid > 0 else []
            out += [(core.groups, img.gid)] if img.gid > 0 else []
    return out


def image_ds_delta(disk: Disk) -> bool:
    """``resize_quotas``' ``do_img_owner``: the image owner's DATASTORE quota pays
    for this disk's growth and snapshots (persistent or linked, not volatile)."""
    return not is_volatile(disk) and (is_persistent(disk) or tm_target(disk) == "NONE")


def image_footprint(disk: Disk) -> int:
    """What the disk takes from its image owner's DATASTORE quota (size and snapshots
    of a persistent or linked disk)."""
    if not image_ds_delta(disk):
        return 0
    return to_int(disk.get("SIZE")) + to_int(disk.get("DISK_SNAPSHOT_TOTAL_SIZE"))
