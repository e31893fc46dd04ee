"""The template side of ``one.template.instantiate`` (mirrors ``TemplateAPI::instantiate``
and the first half of ``instantiate_helper``).

``prepare_instantiate`` does everything oned does before it allocates the VM: the
persistent copy (a recursive clone with the user's text merged in), the merge of the
extra template with VM_RESTRICTED_ATTR for non-admins, AS_UID/AS_GID, the
TEMPLATE_NAME/TEMPLATE_ID/NAME attributes and the authorization (USE on the template,
CREATE TEMPLATE when extra text is given, USE on DISK images and NIC security groups).
Quotas and the VM allocation itself belong to the VM family, which registers
``one.template.instantiate`` on top of this (``oned.api.vm``).
"""

from __future__ import annotations

from dataclasses import dataclass

from oned.api import shared
from oned.api.context import Call
from oned.api.vmtemplate import TEMPLATE, clone_template, restricted
from oned.api.vmtemplate_images import use_requests
from oned.core import Core
from oned.errors import ActionError, AuthorizationError, NoExistsError
from oned.objects.base import Op
from oned.template import Template
from oned.template_merge import (
    RestrictedError,
    instantiate_template,
    merge_user_attrs,
    persistent_plan,
)


@dataclass(frozen=True)
class Instantiation:
    """What the VM allocation needs: its template and who will own it."""

    template_id: int
    template: Template
    hold: bool
    uid: int
    gid: int
    uname: str
    gname: str


async def prepare_instantiate(
    core: Core,
    call: Call,
    oid: int,
    name: str,
    hold: bool = False,
    extra: str = "",
    persistent: bool = False,
) -> Instantiation:
    """Checks and template of ``one.template.instantiate`` (errors as oned's)."""
    source = shared.get_object(core, TEMPLATE, oid)
    if source.is_vrouter():
        raise ActionError("Virtual router templates cannot be instantiated")
    if persistent:
        plan = persistent_plan(oid, source.name, name, extra)
        oid = await clone_template(core, call, oid, plan.clone_name, True, plan.clone_extra, True)
        extra = plan.extra
    return _helper(core, call, oid, name, hold, extra)


def _helper(
    core: Core,
    call: Call,
    oid: int,
    name: str,
    hold: bool,
    extra: str,
    extra_tmpl: Template | None = None,
) -> Instantiation:
    """``instantiate_helper``; ``extra_tmpl`` (a virtual router's NICs...) replaces the
    attributes it names after the user's merge, as ``Template::merge`` does."""
    source = shared.get_object(core, TEMPLATE, oid)
    tmpl = source.template.copy()
    uattrs = shared.parse_template(extra)
    try:
        merge_user_attrs(tmpl, uattrs, restricted(core, call))
    except RestrictedError as exc:
        raise AuthorizationError(
            f"User Template includes a restricted attribute {exc.attribute}"
        ) from exc
    if extra_tmpl is not None:
        for attr in {n for n, _ in extra_tmpl.items}:
            tmpl.erase(attr)
        for attr, value in extra_tmpl.items:
            if value:
                tmpl.add(attr, value)
    owner = _as_uid_gid(core, call, tmpl)
    vm_tmpl = instantiate_template(tmpl, source.name, oid, name)
    requests = [(Op.USE, TEMPLATE.auth(core, source))]
    if extra:
        requests.append((Op.CREATE, shared.ObjectAuth("TEMPLATE", -1)))
    requests += use_requests(core, vm_tmpl, call.uid)
    core.acl.check_all(call.caller, requests)
    return Instantiation(oid, vm_tmpl, hold, *owner)


def _as_uid_gid(core: Core, call: Call, tmpl: Template) -> tuple[int, int, str, str]:
    """``SharedAPI::as_uid_gid``: AS_UID/AS_GID make another user/group the owner."""
    caller = call.caller
    uid, gid, uname, gname = caller.uid, caller.gid, caller.uname, caller.gname
    as_uid = _int_attr(tmpl, "AS_UID")
    as_gid = _int_attr(tmpl, "AS_GID")
    user = group = None
    if as_uid is not None:
        tmpl.erase("AS_UID")
        user = core.users.get(as_uid)
        if user is None:
            raise NoExistsError("", as_uid, "user")
    if as_gid is not None:
        tmpl.erase("AS_GID")
        group = core.groups.get(as_gid)
        if group is None:
            raise NoExistsError("", as_gid, "group")
    if caller.uid != 0:
        requests = []
        if user is not None and user.oid > 0:
            requests.append((Op.MANAGE, shared.user_auth(core, user)))
        if group is not None and group.oid > 0:
            requests.append((Op.MANAGE, shared.group_auth(core, group)))
        if requests:
            core.acl.check_all(caller, requests)
    if user is not None and user.oid > 0:
        uid, uname = user.oid, user.name
    if group is not None and group.oid > 0:
        gid, gname = group.oid, group.name
    return uid, gid, uname, gname


def _int_attr(tmpl: Template, name: str) -> int | None:
    """``Template::get(name, int&)``: the first single attribute, when an integer."""
    value = tmpl.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
