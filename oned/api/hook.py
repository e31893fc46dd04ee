"""``one.hook.*``, ``one.hookpool.info`` and ``one.hooklog.info`` (mirrors ``RMHookAPI``,
``HookPoolAPI`` and the shared requests hooks use).

Hooks belong to oneadmin; their templates are checked and normalised by
``oned.objects.hook`` with oned's texts. ``one.hook.info`` embeds the hook's execution
log, ``one.hook.retry`` re-sends one execution to the hook driver.
"""

from __future__ import annotations

from typing import Any

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import ONED_METHODS, rpc
from oned.api.shared import Family, ObjectAuth
from oned.core import Core
from oned.errors import AuthorizationError, InternalError
from oned.objects.base import Op, Permissions, parse_xml
from oned.objects.hook import Hook, HookTemplateError, build, hook_type, post_update, supported_call
from oned.pools.base import Unit


def call_exists(name: str) -> bool:
    """``HookAPI::call_exist``: a method oned serves that is not a read-only info."""
    return name in ONED_METHODS and supported_call(name)


def hook_auth(core: Core, hook: Any) -> ObjectAuth:
    """Hooks are oneadmin's (``um-------``) and lockable."""
    return ObjectAuth("HOOK", hook.oid, 0, 0, Permissions(1, 1, 0), frozenset(), hook.lock.locked)


def _on_update(core: Core, unit: Unit, hook: Hook) -> None:
    """``Hook::post_update_template`` (the resource is the one the hook was made for)."""
    committed = core.hooks.get(hook.oid)
    resource = committed.resource if committed is not None else hook.resource
    try:
        post_update(hook.template, hook.type, resource, call_exists)
    except HookTemplateError as exc:
        raise InternalError(f"Cannot update template. {exc}") from exc
    core.hook_manager.drop_queued(unit, hook.oid)


def _drop(core: Core, unit: Unit, hook: Hook) -> None:
    core.hook_manager.drop_hook(unit, hook.oid)


HOOK = Family[Hook](
    type_name="HOOK",
    word="hook",
    pool_root="HOOK_POOL",
    pool=lambda core: core.hooks,
    auth=hook_auth,
    lockable=True,
    name_scope="global",
    on_update=_on_update,
)

declare(HOOK, "hook", "update", "rename", "lock", "unlock")


@rpc("one.hook.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new hook."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, ObjectAuth("HOOK", -1))
    if hook_type(tmpl.get("TYPE")) is None:
        raise InternalError(f"Invalid Hook type: {(tmpl.get('TYPE') or '').lower()}")
    async with core.hooks.lock(-1):
        name = tmpl.get("NAME") or ""
        if shared.validate_name(name):
            raise InternalError("Invalid name.")
        clash = core.hooks.by_name(name)
        if clash is not None:
            raise InternalError(f"NAME is already taken by Hook {clash.oid}.")
        try:
            name, kind, tmpl = build(tmpl, call_exists)
        except HookTemplateError as exc:
            core.hook_manager.log.error("{e}", e=str(exc))
            raise InternalError(str(exc)) from exc
        unit = core.unit()
        hook = Hook(oid=unit.allocate(core.hooks), name=name, type=kind, template=tmpl)
        unit.add(core.hooks, hook)
        await unit.commit(f"allocate hook {name}")
    return hook.oid


@rpc("one.hook.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a hook."""
    return await shared.delete(core, call, HOOK, oid, lambda unit, h: _drop(core, unit, h))


@rpc("one.hook.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns hook information."""
    hook = shared.get_authorized(core, call, HOOK, oid, Op.USE, ignore_lock=True)
    log = await core.hook_manager.hook_log.dump_hook(oid)
    return str(hook.to_xml(log))


@rpc("one.hookpool.info", "iii", required=0)
async def pool_info(core: Core, call: Call, *_ignored: int) -> WireParts:
    """Returns the hook pool (filter and range are accepted and ignored)."""
    hooks = shared.filtered(core, call, HOOK)
    core.hook_manager.subscriber_loading()
    return shared.pool_document("HOOK_POOL", hooks, core.hooks)


@rpc("one.hook.retry", "ii")
async def retry(core: Core, call: Call, oid: int, exeid: int) -> int:
    """Retries a hook execution."""
    shared.get_authorized(core, call, HOOK, oid, Op.MANAGE)
    log = parse_xml(await core.hook_manager.hook_log.dump_hook(oid, exeid))
    args = log.find("HOOK_EXECUTION_RECORD/ARGUMENTS")
    if args is None:
        raise InternalError("Invalid HookLog body. Arguments not found.")
    host = log.findtext("HOOK_EXECUTION_RECORD/REMOTE_HOST") or ""
    core.hook_manager.retry(args.text or "", host, oid)
    return oid


@rpc("one.hooklog.info", "iiii")
async def log_info(core: Core, call: Call, min_ts: int, max_ts: int, hook_id: int, rc: int) -> str:
    """Returns the hook pool log info."""
    if call.caller.gid != 0:
        raise AuthorizationError(word="hook")
    return await core.hook_manager.hook_log.dump(min_ts, max_ts, hook_id, rc)
