"""Datastore driver replies applied to images (mirrors ``ImageManagerProtocol.cc``).

Each handler changes staged copies (``Stage``) and returns the datastores to monitor
again; the manager commits a whole batch of replies in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oned.managers.image.quota import usage_of
from oned.objects import image as im

if TYPE_CHECKING:
    from oned.drivers.message import DriverMessage
    from oned.managers.image.stage import Stage
    from oned.objects.image import Image

Reply = Callable[["Stage", "DriverMessage", float], "set[int]"]


def _tail(info: str) -> str:
    """``: info`` unless the driver said nothing (or ``-...``)."""
    return f": {info}" if info and not info.startswith("-") else ""


def _fail(img: Image, text: str, now: float) -> None:
    img.set_error(text, now)
    img.set_state(im.ERROR)


def release_cloning(stage: Stage, cloning_id: int, clone_oid: int) -> None:
    """``ImageManager::release_cloning_image``: one clone of ``cloning_id`` ended."""
    src = stage.image(cloning_id)
    if src is None or src.type not in (im.OS, im.DATABLOCK, im.CDROM):
        return
    if src.state in (im.USED, im.CLONE):
        src.clones.discard(clone_oid)
        src.cloning_ops = max(src.cloning_ops - 1, 0)
        if src.cloning_ops == 0 and src.running_vms == 0:
            src.set_state(im.READY)


def cp(stage: Stage, msg: DriverMessage, now: float) -> set[int]:
    img = stage.image(msg.oid)
    if img is None:
        return set()
    words = msg.payload.split()
    if msg.status != "SUCCESS" or not words:
        _fail(img, f"Error copying image in the datastore{_tail(msg.payload)}", now)
        return {img.datastore_id}
    img.source = words[0]
    if len(words) < 2:
        _fail(img, "CP operation succeeded but image FORMAT was not returned.", now)
        return {img.datastore_id}
    img.format = words[1]
    img.set_state_unlock()
    return {img.datastore_id}


def clone(stage: Stage, msg: DriverMessage, now: float) -> set[int]:
    img = stage.image(msg.oid)
    if img is None:
        return set()
    cloning_id = img.cloning_id
    words = msg.payload.split()
    if msg.status != "SUCCESS" or not words:
        _fail(img, f"Error cloning from Image {cloning_id}{_tail(msg.payload)}", now)
        img.cloning_id = -1
        release_cloning(stage, cloning_id, img.oid)
        return set()
    img.source = words[0]
    if len(words) > 1:
        img.format = words[1]
    img.set_state_unlock()
    img.cloning_id = -1
    release_cloning(stage, cloning_id, img.oid)
    return {img.datastore_id}


def mkfs(stage: Stage, msg: DriverMessage, now: float) -> set[int]:
    img = stage.image(msg.oid)
    if img is None or img.state == im.DELETE:
        return set()
    if msg.status != "SUCCESS":
        _fail(img, f"Error creating datablock{_tail(msg.payload)}", now)
        return {img.datastore_id}
    img.source = msg.payload if msg.payload != "-" else ""
    if (img.template.get("SAVE_AS_HOT") or "").upper() != "YES":  # saving: LOCKED until CPDS
        img.set_state_unlock()
    return {img.datastore_id}


def rm(stage: Stage, msg: DriverMessage, now: float) -> set[int]:
    img = stage.image(msg.oid)
    if img is None:
        return set()
    force = (img.template.get("FORCE_DELETE") or "").upper() in ("YES", "TRUE", "1")
    if msg.status != "SUCCESS" and not force:
        _fail(
            img,
            "Error removing image from datastore. Retry the operation or manually remove "
            f"image source {''} and run the delete --force operation to completely "
            "delete the image",
            now,
        )
        return set()
    drop_image(stage, img)
    return {img.datastore_id}


def drop_image(stage: Stage, img: Image) -> None:
    """Remove the image, its datastore reference and its quota usage."""
    stage.drop_image(img.oid)
    stage.ds_del_image(img.datastore_id, img.oid)
    size = img.size + img.snapshots.total_size()
    stage.quota_del(img.uid, img.gid, img.datastore_id, usage_of(size))
    if img.type == im.BACKUP and img.vms:  # the VM forgets it (ImageManager RM success)
        from oned.managers.lifecycle.backup_actions import forget_backup_image

        stage.unit.then(lambda: forget_backup_image(stage.core, img))


def snap_delete(stage: Stage, msg: DriverMessage, now: float) -> set[int]:
    img = stage.image(msg.oid)
    if img is None:
        return set()
    img.set_state_unlock()
    sid = img.target_snapshot
    if sid == -1:
        return set()
    if msg.status == "SUCCESS":
        size = img.snapshots.size_of(sid)
        img.snapshots.delete(sid)
        stage.quota_del(img.uid, img.gid, img.datastore_id, usage_of(size, 0))
    else:
        img.set_error(
            f"Error removing snapshot {sid} from image {img.oid}{_tail(msg.payload)}", now
        )
    img.target_snapshot = -1
    return set()


def snap_revert(stage: Stage, msg: DriverMessage, now: float) -> set[int]:
    img = stage.image(msg.oid)
    if img is None:
        return set()
    img.set_state_unlock()
    sid = img.target_snapshot
    if sid == -1:
        return set()
    if msg.status == "SUCCESS":
        img.snapshots.activate(sid)
        snap_size = img.snapshots.size_of(sid)
        if snap_size != img.size:
            delta = img.size - snap_size
            img.size = snap_size
            stage.quota_del(img.uid, img.gid, img.datastore_id, usage_of(delta, 0))
    else:
        img.set_error(f"Error reverting image {img.oid} to snapshot {sid}{_tail(msg.payload)}", now)
    img.target_snapshot = -1
    return set()


def snap_flatten(stage: Stage, msg: DriverMessage, now: float) -> set[int]:
    img = stage.image(msg.oid)
    if img is None:
        return set()
    if msg.status == "SUCCESS":
        size = img.snapshots.total_size()
        img.snapshots = im.Snapshots(allow_orphans=img.snapshots.allow_orphans)
        stage.quota_del(img.uid, img.gid, img.datastore_id, usage_of(size, 0))
    else:
        img.set_error(f"Error flattening image snapshot{_tail(msg.payload)}", now)
    img.set_state_unlock()
    img.target_snapshot = -1
    return set()


HANDLERS: dict[str, Reply] = {
    "CP": cp,
    "CLONE": clone,
    "MKFS": mkfs,
    "RM": rm,
    "SNAP_DELETE": snap_delete,
    "SNAP_REVERT": snap_revert,
    "SNAP_FLATTEN": snap_flatten,
}
