"""``one.user.*``, ``one.userpool.info`` and ``one.userquota.*`` (mirrors ``UserAPI``)."""

from __future__ import annotations

from typing import Any

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core, random_password
from oned.errors import (
    ActionError,
    ApiError,
    AuthorizationError,
    InternalError,
    NoExistsError,
    RpcFault,
    no_exists,
)
from oned.objects.base import Op
from oned.objects.group import ONEADMIN_GID, USERS_GID
from oned.objects.quotas import QuotaError
from oned.objects.user import (
    CORE,
    INVALID_NAME_CHARS,
    INVALID_PASS_CHARS,
    LoginToken,
    User,
    sha256_hex,
)
from oned.pools.base import Locks, Unit
from oned.pools.quotas import QuotaTable
from oned.template import Template

MAX_TOKENS = 10

PASSWORD_MAX = {
    "ssh": 16384,
    "x509": 65536,
    "ldap": 256,
    "saml": 12288,
    "server_cipher": 4096,
    "server_x509": 65536,
    "core": 256,
    "sunstone": 256,
}

USER = Family[User](
    type_name="USER",
    word="user",
    pool_root="USER_POOL",
    pool=lambda core: core.users,
    auth=shared.user_auth,
    name_scope="global",
    extra_name_chars=INVALID_NAME_CHARS,
    delete_op=Op.ADMIN,
    restricted_attr="USER_RESTRICTED_ATTR",
    encrypted_attr="USER_ENCRYPTED_ATTR",
)


def password_problem(password: str, driver: str) -> str | None:
    """``User::pass_is_valid``."""
    if not password:
        return "Invalid password, it cannot be empty"
    limit = PASSWORD_MAX.get(driver)
    if limit is not None and len(password.encode()) > limit:
        return (
            "Password is longer than max allowed length. Max allowed length for the "
            f"driver {driver} : {limit} bytes"
        )
    for ch in password:
        if ch in INVALID_PASS_CHARS:
            return f"Invalid password, character '{ch}' is not allowed"
    return None


def stored_password(password: str, driver: str) -> str:
    return sha256_hex(password) if driver == CORE else password


def info_xml(core: Core, user: User, body: str | None = None) -> str:
    """The extended USER document: body, quotas and default quotas."""
    quotas = core.user_quotas.get(user.oid).to_xml()
    body = core.users.body(user.oid) if body is None else body
    return body[: -len("</USER>")] + quotas + core.user_quotas.defaults_xml() + "</USER>"


def _password_required(core: Core, driver: str) -> bool:
    conf = core.config.auth_mad_conf.get(driver, {})
    return conf.get("PASSWORD_REQUIRED", "YES").upper() != "NO"


@rpc("one.user.allocate", "sss**", required=3)
async def allocate(
    core: Core,
    call: Call,
    name: str,
    password: str,
    driver: str,
    gids: Any = None,
    later: Any = None,
) -> int:
    """Allocates a new user in OpenNebula.

    The group list is the 4th parameter. opennebula-cli sends a boolean there and the
    list after it; that form is accepted too.
    """
    if isinstance(gids, bool) and isinstance(later, list):
        gids = later
    if gids is not None and not isinstance(gids, list):
        raise RpcFault(-501, "Parameter that is supposed to be an array is not")
    group_ids: list[int] = []
    for gid in gids or []:
        if type(gid) is not int:
            raise RpcFault(-501, "Parameter that is supposed to be integer is not")
        group_ids.append(gid)
    requests = [(Op.CREATE, shared.ObjectAuth("USER", -1))]
    for gid in group_ids:
        group = core.groups.get(gid)
        if group is None:
            raise no_exists("group", gid)
        if gid != call.caller.gid:
            requests.append((Op.MANAGE, shared.group_auth(core, group)))
    core.acl.check_all(call.caller, requests)
    if group_ids:
        gids_final = group_ids
    elif call.caller.gid == ONEADMIN_GID:
        gids_final = [USERS_GID]
    else:
        gids_final = [call.caller.gid]
    if _password_required(core, driver):
        problem = password_problem(password, driver)
        if problem:
            raise InternalError(problem + ".")
    problem = shared.validate_name(name, INVALID_NAME_CHARS)
    if problem:
        raise InternalError(problem + ".")
    clash = core.users.by_name(name)
    if clash is not None:
        raise InternalError(f"NAME is already taken by USER {clash.oid}.")
    driver = driver or CORE
    async with Locks(*((core.groups, g) for g in set(gids_final))):
        if any(core.groups.get(g) is None for g in gids_final):
            raise InternalError("The array of groups needs to have at least a valid Group ID.")
        if core.users.by_name(name) is not None:
            raise InternalError(f"NAME is already taken by USER {core.users.by_name(name).oid}.")  # type: ignore[union-attr]
        user = await core.add_user(name, stored_password(password, driver), driver, gids_final)
    return user.oid


@rpc("one.user.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes the given user from the pool."""
    user = shared.get_authorized(core, call, USER, oid, Op.ADMIN)
    if oid == 0:
        raise ActionError("Cannot delete user. oneadmin cannot be deleted.")
    async with Locks((core.users, oid), *((core.groups, g) for g in user.groups)):
        user = shared.get_object(core, USER, oid)
        unit = core.unit()
        unit.drop(core.users, oid)
        unit.sql(core.user_quotas.delete(oid), lambda: core.user_quotas.forget(oid))
        for gid in user.groups:
            _leave_group(core, unit, oid, gid)
        from oned.auth import acl

        for rule in list(core.acl.rules.values()):
            if rule.user == acl.INDIVIDUAL | oid:
                core.drop_rule(unit, rule.oid)
        shared.drop_resource_rules(core, unit, "USER", oid)
        unit.then(lambda: core.auth.invalidate(oid))
        await unit.commit(f"delete user {oid}")
    return oid


def _leave_group(core: Core, unit: Unit, uid: int, gid: int) -> None:
    """Remove ``uid`` from group ``gid`` (members and admins, plus admin rules)."""
    group = core.groups.get(gid)
    if group is None:
        return
    group = group.copy()
    group.users.discard(uid)
    if uid in group.admins:
        group.admins.discard(uid)
        core.drop_admin_rules(unit, uid, gid)
    unit.save(core.groups, group)


@rpc("one.user.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns user information."""
    if oid == -1:
        oid = call.uid
    user = shared.get_authorized(core, call, USER, oid, Op.USE, ignore_lock=True)
    return info_xml(core, user, shared.info_body(core, call, USER, user, decrypt))


@rpc("one.userpool.info", "")
async def pool_info(core: Core, call: Call) -> str:
    """Returns the user pool."""
    users = shared.filtered(core, call, USER)
    parts = ["<USER_POOL>"]
    for user in users:
        parts.append(core.users.body(user.oid))
        parts.append(core.user_quotas.body(user.oid))
    parts.append(core.user_quotas.defaults_xml())
    parts.append("</USER_POOL>")
    return "".join(parts)


@rpc("one.user.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the user template."""
    return await shared.update_template(core, call, USER, oid, text, mode)


@rpc("one.user.passwd", "is")
async def passwd(core: Core, call: Call, oid: int, password: str) -> int:
    """Changes the password for the given user."""
    user = shared.get_authorized(core, call, USER, oid, Op.MANAGE)
    conf = core.config.auth_mad_conf.get(user.auth_driver)
    allowed = conf is not None and conf.get("PASSWORD_CHANGE", "NO").upper() == "YES"
    if not allowed and not call.is_admin:
        raise ActionError(f"Password for driver {user.auth_driver} cannot be changed.")
    problem = password_problem(password, user.auth_driver)
    if problem:
        raise ActionError(problem)
    async with core.users.lock(oid):
        user = shared.get_object(core, USER, oid).copy()
        user.password = stored_password(password, user.auth_driver)
        user.tokens = []
        await _save_user(core, user, "passwd")
    return oid


async def _save_user(core: Core, user: User, desc: str) -> None:
    unit = core.unit()
    unit.save(core.users, user)
    unit.then(lambda: core.auth.invalidate(user.oid))
    await unit.commit(f"{desc} user {user.oid}")


@rpc("one.user.chauth", "iss", required=2)
async def chauth(core: Core, call: Call, oid: int, driver: str, password: str = "") -> int:
    """Changes the authentication driver and the password for the given user."""
    shared.get_authorized(core, call, USER, oid, Op.ADMIN)
    async with core.users.lock(oid):
        user = shared.get_object(core, USER, oid).copy()
        user.auth_driver = driver
        if password:
            problem = password_problem(password, driver)
            if problem:
                raise ActionError(problem)
            user.password = stored_password(password, driver)
            user.tokens = []
        await _save_user(core, user, "chauth")
    return oid


@rpc("one.user.enable", "ib")
async def enable(core: Core, call: Call, oid: int, enabled: bool) -> int:
    """Enables or disables a user."""
    shared.get_authorized(core, call, USER, oid, Op.ADMIN)
    if oid == 0:
        raise ActionError("Cannot enable/disable oneadmin user")
    async with core.users.lock(oid):
        user = core.users.get(oid)
        if user is None:
            raise ActionError("User not found")
        if user.enabled == enabled:
            return oid
        user = user.copy()
        user.enabled = enabled
        if not enabled:
            user.tokens = []
        await _save_user(core, user, "enable" if enabled else "disable")
    return oid


@rpc("one.user.quota", "is")
async def quota(core: Core, call: Call, oid: int, text: str) -> int:
    """Sets user quota limits."""
    shared.get_authorized(core, call, USER, oid, Op.ADMIN)
    if oid == 0:
        raise ActionError("Cannot set quotas for oneadmin user")
    tmpl = _parse_action(text)
    tag_vm_quotas(tmpl, "UID", oid)
    async with core.users.lock(oid):
        await store_quotas(core, core.user_quotas, oid, tmpl)
    return oid


def tag_vm_quotas(tmpl: Template, key: str, oid: int) -> None:
    """oned writes the owner (``UID``/``GID``) into every VM vector before applying
    it, so it shows in the "bad format" message too."""
    for vector in tmpl.vectors("VM"):
        vector[key] = str(oid)


async def store_quotas(core: Core, table: QuotaTable, oid: int, tmpl: Template) -> None:
    """Apply a quota template to a user's or group's quotas and commit them."""
    clusters = {c.oid for c in core.clusters.objects()}
    try:
        staged = table.get(oid).with_limits(tmpl, clusters=clusters)
    except QuotaError as exc:
        raise ActionError(str(exc)) from exc
    unit = core.unit()
    unit.sql(table.save(oid, staged), lambda: table.remember(oid, staged))
    await unit.commit(f"quota {table.table} {oid}")


def _parse_action(text: str) -> Template:
    try:
        return shared.parse_str_or_xml(text)
    except shared.TemplateSyntaxError as exc:
        raise ActionError(exc.parse_error) from exc


@rpc("one.user.chgrp", "ii")
async def chgrp(core: Core, call: Call, oid: int, gid: int) -> int:
    """Changes the group of the given user."""
    if gid < 0:
        raise ApiError("Wrong group ID")
    user = shared.get_object(core, USER, oid)
    if _driver_managed(core, user.auth_driver) and gid not in user.groups:
        raise ApiError(f"Groups cannot be manually managed for auth driver {user.auth_driver}")
    group = core.groups.get(gid)
    if group is None:
        raise no_exists("group", gid)
    if oid == 0:
        raise InternalError(
            f"user [0] {user.name} cannot be moved outside of the group [0] oneadmin"
        )
    core.acl.check_all(
        call.caller,
        [(Op.MANAGE, shared.user_auth(core, user)), (Op.USE, shared.group_auth(core, group))],
    )
    if user.gid == gid:
        return oid
    async with Locks((core.users, oid), (core.groups, gid), (core.groups, user.gid)):
        user = shared.get_object(core, USER, oid).copy()
        group = core.groups.get(gid)
        if group is None:
            raise no_exists("group", gid)
        unit = core.unit()
        old = user.gid
        if gid not in user.groups:
            user.groups = [g for g in user.groups if g != old]
            _leave_group(core, unit, oid, old)
        user.gid, user.gname = gid, group.name
        user.groups = sorted({*user.groups, gid})
        joined = group.copy()
        joined.users.add(oid)
        unit.save(core.groups, joined)
        unit.save(core.users, user)
        await unit.commit(f"chgrp user {oid}")
    return oid


def _driver_managed(core: Core, driver: str) -> bool:
    conf = core.config.auth_mad_conf.get(driver, {})
    return conf.get("DRIVER_MANAGED_GROUPS", "NO").upper() == "YES"


async def _edit_group(core: Core, call: Call, oid: int, gid: int, add: bool) -> int:
    user = core.users.get(oid)
    if user is None:
        raise no_exists("user", oid)
    if _driver_managed(core, user.auth_driver):
        raise ActionError(f"Groups cannot be manually managed for auth driver {user.auth_driver}")
    group = core.groups.get(gid)
    if group is None:
        raise no_exists("group", gid)
    core.acl.check_all(
        call.caller,
        [(Op.MANAGE, shared.user_auth(core, user)), (Op.MANAGE, shared.group_auth(core, group))],
    )
    async with Locks((core.users, oid), (core.groups, gid)):
        user = shared.get_object(core, USER, oid).copy()
        unit = core.unit()
        if add:
            if gid in user.groups:
                raise ActionError("User is already in this group")
            user.groups = sorted({*user.groups, gid})
            group = core.groups.get(gid)
            if group is None:
                raise no_exists("group", gid)
            joined = group.copy()
            joined.users.add(oid)
            unit.save(core.groups, joined)
        else:
            if gid == user.gid:
                raise ActionError("Cannot remove user from the primary group")
            if gid not in user.groups:
                raise ActionError("User is not part of this group")
            user.groups = [g for g in user.groups if g != gid]
            _leave_group(core, unit, oid, gid)
        unit.save(core.users, user)
        await unit.commit(f"{'addgroup' if add else 'delgroup'} user {oid}")
    return oid


@rpc("one.user.addgroup", "ii")
async def addgroup(core: Core, call: Call, oid: int, gid: int) -> int:
    """Adds the user to a secondary group."""
    return await _edit_group(core, call, oid, gid, True)


@rpc("one.user.delgroup", "ii")
async def delgroup(core: Core, call: Call, oid: int, gid: int) -> int:
    """Removes the user from a secondary group."""
    return await _edit_group(core, call, oid, gid, False)


@rpc("one.user.login", "ssii", required=3)
async def login(
    core: Core, call: Call, username: str, token: str, valid: int, egid: int = -1
) -> str:
    """Generates or sets a login token."""
    user = core.users.by_name(username)
    if user is None:
        raise NoExistsError("", -1)
    core.acl.check(call.caller, Op.MANAGE, shared.user_auth(core, user))
    max_time = core.config.max_token_time(user.auth_driver)
    async with core.users.lock(user.oid):
        user = shared.get_object(core, USER, user.oid).copy()
        if max_time == 0:
            user.tokens = []
            await _save_user(core, user, "login")
            raise ActionError(f"Login tokens are disabled for driver {user.auth_driver}")
        if max_time > 0 and (valid > max_time or valid == -1):
            valid = max_time
        now = core.now()
        if valid == 0:
            if token == "":
                user.tokens = []
            else:
                kept = [t for t in user.tokens if t.token != token]
                if len(kept) == len(user.tokens):
                    raise ApiError(f"Could not find token: {token}")
                user.tokens = kept
            await _save_user(core, user, "login")
            return token if token else " "
        if valid < -1:
            raise ApiError("Wrong valid period for token")
        if egid != -1:
            if not call.is_admin and (egid not in user.groups or egid not in call.caller.group_ids):
                raise ApiError("EGID is not in user group list")
        elif set(user.groups) != set(call.caller.group_ids):
            raise ApiError("Cannot create a full token with a specific group token")
        user.tokens = [t for t in user.tokens if not t.expired(now)]
        if len(user.tokens) >= MAX_TOKENS:
            raise ApiError("Max number of tokens limit reached.")
        if not token:
            token = random_password()
        if all(t.token != token for t in user.tokens):
            expiration = -1 if valid == -1 else now + valid
            user.tokens.append(LoginToken(token, expiration, egid))
            user.tokens.sort(key=lambda t: t.token)
        unit = core.unit()
        unit.save(core.users, user)
        await unit.commit(f"login user {user.oid}")
    return token


@rpc("one.userquota.info", "")
async def default_quota_info(core: Core, call: Call) -> str:
    """Returns the default user quota limits."""
    return core.user_quotas.defaults_xml()


@rpc("one.userquota.update", "s")
async def default_quota_update(core: Core, call: Call, text: str) -> str:
    """Updates the default user quota limits."""
    return await update_defaults(core, call, text, core.user_quotas)


async def update_defaults(core: Core, call: Call, text: str, table: QuotaTable) -> str:
    """``SharedAPI::quota_update`` for user and group default quotas."""
    if call.caller.gid != ONEADMIN_GID:
        raise AuthorizationError(
            "The default quotas can only be updated by users in the oneadmin group"
        )
    tmpl = _parse_action(text)
    vms = tmpl.vectors("VM")
    if len(vms) > 1:
        raise ActionError("Only one default VM quota can be defined")
    if any(v.get("CLUSTER_IDS") for v in vms):
        raise ActionError("CLUSTER_IDS attribute is not allowed for default VM quota")
    staged = table.defaults.copy()
    try:
        staged.set_limits(tmpl, is_default=True)
    except QuotaError as exc:
        # oned changes its in-memory defaults in place: what was applied before the
        # bad vector is shown from now on (and stored with the next good update).
        table.defaults = staged
        raise ActionError(str(exc)) from exc
    unit = core.unit()
    unit.sql(table.save_defaults(staged), lambda: setattr(table, "defaults", staged))
    await unit.commit("default quotas")
    return str(table.defaults_xml())
