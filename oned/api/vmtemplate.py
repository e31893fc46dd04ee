"""``one.template.*`` and ``one.templatepool.info`` (mirrors ``TemplateAPI``).

VM templates use the shared machinery for rename, chown, lock and unlock; allocate,
clone (recursive: images too), delete (recursive), update, chmod (recursive), info
(extended: DISKs completed from their images) and the pool are written here, with
VM_RESTRICTED_ATTR enforced for non-admins as oned does.

``one.template.instantiate`` creates a VM and is registered by the VM family on top of
``oned.api.instantiate.prepare_instantiate`` (persistent copy, user merge, names and
authorization, built from ``oned.template_merge``).
"""

from __future__ import annotations

from typing import Any

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.api.vmtemplate_images import (
    IMAGE,
    clone_image,
    delete_images,
    image_ids,
    use_requests,
)
from oned.core import Core
from oned.errors import (
    ActionError,
    ApiError,
    AuthorizationError,
    InternalError,
    OneError,
    no_exists,
)
from oned.log import logger
from oned.objects.base import Op, Permissions
from oned.objects.vmtemplate import VMTemplate
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml
from oned.template_merge import (
    CLONE_REMOVED_DISK_ATTRS,
    RestrictedError,
    disk_image_name,
    merge_user_attrs,
    parse_restricted,
    restricted_change,
    restricted_in,
    template_error,
)
from oned.vm_disks import disk_image_id, extended_disks

log = logger("ReM")

TEMPLATE = Family[VMTemplate](
    type_name="TEMPLATE",
    word="virtual machine template",
    pool_root="VMTEMPLATE_POOL",
    pool=lambda core: core.templates,
    auth=shared.owned_auth("TEMPLATE"),
    lockable=True,
    name_scope="owner",
    restricted_attr="VM_RESTRICTED_ATTR",
    encrypted_attr="VM_ENCRYPTED_ATTR",
)


def restricted(core: Core, call: Call) -> dict[str, set[str]] | None:
    """VM_RESTRICTED_ATTR for non-admins, None for admins."""
    if call.is_admin:
        return None
    return parse_restricted(core.attr_list("VM_RESTRICTED_ATTR"))


def validate(core: Core, tmpl: Template) -> None:
    """``VMTemplate::insert``/``post_update_template`` checks (INTERNAL errors)."""
    drivers = {(v.get("NAME") or "").lower() for v in core.config.template.vectors("VM_MAD")}
    problem = template_error(tmpl, drivers)
    if problem is not None:
        raise InternalError(problem)


#: Pool lock key that serialises allocations (name check, then insert), as the pool
#: mutex does in oned: two concurrent calls cannot both take a free name.
ALLOCATION = -1


async def insert(core: Core, call: Call, tmpl: Template) -> int:
    """``VMTemplatePool::allocate`` under the allocation lock."""
    async with core.templates.lock(ALLOCATION):
        return await _insert(core, call, tmpl)


async def _insert(core: Core, call: Call, tmpl: Template) -> int:
    """``VMTemplatePool::allocate``: name checks, validation, insert (INTERNAL errors)."""
    caller = call.caller
    name = tmpl.get("NAME") or ""
    shared.check_new_name(core, TEMPLATE, name, caller.uid, "TEMPLATE")
    encrypted = core.attr_list(TEMPLATE.encrypted_attr)
    if encrypted:
        tmpl = core.one_key.encrypt_template(tmpl, encrypted)
    tmpl.erase("NAME")
    validate(core, tmpl)
    unit = core.unit()
    oid = unit.allocate(core.templates)
    template = VMTemplate(
        oid=oid,
        name=name,
        uid=caller.uid,
        gid=caller.gid,
        uname=caller.uname,
        gname=caller.gname,
        perms=Permissions.for_new_object(
            caller.uid, caller.gid, caller.umask, core.config.enable_other_permissions
        ),
        regtime=core.now(),
        template=tmpl,
    )
    unit.add(core.templates, template)
    await unit.commit(f"allocate template {oid}")
    return oid


@rpc("one.template.allocate", "s", help="Allocates a new Template")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new virtual machine template."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("TEMPLATE", -1))
    ras = restricted(core, call)
    if ras is not None:
        found = restricted_in(tmpl, ras)
        if found is not None:
            raise AuthorizationError(f"VM Template includes a restricted attribute {found}")
    return await insert(core, call, tmpl)


async def clone_template(
    core: Core,
    call: Call,
    oid: int,
    name: str,
    recursive: bool = False,
    extra: str = "",
    persistent: bool = False,
) -> int:
    """``TemplateAPI::clone``; ``extra`` is merged into the copy (persistent instantiate)."""
    source = shared.get_object(core, TEMPLATE, oid)
    tmpl = source.template.copy()
    if extra:
        uattrs = shared.parse_template(extra)
        try:
            merge_user_attrs(tmpl, uattrs, restricted(core, call))
        except RestrictedError as exc:
            raise AuthorizationError(
                f"User Template includes a restricted attribute {exc.attribute}"
            ) from exc
    tmpl.set("NAME", name)
    core.acl.check_all(
        call.caller,
        [
            (Op.CREATE, TEMPLATE.auth(core, source)),
            (Op.CREATE, shared.ObjectAuth("TEMPLATE", -1)),
        ],
    )
    new_id = await insert(core, call, tmpl)
    if recursive:
        await _clone_images(core, call, new_id, name, persistent)
    return new_id


async def _clone_images(core: Core, call: Call, new_id: int, name: str, persistent: bool) -> None:
    """Clone every DISK image of template ``new_id`` and point the DISKs at the copies."""
    template = core.templates.get(new_id)
    if template is None:
        raise ActionError("VM template was removed during clone operation")
    tmpl = template.template.copy()
    new_ids: list[int] = []
    try:
        for index, disk in enumerate(tmpl.vectors("DISK")):
            img_id = disk_image_id(core, disk, call.uid)
            if img_id is None:
                continue
            new_img = await clone_image(
                core, call, img_id, disk_image_name(name, index), persistent
            )
            for attr in CLONE_REMOVED_DISK_ATTRS:
                disk.pop(attr, None)
            disk["IMAGE_ID"] = str(new_img)
            new_ids.append(new_img)
    except OneError as exc:
        await shared.delete(core, call, TEMPLATE, new_id)
        await delete_images(core, call, new_ids)
        raise ActionError(f"Failed to clone images: {exc.message}") from exc
    async with core.templates.lock(new_id):
        current = core.templates.get(new_id)
        if current is None:
            await delete_images(core, call, new_ids)
            raise ActionError("VM template was removed during clone operation.")
        current = current.copy()
        current.template = tmpl
        await shared.save(core, TEMPLATE, current, f"clone images of template {new_id}")


@rpc("one.template.clone", "isb", required=2, help="Clone a Virtual Machine template")
async def clone(core: Core, call: Call, oid: int, name: str, recursive: bool = False) -> int:
    """Clones an existing virtual machine template."""
    return await clone_template(core, call, oid, name, recursive)


@rpc("one.template.delete", "ib", required=1, help="Deletes a Template")
async def delete(core: Core, call: Call, oid: int, recursive: bool = False) -> int:
    """Deletes a virtual machine template (recursive: and its images)."""
    source = shared.get_authorized(core, call, TEMPLATE, oid, Op.MANAGE)
    ids = image_ids(core, source.template, call.uid)
    await shared.delete(core, call, TEMPLATE, oid)
    if recursive and ids:
        failed = await delete_images(core, call, ids)
        if failed:
            log.warn(
                "Template {oid} deleted, unable to recursively delete image: {ids}",
                oid=oid,
                ids=",".join(str(i) for i in failed),
            )
    return oid


@rpc("one.template.info", "ibb", required=1, help="Returns Template information")
async def info(
    core: Core, call: Call, oid: int, extended: bool = False, decrypt: bool = False
) -> str:
    """Returns virtual machine template information."""
    template = shared.get_object(core, TEMPLATE, oid)
    requests = [(Op.USE, TEMPLATE.auth(core, template))]
    if extended:
        requests += use_requests(core, template.template, call.uid)
    core.acl.check_all(call.caller, requests, ignore_lock=True)
    if not extended:
        return shared.info_body(core, call, TEMPLATE, template, decrypt)
    tmpl = template.template.copy()
    names = core.attr_list(TEMPLATE.encrypted_attr)
    if decrypt and call.is_admin and names:
        tmpl = core.one_key.decrypt_template(tmpl, names)
    extended_disks(core, tmpl, call.uid)
    return str(template.to_xml(tmpl))


@rpc("one.template.update", "isi", required=2, help="Updates a Template")
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates a virtual machine template."""
    shared.get_authorized(core, call, TEMPLATE, oid, Op.MANAGE)
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    try:
        new = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Cannot update template. {exc.parse_error}") from exc
    async with core.templates.lock(oid):
        template = shared.get_object(core, TEMPLATE, oid).copy()
        ras = restricted(core, call)
        if ras is not None:
            found = restricted_change(new, template.template, ras, append=mode == 1)
            if found is not None:
                what = (
                    "User Template includes a restricted attribute"
                    if mode == 1
                    else "Tried to change restricted attribute:"
                )
                raise InternalError(f"Cannot update template. {what} {found}")
        if mode == 0:
            template.template = new
        else:
            template.template.merge(new)
        try:
            validate(core, template.template)
        except InternalError as exc:
            raise InternalError(f"Cannot update template. {exc.message}") from exc
        encrypted = core.attr_list(TEMPLATE.encrypted_attr)
        if encrypted:
            template.template = core.one_key.encrypt_template(template.template, encrypted)
        await shared.save(core, TEMPLATE, template, f"update template {oid}")
    return oid


@rpc("one.template.chmod", "iiiiiiiiiib", required=10, help="Changes permission bits of a Template")
async def chmod(core: Core, call: Call, oid: int, *args: Any) -> int:
    """Changes the permissions of a template (recursive: of its images too)."""
    bits = [int(b) for b in args[:9]]
    recursive = bool(args[9]) if len(args) > 9 else False
    await shared.chmod(core, call, TEMPLATE, oid, bits)
    if not recursive:
        return oid
    template = core.templates.get(oid)
    if template is None:
        raise no_exists(TEMPLATE.word, oid)
    ids = image_ids(core, template.template, call.uid)
    failed = []
    for iid in ids:
        try:
            await shared.chmod(core, call, IMAGE, iid, bits)
        except OneError as exc:
            log.error("[one.template.chmod] {msg}", msg=exc.message)
            failed.append(iid)
    if failed:
        raise ActionError("Cannot chmod image: " + ",".join(str(i) for i in failed))
    return oid


@rpc("one.templatepool.info", "iii", help="Returns the Template pool")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the virtual machine template pool."""
    templates = shared.filtered(core, call, TEMPLATE, filter_flag, start, end)
    return shared.pool_document("VMTEMPLATE_POOL", templates, core.templates)


@rpc("one.template.rename", "is", help="Renames a Template")
async def rename(core: Core, call: Call, oid: int, name: str) -> int:
    return await shared.rename(core, call, TEMPLATE, oid, name)


@rpc("one.template.chown", "iii", help="Changes ownership of a Template")
async def chown(core: Core, call: Call, oid: int, uid: int, gid: int) -> int:
    return await shared.chown(core, call, TEMPLATE, oid, uid, gid)


@rpc("one.template.lock", "iib", required=2, help="Lock a Template")
async def lock(core: Core, call: Call, oid: int, level: int, test: bool = False) -> int:
    return await shared.lock(core, call, TEMPLATE, oid, level, test)


@rpc("one.template.unlock", "i", help="Unlock a MarektPlaceApp")
async def unlock(core: Core, call: Call, oid: int) -> int:
    """(oned's help text, typo included.)"""
    return await shared.unlock(core, call, TEMPLATE, oid)
