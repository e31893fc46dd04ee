"""What VM templates do to the images and security groups their DISKs and NICs name.

The image operations go through the image family's ``one.image.clone``/``delete``
handlers (``ImageAPI::clone``/``del_image`` in oned), so a recursive clone or delete
behaves exactly like the client calls would.
"""

from __future__ import annotations

import re
from typing import Any

from oned.api import shared
from oned.api.context import Call
from oned.api.secgroup import SECGROUP
from oned.api.shared import Family, ObjectAuth
from oned.core import Core
from oned.errors import ActionError, OneError
from oned.log import logger
from oned.objects.base import Op
from oned.template import Template
from oned.vm_disks import disk_image_id, disk_images

log = logger("ReM")

IMAGE = Family[Any](
    type_name="IMAGE",
    word="image",
    pool_root="IMAGE_POOL",
    pool=lambda core: core.images,
    auth=shared.owned_auth("IMAGE"),
    lockable=True,
    name_scope="owner",
)


def image_ids(core: Core, tmpl: Template, uid: int) -> list[int]:
    """``VirtualMachineDisks::get_image_ids``: the images the DISKs name, ascending."""
    ids = {disk_image_id(core, disk, uid) for disk in tmpl.vectors("DISK")}
    return sorted(i for i in ids if i is not None)


async def clone_image(core: Core, call: Call, oid: int, name: str, persistent: bool) -> int:
    """``ImageAPI::clone`` into the image's own datastore (``one.image.clone``).

    A persistent copy (``instantiate`` with persistent) is the clone made persistent
    right after (``one.image.persistent``), as the image family's clone has no flag.
    """
    from oned.api import image

    clone_fn = getattr(image, "clone", None)
    if clone_fn is None:
        raise ActionError("image cloning is not available")
    new_id = int(await clone_fn(core, call, oid, name, -1))
    if persistent:
        await image.persistent(core, call, new_id, True)
    return new_id


async def delete_images(core: Core, call: Call, ids: list[int]) -> list[int]:
    """``ImageAPI::del_image`` of each image; returns those that could not be deleted."""
    from oned.api import image

    delete_fn = getattr(image, "delete", None)
    failed = []
    for iid in ids:
        try:
            if delete_fn is None:
                raise ActionError("image deletion is not available")
            await delete_fn(core, call, iid, False)
        except OneError as exc:
            log.warn("{msg}", msg=exc.message)
            failed.append(iid)
    return failed


def use_requests(core: Core, tmpl: Template, uid: int) -> list[tuple[Op, ObjectAuth]]:
    """``VirtualMachine::set_auth_request``: USE on the DISK images and on the security
    groups NICs name (networks and VM groups join when their families exist)."""
    requests = [(Op.USE, IMAGE.auth(core, image)) for image in disk_images(core, tmpl, uid)]
    for name in ("NIC", "NIC_ALIAS"):
        for nic in tmpl.vectors(name):
            if nic.get("NETWORK_MODE", "").lower() == "auto":
                continue
            for sg_id in sorted(_ids(nic.get("SECURITY_GROUPS", ""))):
                group = core.secgroups.get(sg_id)
                if group is not None:
                    requests.append((Op.USE, SECGROUP.auth(core, group)))
    return requests


def _ids(text: str) -> set[int]:
    """``one_util::split_unique<int>`` of a comma list (bad items skipped)."""
    out = set()
    for part in text.split(","):
        m = re.match(r"\s*([+-]?[0-9]+)", part)
        if m:
            out.add(int(m.group(1)))
    return out
