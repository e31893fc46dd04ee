"""Image actions the API starts (mirrors ``ImageManagerActions.cc`` and the insert half
of ``ImagePool::allocate``): the changes are staged and committed together (image,
datastore IMAGES, quotas, the clone source); the caller sends the driver action after
the commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.db.database import DatabaseError
from oned.errors import ActionError, AllocateError, AuthorizationError
from oned.managers.image import insert
from oned.managers.image.insert import InsertError, NewImage
from oned.managers.image.protocol import drop_image, release_cloning
from oned.managers.image.quota import usage_of
from oned.managers.image.stage import Stage
from oned.objects import image as im
from oned.pools.base import Locks

if TYPE_CHECKING:
    from oned.api.context import Call
    from oned.core import Core
    from oned.objects.image import Image
    from oned.pools.base import Pool
    from oned.template import Template


async def create_image(
    core: Core, call: Call, tmpl: Template, ds: Any, size: int, cloning_id: int = -1
) -> tuple[Image, str | None]:
    """Quota, insert, datastore IMAGES and (for clones) the source, in one commit."""
    uid, gid = call.caller.uid, call.caller.gid
    targets: list[tuple[Pool[Any], int]] = [
        (core.users, uid),
        (core.groups, gid),
        (core.datastores, ds.oid),
    ]
    if cloning_id >= 0:
        targets.append((core.images, cloning_id))
    async with Locks(*targets):
        stage = Stage(core)
        error = stage.quota_add(uid, gid, ds.oid, usage_of(size))
        if error:
            raise AuthorizationError(error)
        persistent = (
            insert.test_set_persistent(core, tmpl, uid, gid, True)
            if cloning_id < 0
            else (tmpl.get("PERSISTENT") or "").upper() == "YES"
        )
        if cloning_id < 0 and insert.persistent_only(core, ds) and not persistent:
            raise AllocateError("This Datastore only accepts persistent images.")
        try:
            insert.check_name_and_type(core, tmpl, uid, ds.type)
            if cloning_id >= 0:
                _can_clone(core, cloning_id)
            img = insert.build(core, tmpl, NewImage(-1, call.caller, ds, core.now(), cloning_id))
        except InsertError as exc:
            raise AllocateError(str(exc)) from exc
        oid = img.oid = stage.allocate_oid()
        encrypted = core.attr_list("IMAGE_ENCRYPTED_ATTR")
        if encrypted:  # Image::insert -> encrypt()
            img.template = core.one_key.encrypt_template(img.template, encrypted)
        if cloning_id >= 0:
            _start_clone(stage, cloning_id, oid)
        stage.add_image(img)
        action: str | None = "CLONE" if cloning_id >= 0 else None
        if cloning_id < 0 and img.type != im.BACKUP:
            action = _manager_action(core, img)
            if action is None:
                stage.image(oid)
                img.set_state_unlock()
        stage.ds_add_image(ds.oid, oid)
        try:
            await stage.commit(f"allocate image {oid}")
        except DatabaseError as exc:
            if "UNIQUE" not in str(exc):
                raise
            clash = insert.name_clash(core, img.name, uid, skip=oid)
            raise AllocateError(f"NAME is already taken by IMAGE {clash}.") from exc
    return img, action


def _manager_action(core: Core, img: Image) -> str | None:
    mgr = core.image_manager
    if mgr is None:
        return None
    return mgr.register_action(img)


def _can_clone(core: Core, cloning_id: int) -> None:
    """``ImageManager::can_clone_image``."""
    src = core.images.get(cloning_id)
    if src is None:
        raise InsertError("Cannot clone image, it does not exist")
    if src.type == im.BACKUP:
        raise InsertError("Cannoe clone backup images")
    if src.state not in (im.READY, im.USED, im.CLONE):
        raise InsertError(f"Cannot clone image in state: {im.state_name(src.state)}")


def _start_clone(stage: Stage, cloning_id: int, new_id: int) -> None:
    """``ImageManager::set_clone_state`` on the source image."""
    src = stage.image(cloning_id)
    assert src is not None
    if src.state == im.READY:
        src.set_state(im.CLONE if src.persistent else im.USED)
    src.cloning_ops += 1
    src.clones.add(new_id)


def delete_image(core: Core, stage: Stage, img: Image) -> bool:
    """``ImageManager::delete_image``: drop now (no SOURCE) or go to DELETE for RM."""

    def refuse(text: str) -> ActionError:
        return ActionError(f"Cannot delete image. {text}")

    if core.datastores.get(img.datastore_id) is None:
        raise refuse("Datastore no longer exists cannot remove image")
    busy = (im.USED, im.USED_PERS, im.LOCKED_USED, im.LOCKED_USED_PERS)
    if (img.state == im.READY and img.running_vms and img.type != im.BACKUP) or (img.state in busy):
        raise refuse(f"There are {img.running_vms} VMs using it.")
    if img.state == im.CLONE:
        raise refuse(f"There are {img.cloning_ops} active clone operations.")
    cloning_id = img.cloning_id if img.state == im.LOCKED else -1
    send_rm = bool(img.source)
    if send_rm:
        img.set_state(im.DELETE)
        img.cloning_id = -1
    else:
        drop_image(stage, img)
    if cloning_id >= 0:
        release_cloning(stage, cloning_id, img.oid)
    return send_rm
