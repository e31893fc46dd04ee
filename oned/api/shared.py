"""Shared request logic every object family reuses (mirrors ``SharedAPI``).

A family is a small ``Family`` declaration (its pool, ACL type, object word, lock and
name rules); the functions here implement info, update, rename, chmod, chown,
lock/unlock, delete and the pool filters once, for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from oned.api.codec import WireParts
from oned.api.context import Call
from oned.auth.authorize import ObjectAuth
from oned.core import Core
from oned.errors import (
    ActionError,
    ApiError,
    AuthorizationError,
    InternalError,
    OneError,
    no_exists,
)
from oned.objects.base import Lock, Op, Permissions
from oned.pools.base import Pool, Unit
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml

__all__ = [
    "Family",
    "ObjectAuth",
    "TemplateSyntaxError",
    "parse_str_or_xml",
]

BASE_INVALID_NAME_CHARS = "&|:\\\";/'#{}$<>\t\n\v\f\r"
MAX_NAME_LENGTH = 128

T = TypeVar("T")


@dataclass(frozen=True)
class Family(Generic[T]):
    """How one object type plugs into the shared machinery."""

    type_name: str
    word: str
    pool_root: str
    pool: Callable[[Core], Pool[Any]]
    auth: Callable[[Core, Any], ObjectAuth]
    lockable: bool = False
    name_scope: str = "owner"
    extra_name_chars: str = ""
    delete_op: Op = Op.MANAGE
    restricted_attr: str | None = None
    encrypted_attr: str | None = None
    #: ``post_update_template`` + ``extra_updates``: checks and derived changes of an
    #: updated copy, staged in the same unit (raise a ``OneError`` to refuse).
    on_update: Callable[[Core, Unit, Any], None] | None = None
    #: ``batch_rename``: propagate a new name to the objects that show it.
    on_rename: Callable[[Core, Unit, Any], None] | None = None
    #: ``PoolSQL::drop`` refusals: the reason an object cannot be deleted, or None.
    drop_check: Callable[[Core, Any], str | None] | None = None


def validate_name(name: str, extra_chars: str = "") -> str | None:
    """``PoolObjectSQL::name_is_valid``: None when valid, else the reason."""
    if not name:
        return "Invalid NAME, it cannot be empty"
    for ch in name:
        if ch in BASE_INVALID_NAME_CHARS or ch in extra_chars:
            return f"Invalid NAME, char '{ch}' is not allowed"
    if len(name.encode()) > MAX_NAME_LENGTH:
        return f"Invalid NAME, max length is {MAX_NAME_LENGTH} chars"
    return None


def parse_template(text: str) -> Template:
    """Parse a client template; failures are INTERNAL ``Parse error: ...``."""
    try:
        return parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(exc.parse_error) from exc


def owned_auth(type_name: str) -> Callable[[Core, Any], ObjectAuth]:
    """ObjectAuth of objects with UID/GID/PERMISSIONS (and maybe LOCK)."""

    def auth(core: Core, obj: Any) -> ObjectAuth:
        lock: Lock | None = getattr(obj, "lock", None)
        return ObjectAuth(
            type_name,
            obj.oid,
            obj.uid,
            obj.gid,
            obj.perms,
            frozenset(getattr(obj, "clusters", ()) or ()),
            lock.locked if lock is not None else 0,
        )

    return auth


def info_body(core: Core, call: Call, family: Family[Any], obj: Any, decrypt: bool) -> str:
    """The stored body, or (admins asking to decrypt) one with clear attributes."""
    names = core.attr_list(family.encrypted_attr)
    if not (decrypt and call.is_admin and names):
        return family.pool(core).body(obj.oid)
    clear = obj.copy()
    clear.template = core.one_key.decrypt_template(obj.template, names)
    return str(clear.to_xml())


def get_object(core: Core, family: Family[Any], oid: int) -> Any:
    obj = family.pool(core).get(oid)
    if obj is None:
        raise no_exists(family.word, oid)
    return obj


def authorize(
    core: Core, call: Call, family: Family[Any], obj: Any, op: Op, ignore_lock: bool = False
) -> None:
    core.acl.check(call.caller, op, family.auth(core, obj), ignore_lock)


def get_authorized(
    core: Core, call: Call, family: Family[Any], oid: int, op: Op, ignore_lock: bool = False
) -> Any:
    obj = get_object(core, family, oid)
    authorize(core, call, family, obj, op, ignore_lock)
    return obj


def name_clash(core: Core, family: Family[Any], name: str, uid: int, skip: int = -1) -> Any:
    """The object that already uses ``name`` in the family's uniqueness scope."""
    if family.name_scope == "none":
        return None
    pool = family.pool(core)
    if family.name_scope == "global":
        found = pool.by_name(name)
        return found if found is not None and found.oid != skip else None
    for obj in pool.objects():
        if obj.name != name or obj.oid == skip:
            continue
        if getattr(obj, "uid", -1) == uid:
            return obj
    return None


def check_new_name(
    core: Core,
    family: Family[Any],
    name: str,
    uid: int,
    label: str,
    error: type[OneError] = InternalError,
) -> None:
    """``PoolSQL::allocate``'s name checks: a valid NAME not yet taken in the family's
    scope (``NAME is already taken by <label> <id>.``)."""
    problem = validate_name(name, family.extra_name_chars)
    if problem:
        raise error(problem)
    clash = name_clash(core, family, name, uid)
    if clash is not None:
        raise error(f"NAME is already taken by {label} {clash.oid}.")


async def save(core: Core, family: Family[Any], obj: Any, desc: str) -> None:
    unit = core.unit()
    unit.save(family.pool(core), obj)
    await unit.commit(desc)


async def replace_document(
    core: Core, call: Call, family: Family[Any], oid: int, parse: Callable[[], Any], desc: str
) -> int:
    """``one.<family>.updatedb`` (a federation master pushing an object): oneadmin only,
    the object must exist, ``parse()`` builds its new document (``InternalError``
    "Cannot update object from XML" when it cannot) and it must keep its id."""
    if call.uid != 0:
        raise AuthorizationError()
    async with family.pool(core).lock(oid):
        get_object(core, family, oid)
        obj = parse()
        if obj.oid != oid:
            raise InternalError("Consistency check failed")
        await save(core, family, obj, f"{desc} {oid}")
    return oid


def check_restricted(
    core: Core, family: Family[Any], old: Template, new: Template, merge: bool
) -> None:
    """Non-admins may not add or change restricted attributes."""

    def refuse(name: str) -> InternalError:
        if merge:
            return InternalError(
                f"Cannot update template. User Template includes a restricted attribute {name}"
            )
        return InternalError(
            f"Cannot update template. Tried to change restricted attribute: {name}"
        )

    for name in core.attr_list(family.restricted_attr):
        if "/" in name:
            vec, key = name.split("/", 1)
            olds = [v.get(key) for v in old.vectors(vec)]
            for v in new.vectors(vec):
                if key in v and v[key] not in olds:
                    raise refuse(f"{vec}/{key}")
        elif new.get(name) is not None and new.get(name) != old.get(name):
            raise refuse(name)


async def update_template(
    core: Core, call: Call, family: Family[Any], oid: int, text: str, mode: int
) -> int:
    """``one.X.update``: 0 replaces the template, 1 merges it."""
    get_authorized(core, call, family, oid, Op.MANAGE)
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    try:
        new = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Cannot update template. {exc.parse_error}") from exc
    pool = family.pool(core)
    async with pool.lock(oid):
        obj = get_object(core, family, oid)
        if not call.is_admin:
            check_restricted(core, family, obj.template, new, merge=mode == 1)
        obj = obj.copy()
        if mode == 0:
            kept = _restricted_values(core, family, obj.template) if not call.is_admin else []
            obj.template = new
            for name, value in kept:
                if name not in obj.template:
                    obj.template.add(name, value)
        else:
            obj.template.merge(new)
        unit = core.unit()
        if family.on_update is not None:
            family.on_update(core, unit, obj)
        encrypted = core.attr_list(family.encrypted_attr)
        if encrypted:
            obj.template = core.one_key.encrypt_template(obj.template, encrypted)
        unit.save(pool, obj)
        await unit.commit(f"update {family.word} {oid}")
    return oid


def _restricted_values(core: Core, family: Family[Any], tmpl: Template) -> list[Any]:
    names = {n for n in core.attr_list(family.restricted_attr) if "/" not in n}
    return [(n, v) for n, v in tmpl.items if n in names]


async def rename(core: Core, call: Call, family: Family[Any], oid: int, name: str) -> int:
    obj = get_authorized(core, call, family, oid, Op.MANAGE)
    problem = validate_name(name, family.extra_name_chars)
    if problem:
        raise ActionError(problem)
    if obj.name == name:
        return oid
    clash = name_clash(core, family, name, getattr(obj, "uid", -1), skip=oid)
    if clash is not None:
        raise ActionError(
            f"{family.word} cannot be renamed to {name} because it "
            f"collides with {family.word} {clash.oid}"
        )
    pool = family.pool(core)
    async with pool.lock(oid):
        obj = get_object(core, family, oid).copy()
        obj.name = name
        unit = core.unit()
        unit.save(pool, obj)
        if family.on_rename is not None:
            family.on_rename(core, unit, obj)
        await unit.commit(f"rename {family.word} {oid}")
    return oid


async def chmod(core: Core, call: Call, family: Family[Any], oid: int, bits: list[int]) -> int:
    obj = get_object(core, family, oid)
    if any(b not in (-1, 0, 1) for b in bits):
        raise InternalError("New permission values must be -1, 0 or 1")
    current = obj.perms.values()
    wanted = [c if b == -1 else b for b, c in zip(bits, current, strict=True)]
    admin_change = any(wanted[i] != current[i] for i in (2, 5, 8))
    authorize(core, call, family, obj, Op.ADMIN if admin_change else Op.MANAGE)
    other_change = any(wanted[i] != current[i] for i in (6, 7, 8))
    if other_change and not core.config.enable_other_permissions and not call.is_admin:
        raise AuthorizationError("'other' permissions is disabled in oned.conf")
    pool = family.pool(core)
    async with pool.lock(oid):
        obj = get_object(core, family, oid).copy()
        obj.perms = Permissions(*wanted)
        await save(core, family, obj, f"chmod {family.word} {oid}")
    return oid


async def chown(
    core: Core, call: Call, family: Family[Any], oid: int, new_uid: int, new_gid: int
) -> int:
    obj = get_object(core, family, oid)
    if new_uid == obj.uid:
        new_uid = -1
    if new_gid == obj.gid:
        new_gid = -1
    new_user = core.users.get(new_uid) if new_uid >= 0 else None
    if new_uid >= 0 and new_user is None:
        raise no_exists("user", new_uid)
    new_group = core.groups.get(new_gid) if new_gid >= 0 else None
    if new_gid >= 0 and new_group is None:
        raise no_exists("group", new_gid)
    requests = [(Op.MANAGE, family.auth(core, obj))]
    if new_user is not None:
        requests.append((Op.MANAGE, user_auth(core, new_user)))
    if new_group is not None:
        requests.append((Op.USE, group_auth(core, new_group)))
    core.acl.check_all(call.caller, requests)
    if new_user is not None and family.name_scope == "owner":
        clash = name_clash(core, family, obj.name, new_uid, skip=oid)
        if clash is not None:
            raise InternalError(
                f"user [{new_uid}] already owns {family.word} [{clash.oid}] with NAME {obj.name}"
            )
    if new_user is None and new_group is None:
        return oid
    pool = family.pool(core)
    async with pool.lock(oid):
        obj = get_object(core, family, oid).copy()
        if new_user is not None:
            obj.uid, obj.uname = new_user.oid, new_user.name
        if new_group is not None:
            obj.gid, obj.gname = new_group.oid, new_group.name
        await save(core, family, obj, f"chown {family.word} {oid}")
    return oid


def _check_lockable(core: Core, call: Call, family: Family[Any], oid: int) -> None:
    """lock/unlock need MANAGE, whatever lock the object already has."""
    obj = get_object(core, family, oid)
    if not family.lockable:
        raise AuthorizationError("Object cannot be locked.")
    authorize(core, call, family, obj, Op.MANAGE, ignore_lock=True)


async def lock(
    core: Core, call: Call, family: Family[Any], oid: int, level: int, test: bool
) -> int:
    _check_lockable(core, call, family, oid)
    if level == 4:
        level = 1
    if level not in (1, 2, 3):
        raise ActionError("Wrong lock level specified")
    pool = family.pool(core)
    async with pool.lock(oid):
        obj = get_object(core, family, oid)
        current: Lock = obj.lock
        if current.locked:
            if test:
                raise ActionError(str(current.time))
            if current.owner != call.uid and not call.is_admin:
                raise ActionError("Error trying to lock the resource.")
        obj = obj.copy()
        obj.lock = Lock(level, call.uid, core.now(), call.req_id)
        await save(core, family, obj, f"lock {family.word} {oid}")
    return oid


async def unlock(core: Core, call: Call, family: Family[Any], oid: int) -> int:
    _check_lockable(core, call, family, oid)
    pool = family.pool(core)
    async with pool.lock(oid):
        obj = get_object(core, family, oid)
        if not obj.lock.locked:
            return oid
        if obj.lock.owner != call.uid and not call.is_admin:
            raise ActionError("Cannot unlock: Lock is owned by another user")
        obj = obj.copy()
        obj.lock = Lock()
        await save(core, family, obj, f"unlock {family.word} {oid}")
    return oid


async def delete(
    core: Core,
    call: Call,
    family: Family[Any],
    oid: int,
    extra: Callable[[Unit, Any], None] | None = None,
) -> int:
    """Drop an object and the ACL rules naming it."""
    obj = get_authorized(core, call, family, oid, family.delete_op)
    pool = family.pool(core)
    async with pool.lock(oid):
        obj = get_object(core, family, oid)
        reason = family.drop_check(core, obj) if family.drop_check is not None else None
        if reason:
            raise ActionError(f"Cannot delete {family.word}. {reason}")
        unit = core.unit()
        unit.drop(pool, oid)
        if extra is not None:
            extra(unit, obj)
        drop_resource_rules(core, unit, family.type_name, oid)
        await unit.commit(f"delete {family.word} {oid}")
    return oid


def drop_resource_rules(core: Core, unit: Unit, type_name: str, oid: int) -> None:
    """``AclManager::del_resource_rules``: rules whose resource is exactly ``TYPE/#oid``
    (oned keeps ``IMAGE+TEMPLATE/#7`` when image 7 goes)."""
    from oned.auth import acl

    wanted = acl.TYPES.get(type_name, 0) | acl.INDIVIDUAL | oid
    for rule in list(core.acl.rules.values()):
        if rule.resource == wanted:
            core.drop_rule(unit, rule.oid)


def user_auth(core: Core, user: Any) -> ObjectAuth:
    """Users own themselves with ``um-`` owner bits."""
    return ObjectAuth("USER", user.oid, user.oid, user.gid, Permissions(1, 1, 0))


def group_auth(core: Core, group: Any) -> ObjectAuth:
    """Groups are owned by oneadmin; members may USE them."""
    return ObjectAuth("GROUP", group.oid, 0, group.oid, Permissions(1, 1, 0, 1, 0, 0))


def system_auth(type_name: str) -> Callable[[Core, Any], ObjectAuth]:
    """Objects owned by oneadmin with no permission bits for others (host, zone...)."""

    def auth(core: Core, obj: Any) -> ObjectAuth:
        cids = getattr(obj, "clusters", None)
        return ObjectAuth(type_name, obj.oid, 0, 0, Permissions(1, 1, 0), frozenset(cids or ()))

    return auth


def filtered(
    core: Core,
    call: Call,
    family: Family[Any],
    filter_flag: int = -2,
    start: int = -1,
    end: int = -1,
    extra: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """Pool filter (-4 group, -3 mine, -2 all visible, -1 mine+groups, >=0 uid),
    id range (``end >= -1``) or paging (``end < -1``: offset ``start``, size ``-end``),
    in API_LIST_ORDER."""
    if filter_flag < -4:
        raise ApiError("Incorrect filter_flag")
    caller = call.caller
    objs: Iterable[Any] = family.pool(core).objects()
    if filter_flag == -4:
        objs = [o for o in objs if getattr(o, "gid", -1) == caller.gid]
    elif filter_flag == -3:
        objs = [o for o in objs if getattr(o, "uid", -1) == caller.uid]
    elif filter_flag == -1:
        objs = [
            o
            for o in objs
            if getattr(o, "uid", -1) == caller.uid or getattr(o, "gid", -1) in caller.group_ids
        ]
    elif filter_flag >= 0:
        objs = [o for o in objs if getattr(o, "uid", -1) == filter_flag]
    if filter_flag != -3 and not core.acl.whole_pool(caller, family.type_name):
        objs = [o for o in objs if core.acl.authorize(caller, Op.USE, family.auth(core, o))]
    if extra is not None:
        objs = [o for o in objs if extra(o)]
    result = list(objs)
    desc = list_order_desc(core, call)
    if end >= -1:
        if start != -1:
            result = [o for o in result if o.oid >= start and (end == -1 or o.oid <= end)]
        result.sort(key=lambda o: o.oid, reverse=desc)
        return result
    result.sort(key=lambda o: o.oid, reverse=desc)
    offset = max(start, 0)
    return result[offset : offset - end]


def list_order_desc(core: Core, call: Call) -> bool:
    """API_LIST_ORDER, overridable by ``OPENNEBULA=[API_LIST_ORDER=..]`` in the
    caller's user template, then in its group's."""
    for holder in (core.users.get(call.uid), core.groups.get(call.caller.gid)):
        vector = holder.template.get_vector("OPENNEBULA") if holder is not None else None
        order = (vector or {}).get("API_LIST_ORDER", "").upper()
        if order in ("ASC", "DESC"):
            return order == "DESC"
    return core.config.api_list_order_desc


def pool_document(root: str, objs: Iterable[Any], pool: Pool[Any]) -> WireParts:
    """A pool listing: the stored bodies, each escaped and encoded once per change,
    written to the client piece by piece."""
    body = pool.wire_body
    parts = WireParts([f"&lt;{root}&gt;".encode()])
    parts.extend(body(o.oid) for o in objs)
    parts.append(f"&lt;/{root}&gt;".encode())
    return parts
