"""``one.market.*`` and ``one.marketpool.info`` (mirrors ``MarketPlaceAPI`` and
``MarketPlacePool``).

A marketplace takes its behaviour from oned.conf's ``MARKET_MAD_CONF`` entry for its
MARKET_MAD (REQUIRED_ATTRS checked on allocate and on a driver change, PUBLIC, the
APP_ACTIONS its apps allow). Marketplaces 0 and 1 are oned's own; new ones start at
100. A public marketplace is deleted with its apps; a private one only when empty.
Disabling drops the apps our pool holds for it; enabling monitors it at once.
"""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import AllocateError, AuthorizationError, InternalError
from oned.objects.base import Op, Permissions
from oned.objects.market import (
    DISABLED,
    ENABLED,
    MarketPlace,
    check_market_mad,
    is_public,
)
from oned.objects.marketapp import complete_document
from oned.pools.base import Unit
from oned.template import Template


def _post_update(core: Core, unit: Unit, market: MarketPlace) -> None:
    """``MarketPlace::post_update_template``: a new MARKET_MAD must be configured."""
    new_mad = market.template.get("MARKET_MAD") or ""
    market.template.erase("MARKET_MAD")
    if new_mad:
        problem = check_market_mad(core.config, new_mad, market.template)
        if problem:
            raise InternalError(f"Cannot update template. {problem}")
        market.market_mad = new_mad
    market.template.add("MARKET_MAD", market.market_mad)


def _batch_rename(core: Core, unit: Unit, market: MarketPlace) -> None:
    """``MarketPlaceAPI::batch_rename``: its apps show the new name."""
    for app_id in sorted(market.apps):
        found = core.marketapps.get(app_id)
        if found is not None and found.market_id == market.oid:
            app = found.copy()
            app.market_name = market.name
            unit.save(core.marketapps, app)


def _drop_check(core: Core, market: MarketPlace) -> str | None:
    if is_public(core.config, market.market_mad) or not market.apps:
        return None
    return f"marketplace  {market.oid} is not empty."


MARKET = Family[MarketPlace](
    type_name="MARKETPLACE",
    word="marketplace",
    pool_root="MARKETPLACE_POOL",
    pool=lambda core: core.markets,
    auth=shared.owned_auth("MARKETPLACE"),
    name_scope="global",
    on_update=_post_update,
    on_rename=_batch_rename,
    drop_check=_drop_check,
)

declare(MARKET, "market", "info", "pool", "update", "rename", "chmod", "chown")


def parse_market_template(core: Core, market: MarketPlace) -> None:
    """``MarketPlace::parse_template`` (raises AllocateError)."""
    tmpl = market.template
    tmpl.erase("NAME")
    tmpl.erase("ZONE_ID")
    market.market_mad = tmpl.get("MARKET_MAD") or ""
    if not market.market_mad:
        raise AllocateError("No marketplace driver (MARKET_MAD) in template.")
    problem = check_market_mad(core.config, market.market_mad, tmpl)
    if problem:
        raise AllocateError(problem)
    state = (tmpl.get("STATE") or "").upper()
    if state:
        market.state = DISABLED if state == "DISABLED" else ENABLED
        tmpl.erase("STATE")


def build_market(core: Core, uid: int, gid: int, umask: int, tmpl: Template) -> MarketPlace:
    """``MarketPlacePool::allocate`` up to the insert (raises AllocateError)."""
    user, group = core.users.get(uid), core.groups.get(gid)
    name = tmpl.get("NAME") or ""
    problem = shared.validate_name(name)
    if problem:
        raise AllocateError(problem)
    clash = core.markets.by_name(name)
    if clash is not None:
        raise AllocateError(f"NAME is already taken by MARKETPLACE {clash.oid}")
    market = MarketPlace(
        -1,
        name,
        uid=uid,
        gid=gid,
        uname=user.name if user is not None else "",
        gname=group.name if group is not None else "",
        zone_id=core.config.zone_id,
        perms=Permissions.for_new_object(uid, gid, umask, core.config.enable_other_permissions),
        template=tmpl,
    )
    parse_market_template(core, market)
    return market


@rpc("one.market.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new marketplace."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("MARKETPLACE", -1))
    caller = call.caller
    market = build_market(core, caller.uid, caller.gid, caller.umask, tmpl)
    unit = core.unit()
    market.oid = unit.allocate(core.markets)
    unit.add(core.markets, market)
    await unit.commit(f"allocate marketplace {market.name}")
    return market.oid


def _drop_apps(core: Core, unit: Unit, market: MarketPlace) -> None:
    for app_id in sorted(market.apps):
        if core.marketapps.get(app_id) is not None:
            unit.drop(core.marketapps, app_id)


@rpc("one.market.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a marketplace (a public one with the apps our pool holds for it)."""
    return await shared.delete(
        core, call, MARKET, oid, extra=lambda unit, market: _drop_apps(core, unit, market)
    )


@rpc("one.market.enable", "ib")
async def enable(core: Core, call: Call, oid: int, flag: bool) -> int:
    """Enables or disables a marketplace."""
    shared.get_authorized(core, call, MARKET, oid, Op.MANAGE)
    async with core.markets.lock(oid):
        market = shared.get_object(core, MARKET, oid)
        if market.state == (ENABLED if flag else DISABLED):
            return oid
        market = market.copy()
        market.state = ENABLED if flag else DISABLED
        unit = core.unit()
        if not flag:
            _drop_apps(core, unit, market)
            market.apps.clear()
        unit.save(core.markets, market)
        await unit.commit(f"{'enable' if flag else 'disable'} marketplace {oid}")
    if flag and core.market_manager is not None:
        core.market_manager.monitor_market(oid)
    return oid


@rpc("one.market.allocatedb", "*s", required=2)
async def allocatedb(core: Core, call: Call, _unused: object, xml: str) -> int:
    """Allocates a marketplace from its XML (the document is read from index 2)."""
    if call.uid != 0:
        raise AuthorizationError()
    if not complete_document(xml, "MARKETPLACE", MarketPlace.REQUIRED):
        raise InternalError("Error inserting marketplace in DB.")
    market = MarketPlace.from_xml(xml)
    unit = core.unit()
    market.oid = unit.allocate(core.markets)
    unit.add(core.markets, market)
    await unit.commit(f"allocatedb marketplace {market.oid}")
    return market.oid


@rpc("one.market.updatedb", "is")
async def updatedb(core: Core, call: Call, oid: int, xml: str) -> int:
    """Replaces a marketplace's stored document."""

    def parse() -> MarketPlace:
        if not complete_document(xml, "MARKETPLACE", MarketPlace.REQUIRED):
            raise InternalError("Cannot update object from XML")
        return MarketPlace.from_xml(xml)

    return await shared.replace_document(core, call, MARKET, oid, parse, "updatedb marketplace")


DEFAULT_MARKETS = (
    'NAME="OpenNebula Public"\nMARKET_MAD=one\nDESCRIPTION="OpenNebula Systems MarketPlace"',
    'NAME="Linux Containers"\nSTATE=DISABLED\nMARKET_MAD=linuxcontainers\n'
    'DESCRIPTION="MarketPlace for the public image server fo LXC & LXD hosted at '
    'linuxcontainers.org"',
)


def stage_default_markets(core: Core, unit: Unit) -> None:
    """``MarketPlacePool``'s bootstrap: 0 "OpenNebula Public" and 1 "Linux Containers"
    (disabled), owned by oneadmin with ``uma u-- u--``; user marketplaces from 100."""
    from oned.template import parse_str_or_xml

    for oid, text in enumerate(DEFAULT_MARKETS):
        tmpl = parse_str_or_xml(text)
        market = MarketPlace(oid, tmpl.get("NAME") or "", zone_id=core.config.zone_id)
        market.template = tmpl
        market.perms = Permissions(1, 1, 1, 1, 0, 0, 1, 0, 0)
        try:
            parse_market_template(core, market)
        except AllocateError as exc:  # oned logs it and still creates the marketplace
            market.market_mad = tmpl.get("MARKET_MAD") or ""
            core.log.error("Error creating default marketplace: {e}", e=exc.message)
        unit.add(core.markets, market)
    core.markets.set_last_oid(99)
    unit.sql(core.markets.control())


async def ensure_default_markets(core: Core) -> None:
    """A database made before marketplaces were kept gets oned's two default ones."""
    if not core.markets.is_empty() or core.users.get(0) is None:
        return
    unit = core.unit()
    stage_default_markets(core, unit)
    await unit.commit("default marketplaces")
