"""``one.marketapp.*`` and ``one.marketapppool.info`` (mirrors ``MarketPlaceAppAPI`` and
``MarketPlaceAppPool``).

``allocate`` creates an app in a marketplace whose driver allows ``create``: a
VMTEMPLATE or SERVICE_TEMPLATE app is READY at once; an IMAGE app (``ORIGIN_ID`` the
image) is LOCKED and exported through the MarketPlaceManager (the image USED while the
driver copies it). ``delete`` (where ``delete`` is allowed) takes the app out of its
marketplace and sends DELETE; the driver's answer drops it. The Ruby CLI's
``onemarketapp export`` is ``one.image.allocate`` with ``FROM_APP`` plus a VM template.
"""

from __future__ import annotations

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
)
from oned.objects import marketapp as ma
from oned.objects.base import Op, Permissions
from oned.objects.market import is_public, supported_actions
from oned.objects.marketapp import MarketPlaceApp, complete_document
from oned.pools.base import Locks, Unit


def _post_update(core: Core, unit: Unit, app: MarketPlaceApp) -> None:
    app.post_update()


APP = Family[MarketPlaceApp](
    type_name="MARKETPLACEAPP",
    word="marketplaceapp",
    pool_root="MARKETPLACEAPP_POOL",
    pool=lambda core: core.marketapps,
    auth=shared.owned_auth("MARKETPLACEAPP"),
    lockable=True,
    on_update=_post_update,
)

declare(APP, "marketapp", "info", "update", "rename", "chmod", "lock", "unlock")


@rpc("one.marketapppool.info", "iii")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the marketplace app pool."""
    apps = shared.filtered(core, call, APP, filter_flag, start, end)
    return shared.pool_document("MARKETPLACEAPP_POOL", apps, core.marketapps)


@rpc("one.marketapp.allocate", "si")
async def allocate(core: Core, call: Call, text: str, mp_id: int) -> int:
    """Allocates a new marketplace app (an image app is exported by the driver)."""
    tmpl = shared.parse_template(text)
    caller = call.caller
    core.acl.check(caller, Op.CREATE, shared.ObjectAuth("MARKETPLACEAPP", -1))
    market = core.markets.get(mp_id)
    if market is None:
        raise InternalError(f"Cannot find associated MARKETPLACE ID = {mp_id}")
    if "create" not in supported_actions(core.config, market.market_mad):
        raise ActionError(f"Create disabled for market: {market.name}")
    if market.zone_id != core.config.zone_id:
        raise ActionError("Marketplace is not in this OpenNebula zone")
    name = tmpl.get("NAME") or ""
    problem = shared.validate_name(name)
    if problem:
        raise AllocateError(problem)
    clash = shared.name_clash(core, APP, name, caller.uid)
    if clash is not None:
        raise AllocateError(f"NAME is already taken by MARKETPLACEAPP {clash.oid}")
    app = MarketPlaceApp(
        -1,
        name,
        uid=caller.uid,
        gid=caller.gid,
        uname=caller.uname,
        gname=caller.gname,
        zone_id=core.config.zone_id,
        market_id=mp_id,
        market_name=market.name,
        perms=Permissions.for_new_object(
            caller.uid, caller.gid, caller.umask, core.config.enable_other_permissions
        ),
        template=tmpl,
    )
    problem = app.parse_template(core.now())
    if problem:
        raise AllocateError(problem)
    async with core.markets.lock(mp_id):
        current = core.markets.get(mp_id)
        if current is None:
            raise InternalError("Marketplace no longer exists")
        market = current.copy()
        unit = core.unit()
        app.oid = unit.allocate(core.marketapps)
        unit.add(core.marketapps, app)
        market.apps.add(app.oid)
        unit.save(core.markets, market)
        await unit.commit(f"allocate marketplace app {name}")
    mgr = core.market_manager
    if mgr is None:
        error = "Error getting MarketPlaceManagerDriver"
        await _fail(core, app.oid, error)
        raise InternalError(error)
    error = await mgr.import_app(app.oid)
    if error is not None:
        raise InternalError(error)
    return app.oid


async def _fail(core: Core, oid: int, error: str) -> None:
    from oned.managers.market.manager import set_app_error

    async with core.marketapps.lock(oid):
        found = core.marketapps.get(oid)
        if found is None:
            return
        app = found.copy()
        set_app_error(app, error, core.clock.seconds())
        await shared.save(core, APP, app, f"app {oid} error")


@rpc("one.marketapp.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a marketplace app through the market driver."""
    shared.get_authorized(core, call, APP, oid, Op.MANAGE)
    app = shared.get_object(core, APP, oid)

    def refuse(text: str) -> ActionError:
        return ActionError(f"Cannot delete marketplaceapp. {text}")

    if app.zone_id != core.config.zone_id:
        raise refuse(f"Marketapp can only be deleted from zone {app.zone_id}")
    market = core.markets.get(app.market_id)
    if market is None:
        raise refuse(f"Cannot find associated  ID = {app.market_id}")
    if "delete" not in supported_actions(core.config, market.market_mad):
        raise refuse(f"Delete disabled for market: {market.name}")
    mgr = core.market_manager
    if mgr is None or mgr.drivers is None:
        raise refuse("Error getting MarketPlaceManagerDriver")
    if app.type == ma.UNKNOWN:
        raise refuse("")
    market_xml = core.markets.body(market.oid)
    async with Locks(
        (core.marketapps, oid), (core.markets, market.oid), (core.images, app.origin_id)
    ):
        app = shared.get_object(core, APP, oid)
        unit = core.unit()
        if app.type == ma.IMAGE and app.state == ma.LOCKED:
            mgr.stage_release(unit, app)
        current = core.markets.get(app.market_id)
        if current is not None and oid in current.apps:
            updated = current.copy()
            updated.apps.discard(oid)
            unit.save(core.markets, updated)
        shared.drop_resource_rules(core, unit, "MARKETPLACEAPP", oid)
        await unit.commit(f"delete marketplace app {oid}")
    mgr.send_delete(oid, market_xml)
    return oid


@rpc("one.marketapp.enable", "ib")
async def enable(core: Core, call: Call, oid: int, flag: bool) -> int:
    """Enables or disables a marketplace app (READY <-> DISABLED)."""
    shared.get_authorized(core, call, APP, oid, Op.MANAGE)
    async with core.marketapps.lock(oid):
        app = shared.get_object(core, APP, oid).copy()
        app.enable(flag)
        await shared.save(core, APP, app, f"enable marketplace app {oid}")
    return oid


@rpc("one.marketapp.chown", "iii")
async def chown(core: Core, call: Call, oid: int, uid: int, gid: int) -> int:
    """Changes the owner of an app (not of an app of a public marketplace)."""
    app = shared.get_object(core, APP, oid)
    market = core.markets.get(app.market_id)
    if market is not None and is_public(core.config, market.market_mad):
        shared.authorize(core, call, APP, app, Op.MANAGE)
        raise InternalError(
            f"App {oid}: Changing the ownership for an App from the public Marketplace "
            "is not permitted"
        )
    return await shared.chown(core, call, APP, oid, uid, gid)


@rpc("one.marketapp.allocatedb", "*s", required=2)
async def allocatedb(core: Core, call: Call, _unused: object, xml: str) -> int:
    """Allocates an app from its XML (the document is read from index 2)."""
    if call.uid != 0:
        raise AuthorizationError()
    if not complete_document(xml, "MARKETPLACEAPP", MarketPlaceApp.REQUIRED):
        raise InternalError("Error inserting marketplace app in DB.")
    app = MarketPlaceApp.from_xml(xml)
    if shared.name_clash(core, APP, app.name, app.uid) is not None:  # UNIQUE(name, uid)
        raise InternalError("Error inserting marketplace app in DB.")
    unit = core.unit()
    app.oid = unit.allocate(core.marketapps)
    unit.add(core.marketapps, app)
    await unit.commit(f"allocatedb marketplace app {app.oid}")
    return app.oid


@rpc("one.marketapp.updatedb", "is")
async def updatedb(core: Core, call: Call, oid: int, xml: str) -> int:
    """Replaces an app's stored document."""

    def parse() -> MarketPlaceApp:
        if not complete_document(xml, "MARKETPLACEAPP", MarketPlaceApp.REQUIRED):
            raise InternalError("Cannot update object from XML")
        return MarketPlaceApp.from_xml(xml)

    return await shared.replace_document(core, call, APP, oid, parse, "updatedb marketplace app")


@rpc("one.marketapp.dropdb", "i")
async def dropdb(core: Core, call: Call, oid: int) -> int:
    """Drops an app's row (no driver action)."""
    if call.uid != 0:
        raise AuthorizationError()
    async with core.marketapps.lock(oid):
        shared.get_object(core, APP, oid)
        unit = core.unit()
        unit.drop(core.marketapps, oid)
        await unit.commit(f"dropdb marketplace app {oid}")
    return oid
