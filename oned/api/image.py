"""``one.image.*`` and ``one.imagepool.info`` (mirrors ``ImageAPI``, ``ImageAllocateAPI``
and the request half of ``ImageManagerActions.cc``).

Calls that need the datastore driver commit the image in its waiting state first and
send the action afterwards (``ImageManager``); the driver's reply moves it on.
"""

from __future__ import annotations

import re
from typing import Any, cast

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import (
    ActionError,
    AllocateError,
    AuthorizationError,
    InternalError,
    NoExistsError,
    OneError,
    no_exists,
)
from oned.managers.image import actions, insert
from oned.managers.image.insert import InsertError
from oned.managers.image.manager import ImageManager, clone_extra, ds_mad_of
from oned.managers.image.quota import usage_of
from oned.managers.image.stage import Stage
from oned.managers.market.images import from_app
from oned.objects import image as im
from oned.objects.base import Op
from oned.objects.datastore import IMAGE_DS, SYSTEM_DS
from oned.objects.image import Image
from oned.pools.base import Locks, Pool
from oned.template import Template


class _SavedImages:
    """``core.images`` as the shared calls see it: every save sets PREV_STATE to STATE,
    as ``ImagePool::update`` does (update, rename, chmod, chown, lock of an image)."""

    def __init__(self, pool: Pool[Image]) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def update(self, obj: Image) -> Any:
        obj.prev_state = obj.state
        return self._pool.update(obj)


def _images(core: Core) -> Pool[Image]:
    return cast("Pool[Image]", _SavedImages(core.images))


IMAGE = Family[Image](
    type_name="IMAGE",
    word="image",
    pool_root="IMAGE_POOL",
    pool=_images,
    auth=shared.owned_auth("IMAGE"),
    lockable=True,
    restricted_attr="IMAGE_RESTRICTED_ATTR",
    encrypted_attr="IMAGE_ENCRYPTED_ATTR",
)

declare(IMAGE, "image", "info", "update", "rename", "chmod", "lock", "unlock")


def _ds_auth(core: Core, ds: Any) -> shared.ObjectAuth:
    return shared.owned_auth("DATASTORE")(core, ds)


def _datastore(core: Core, ds_id: int) -> Any:
    ds = core.datastores.get(ds_id)
    if ds is None:
        raise NoExistsError("", ds_id, "datastore")
    return ds


def _manager(core: Core) -> ImageManager | None:
    mgr = core.image_manager
    return mgr if mgr is not None and mgr.drivers is not None else None


def _restricted(core: Core, tmpl: Template) -> str | None:
    for name in core.attr_list("IMAGE_RESTRICTED_ATTR"):
        if "/" in name:
            vec, key = name.split("/", 1)
            if any(key in v for v in tmpl.vectors(vec)):
                return name
        elif name in tmpl:
            return name
    return None


@rpc("one.image.allocate", "sib", required=2)
async def allocate(
    core: Core, call: Call, text: str, ds_id: int, no_check_capacity: bool = False
) -> int:
    """Allocates a new image."""
    skip_check = no_check_capacity and call.is_admin
    tmpl = shared.parse_template(text)
    ds = _datastore(core, ds_id)
    if ds.type in (SYSTEM_DS, insert.BACKUP_DS):
        raise AllocateError("New images can only be allocated in a files or image datastore.")
    check, avail = insert.avail_mb(core, ds)
    mgr = _manager(core)
    try:
        if mgr is None:
            raise InsertError("Could not get datastore driver")
        app = from_app(core, tmpl, ds)
        data, size_text = (None, app[0]) if app else insert.stat_request(core, tmpl)
        if data is not None:
            ok, size_text = await mgr.stat(data, mgr.ds_xml(ds))
            if not ok:
                raise InsertError(size_text)
        found = re.match(r"\s*[-+]?\d+", size_text)
        if found is None:
            raise ValueError(size_text)
        size = int(found.group())
    except (InsertError, ValueError) as exc:
        detail = str(exc) if isinstance(exc, InsertError) else size_text
        raise InternalError(f"Cannot parse image SIZE: {detail}") from exc
    if check and not skip_check and size > avail:
        raise ActionError("Not enough space in datastore")
    tmpl.set("SIZE", size_text)
    if not call.is_admin:
        name = _restricted(core, tmpl)
        if name:
            raise AuthorizationError(f"Template includes a restricted attribute {name}")
    core.acl.check_all(
        call.caller,
        [(Op.CREATE, shared.ObjectAuth("IMAGE", -1)), (Op.USE, _ds_auth(core, ds))],
    )
    img, action = await actions.create_image(core, call, tmpl, ds, size)
    if action is not None and mgr is not None:
        mgr.send_image_action(action, img, app[1] if app else "")
    return img.oid


@rpc("one.image.clone", "isi", required=2)
async def clone(core: Core, call: Call, oid: int, name: str, ds_id: int = -1) -> int:
    """Clones an existing image."""
    src = core.images.get(oid)
    if src is None:
        raise no_exists("image", oid)
    if src.type not in (im.OS, im.DATABLOCK, im.CDROM):
        raise ActionError(f"{im.type_name(src.type)} images cannot be cloned.")
    if src.snapshots.items:
        raise ActionError("Cannot clone images with snapshots")
    tmpl = insert.clone_template(src, name)
    insert.test_set_persistent(core, tmpl, call.caller.uid, call.caller.gid, False)
    if ds_id == -1:
        ds_id = src.datastore_id
    ds = _datastore(core, ds_id)
    if ds.type != IMAGE_DS:
        raise ActionError("Clone only supported for IMAGE_DS Datastores")
    requests = [
        (Op.CREATE, shared.ObjectAuth("IMAGE", -1)),
        (Op.USE, IMAGE.auth(core, src)),
        (Op.USE, _ds_auth(core, ds)),
    ]
    if ds_id != src.datastore_id:
        orig = _datastore(core, src.datastore_id)
        if orig.type != IMAGE_DS:
            raise ActionError("Clone only supported for IMAGE_DS Datastores")
        if ds_mad_of(orig) != ds_mad_of(ds):
            raise ActionError("Clone only supported to same DS_MAD Datastores")
        requests.append((Op.USE, _ds_auth(core, orig)))
    check, avail = insert.avail_mb(core, ds)
    if check and src.size > avail:
        raise ActionError("Not enough space in datastore")
    core.acl.check_all(call.caller, requests)
    mgr = _manager(core)
    if mgr is None:
        raise AllocateError("Could not get datastore driver")
    img, _ = await actions.create_image(core, call, tmpl, ds, src.size, cloning_id=oid)
    mgr.send_image_action("CLONE", img, clone_extra(core, img))
    return img.oid


async def _change(core: Core, call: Call, oid: int, fn: Any, desc: str) -> int:
    """MANAGE on the image, then ``fn(stage, img)`` under its lock, committed."""
    shared.get_authorized(core, call, IMAGE, oid, Op.MANAGE)
    async with core.images.lock(oid):
        stage = Stage(core)
        img = stage.image(oid)
        if img is None:
            raise no_exists("image", oid)
        if fn(stage, img) is not False:
            await stage.commit(f"{desc} image {oid}")
    return oid


@rpc("one.image.enable", "ib")
async def enable(core: Core, call: Call, oid: int, flag: bool) -> int:
    """Enables or disables an image."""
    word = "enable" if flag else "disable"

    def apply(stage: Stage, img: Image) -> bool:
        def refuse(text: str) -> InternalError:
            return InternalError(f"Could not {word} image: {text}")

        if img.type == im.BACKUP:
            raise refuse("Backup images cannot be enabled or disabled.")
        if flag:
            if img.state == im.DISABLED:
                img.set_state(im.READY)
            elif img.state == im.ERROR:
                img.set_state_unlock()
            elif img.state != im.READY:
                raise refuse(f"Image cannot be in state {im.state_name(img.state)}.")
            else:
                return False
        elif img.state in (im.READY, im.ERROR):
            img.set_state(im.DISABLED)
        elif img.state != im.DISABLED:
            raise refuse(f"Image cannot be in state {im.state_name(img.state)}.")
        else:
            return False
        return True

    return await _change(core, call, oid, apply, word)


@rpc("one.image.persistent", "ib")
async def persistent(core: Core, call: Call, oid: int, flag: bool) -> int:
    """Makes an image persistent or non-persistent."""
    img = shared.get_authorized(core, call, IMAGE, oid, Op.MANAGE)
    if bool(img.persistent) == flag:
        return oid
    ds = core.datastores.get(img.datastore_id)
    if ds is None:
        raise InternalError("Datastore no longer exists.")
    if ds_mad_of(ds).lower() == "lvm":
        raise InternalError("lvm datastores doesn't support change of image persistency.")

    def apply(stage: Stage, img: Image) -> None:
        if img.type in (im.KERNEL, im.RAMDISK, im.CONTEXT):
            raise ActionError("KERNEL, RAMDISK and CONTEXT must be non-persistent")
        if img.type == im.BACKUP:
            raise ActionError("BACKUP images must be persistent")
        if insert.persistent_only(core, ds) and not flag:
            raise InternalError("This Datastore only accepts persistent images.")
        what = "persistent" if flag else "non-persistent"
        if img.snapshots.items and not flag:
            raise InternalError(f"Could not make image {what}: Image has snapshots.")
        if img.state in (im.USED, im.CLONE, im.USED_PERS, im.LOCKED_USED, im.LOCKED_USED_PERS):
            raise InternalError(
                f"Could not make image {what}: Image cannot be in state {im.state_name(img.state)}."
            )
        img.persistent = int(flag)

    return await _change(core, call, oid, apply, "persistent")


@rpc("one.image.chtype", "is")
async def chtype(core: Core, call: Call, oid: int, type_text: str) -> int:
    """Changes the type of an image."""

    def apply(stage: Stage, img: Image) -> None:
        itype, name = insert.str_to_type(core, type_text)
        if img.type in (im.OS, im.DATABLOCK, im.CDROM):
            allowed: tuple[int, ...] = (im.OS, im.DATABLOCK, im.CDROM)
        elif img.type in (im.KERNEL, im.RAMDISK, im.CONTEXT):
            allowed = (im.KERNEL, im.RAMDISK, im.CONTEXT)
        else:
            raise ActionError(f"Cannot change type for{im.type_name(img.type)} images.")
        if itype not in allowed:
            raise ActionError(
                "Cannot change image type to an incompatible type for the current datastore."
            )
        if name not in ("OS", "DATABLOCK") and img.snapshots.items:
            raise InternalError("Image with snapshots can be only of type OS or DATABLOCK")
        if name not in im.TYPES:
            # oned appends the current type number to a char pointer ("Unknown type " + t)
            raise InternalError("Unknown type "[img.type :])
        img.type = im.TYPES[name]

    return await _change(core, call, oid, apply, "chtype")


def _snapshot_action(action: str, verb: str) -> Any:
    async def handler(core: Core, call: Call, oid: int, snap_id: int) -> int:
        shared.get_authorized(core, call, IMAGE, oid, Op.MANAGE)
        mgr = _manager(core)
        if mgr is None:
            raise ActionError("Could not get datastore driver")
        img = core.images.get(oid)
        if img is None or core.datastores.get(img.datastore_id) is None:
            raise ActionError("Datastore no longer exists")

        def apply(stage: Stage, img: Image) -> None:
            if img.type not in (im.OS, im.DATABLOCK):
                raise ActionError(
                    "IMAGES of type KERNEL, RAMDISK, BACKUP, FILESYSTEM and CONTEXT does not "
                    "have snapshots."
                )
            if img.state != im.READY:
                raise ActionError(f"Cannot {verb} in state {im.state_name(img.state)}")
            if action == "SNAP_DELETE":
                problem = img.snapshots.test_delete(snap_id)
                if problem:
                    raise ActionError(problem)
            elif img.snapshots.get(snap_id) is None:
                raise ActionError("Snapshot does not exist")
            img.target_snapshot = snap_id
            img.set_state(im.LOCKED)

        await _change(core, call, oid, apply, action.lower())
        done = core.images.get(oid)
        if done is not None:
            mgr.send_image_action(action, done)
        return oid

    return handler


rpc("one.image.snapshotdelete", "ii", help="Deletes a snapshot of an image.")(
    _snapshot_action("SNAP_DELETE", "delete snapshot")
)
rpc("one.image.snapshotrevert", "ii", help="Reverts an image to a snapshot.")(
    _snapshot_action("SNAP_REVERT", "revert to snapshot")
)
rpc("one.image.snapshotflatten", "ii", help="Flattens a snapshot of an image.")(
    _snapshot_action("SNAP_FLATTEN", "flatten snapshot")
)


@rpc("one.image.delete", "ib", required=1)
async def delete(core: Core, call: Call, oid: int, force: bool = False) -> int:
    """Deletes an image."""
    img = core.images.get(oid)
    if img is None:
        raise no_exists("image", oid)
    op = Op.MANAGE
    if img.is_locked_state():
        op = Op.ADMIN
        if not force:
            raise InternalError(
                "Image locked, use --force flag to remove the image. Force delete may leave "
                "some files on Datastore",
                oid,
                keep_id=True,
            )
    shared.authorize(core, call, IMAGE, img, op)
    mgr = _manager(core)
    if mgr is None:
        raise ActionError("Cannot delete image. Error getting ImageManagerDriver")
    targets: list[tuple[Pool[Any], int]] = [(core.images, oid), (core.datastores, img.datastore_id)]
    targets += [(core.users, img.uid), (core.groups, img.gid)]
    if img.cloning_id >= 0:
        targets.append((core.images, img.cloning_id))
    async with Locks(*targets):
        stage = Stage(core)
        work = stage.image(oid)
        if work is None:
            raise no_exists("image", oid)
        if force:
            work.template.set("FORCE_DELETE", "YES")
        send_rm = actions.delete_image(core, stage, work)
        shared.drop_resource_rules(core, stage.unit, "IMAGE", oid)
        await stage.commit(f"delete image {oid}")
    if send_rm:
        stored = core.images.get(oid)
        if stored is not None:
            mgr.send_image_action("RM", stored)
    return oid


@rpc("one.image.chown", "iii")
async def chown(core: Core, call: Call, oid: int, new_uid: int, new_gid: int) -> int:
    """Changes the owner and group of an image (its DATASTORE quota usage moves)."""
    img = shared.get_object(core, IMAGE, oid)
    old_uid, old_gid = img.uid, img.gid
    usage = usage_of(img.size + img.snapshots.total_size())
    to_uid = new_uid if new_uid >= 0 and new_uid != old_uid else old_uid
    to_gid = new_gid if new_gid >= 0 and new_gid != old_gid else old_gid
    if (
        (to_uid, to_gid) != (old_uid, old_gid)
        and core.users.get(to_uid)
        and core.groups.get(to_gid)
    ):
        probe = Stage(core)
        error = probe.quota_add(
            to_uid if to_uid != old_uid else 0,
            to_gid if to_gid != old_gid else 0,
            img.datastore_id,
            usage,
        )
        if error:
            raise AuthorizationError(error)
    result = await shared.chown(core, call, IMAGE, oid, new_uid, new_gid)
    moved = core.images.get(oid)
    if moved is None or (moved.uid, moved.gid) == (old_uid, old_gid):
        return result
    uids = {old_uid, moved.uid}
    gids = {old_gid, moved.gid}
    async with Locks(*((core.users, u) for u in uids), *((core.groups, g) for g in gids)):
        stage = Stage(core)
        stage.quota_del(
            old_uid if moved.uid != old_uid else 0,
            old_gid if moved.gid != old_gid else 0,
            img.datastore_id,
            usage,
        )
        stage.quota_add(
            moved.uid if moved.uid != old_uid else 0,
            moved.gid if moved.gid != old_gid else 0,
            img.datastore_id,
            usage,
        )
        await stage.commit(f"chown quotas of image {oid}")
    return result


@rpc("one.image.restore", "iis")
async def restore(core: Core, call: Call, oid: int, ds_id: int, options: str) -> str:
    """Restores a backup image (the datastore driver's RESTORE)."""
    try:
        shared.get_authorized(core, call, IMAGE, oid, Op.USE)
    except OneError:
        return ""  # oned answers success with an empty text here
    ds = _datastore(core, ds_id)
    core.acl.check(call.caller, Op.USE, _ds_auth(core, ds))
    tmpl = shared.parse_template(options)
    disk = tmpl.get("DISK_ID")
    disk_id = int(disk) if disk and disk.lstrip("-").isdigit() else -1
    img = core.images.get(oid)
    if img is not None:
        selected = (img.template.get("BACKUP_SELECTED_DISKS") or "").upper() == "YES"
        if selected and disk_id < 0:
            raise ActionError("Cannot restore a VM from a selected disk backup")
        if disk_id >= 0 and disk_id not in img.backup_disk_ids:
            raise ActionError(f"Cannot restore disk {disk_id}, it is not part of the backup")
    tmpl.set("USERNAME", call.caller.uname)
    mgr = _manager(core)
    if mgr is None:
        raise ActionError("Could not get datastore driver")
    if img is None:
        raise ActionError("Image does not exist")
    if img.type != im.BACKUP:
        raise ActionError("Can only restore images of type BACKUP")
    src_ds = core.datastores.get(img.datastore_id)
    if src_ds is None:
        raise ActionError("Datastore does not exist")
    if ds.type != IMAGE_DS:
        raise ActionError("Destination can be only an image datastore")
    extra = f"<DESTINATION_DS_ID>{ds_id}</DESTINATION_DS_ID>{tmpl.to_xml()}"
    ok, info = await mgr.restore(core.images.body(oid), mgr.ds_xml(src_ds), extra)
    if not ok:
        raise ActionError(info)
    return info


@rpc("one.imagepool.info", "iii")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the image pool."""
    images = shared.filtered(core, call, IMAGE, filter_flag, start, end)
    return shared.pool_document("IMAGE_POOL", images, core.images)
