"""``one.vntemplate.*`` and ``one.vntemplatepool.info`` (mirrors ``VNTemplateAPI`` and
``VNTemplate::insert``).

A VN template is an owned, lockable template with a mandatory VN_MAD; ``instantiate``
creates a network from it (plus the caller's extra template, whose ARs are added and
whose other attributes are merged), owned by the caller, in the template's
CLUSTER_IDS (default cluster 0), with TEMPLATE_ID and TEMPLATE_NAME recorded.
"""

from __future__ import annotations

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.instantiate import _as_uid_gid as as_uid_gid
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.api.vnet import ar_restricted, create, restricted_in
from oned.core import Core
from oned.errors import AllocateError, AuthorizationError, InternalError
from oned.managers.ipam import vlanauth
from oned.objects.base import Op, Permissions
from oned.objects.vntemplate import VNTemplate
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml

VNTEMPLATE = Family[VNTemplate](
    type_name="VNTEMPLATE",
    word="virtual network template",
    pool_root="VNTEMPLATE_POOL",
    pool=lambda core: core.vntemplates,
    auth=shared.owned_auth("VNTEMPLATE"),
    lockable=True,
    name_scope="owner",
    restricted_attr="VNET_RESTRICTED_ATTR",
)


async def insert(core: Core, call: Call, tmpl: Template) -> int:
    """``VNTemplatePool::allocate`` + ``VNTemplate::insert`` (INTERNAL errors)."""
    caller = call.caller
    name = tmpl.get("NAME") or ""
    shared.check_new_name(core, VNTEMPLATE, name, caller.uid, "VN TEMPLATE")
    tmpl.erase("NAME")
    if not tmpl.get("VN_MAD"):
        raise InternalError("Error inserting Template in DB. VN_MAD is mandatory")
    unit = core.unit()
    oid = unit.allocate(core.vntemplates)
    template = VNTemplate(
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
    unit.add(core.vntemplates, template)
    await unit.commit(f"allocate VN template {oid}")
    return oid


@rpc("one.vntemplate.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new virtual network template."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("VNTEMPLATE", -1))
    if not call.is_admin:
        name = restricted_in(core, tmpl)
        if name:
            raise AuthorizationError(f"VNTEMPLATE includes a restricted attribute {name}")
    return await insert(core, call, tmpl)


@rpc("one.vntemplate.clone", "is")
async def clone(core: Core, call: Call, oid: int, name: str) -> int:
    """Clones a virtual network template."""
    source = shared.get_object(core, VNTEMPLATE, oid)
    core.acl.check_all(
        call.caller,
        [
            (Op.USE, VNTEMPLATE.auth(core, source)),
            (Op.CREATE, shared.ObjectAuth("VNTEMPLATE", -1)),
        ],
    )
    tmpl = source.template.copy()
    tmpl.set("NAME", name)
    return await insert(core, call, tmpl)


def _merge(core: Core, call: Call, tmpl: Template, extra: str) -> None:
    """``VNTemplateAPI::merge``: extra ARs are added, other attributes merged."""
    if not extra:
        return
    try:
        user = parse_str_or_xml(extra)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Parse error: {exc}") from exc
    ars = user.vectors("AR")
    user.erase("AR")
    if not call.is_admin:
        for attrs in ars:
            bad = ar_restricted(core, attrs)
            if bad:
                raise AuthorizationError(f"Extra Template includes a restricted attribute AR/{bad}")
        bad = restricted_in(core, user)
        if bad:
            raise AuthorizationError(f"Extra Template includes a restricted attribute {bad}")
    for attrs in ars:
        tmpl.add("AR", dict(attrs))
    tmpl.merge(user)


@rpc("one.vntemplate.instantiate", "iss", required=2)
async def instantiate(core: Core, call: Call, oid: int, name: str, extra: str = "") -> int:
    """Creates a virtual network from the template; returns its id."""
    source = shared.get_object(core, VNTEMPLATE, oid)
    tmpl = source.template.copy()
    clusters: set[int] = set()
    for piece in (tmpl.get("CLUSTER_IDS") or "").split(","):
        part = piece.strip()
        if part.isdigit() and core.clusters.get(int(part)) is not None:
            clusters.add(int(part))
    if not (tmpl.get("CLUSTER_IDS") or ""):
        clusters = {0}
    _merge(core, call, tmpl, extra)
    if extra:
        vlanauth.validate(core, call, parse_str_or_xml(extra), oid)
    tmpl.erase("NAME")
    tmpl.set("TEMPLATE_NAME", source.name)
    tmpl.set("TEMPLATE_ID", str(oid))
    if name:
        tmpl.set("NAME", name)
    owner = as_uid_gid(core, call, tmpl)
    shared.authorize(core, call, VNTEMPLATE, source, Op.USE)
    try:
        return await create(core, call, tmpl, clusters, template_id=oid, owner=owner)
    except InternalError as exc:
        raise AllocateError(exc.message, word="virtual network") from exc


@rpc("one.vntemplate.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a virtual network template."""
    return await shared.delete(core, call, VNTEMPLATE, oid)


@rpc("one.vntemplatepool.info", "iii")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the virtual network template pool."""
    objs = shared.filtered(core, call, VNTEMPLATE, filter_flag, start, end)
    return shared.pool_document("VNTEMPLATE_POOL", objs, core.vntemplates)


declare(VNTEMPLATE, "vntemplate", "info", "update", "rename", "chmod", "chown", "lock", "unlock")
