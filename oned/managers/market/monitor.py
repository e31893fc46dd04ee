"""MONITOR replies (mirrors ``MarketPlaceManager::_monitor`` and
``MarketPlaceAppPool::import``): a marketplace's capacity, and the apps a public
marketplace lists, created, updated and (after ``MAX_MISSING_MONITORS`` reports
without them) dropped in our pool, all in one transaction per reply."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.api.shared import validate_name
from oned.drivers.message import DriverMessage, b64decode
from oned.objects import marketapp as ma
from oned.objects.base import Permissions
from oned.objects.market import DISABLED, MarketPlace
from oned.objects.marketapp import MarketPlaceApp
from oned.pools.base import Locks
from oned.template import Template, TemplateSyntaxError
from oned.template.parser import parse_text

if TYPE_CHECKING:
    from oned.managers.market.manager import MarketPlaceManager
    from oned.pools.base import Unit

MAX_MISSING_MONITORS = 3
#: Apps found by monitoring belong to oneadmin with umask 0133.
IMPORTED_PERMS = 0o777 & ~0o133


def _capacity(market: MarketPlace, data: Template) -> None:
    """``MarketPlace::update_monitor``: only the figures the driver gave."""
    for name in ("TOTAL_MB", "FREE_MB", "USED_MB"):
        raw = data.get(name)
        if raw is None:
            continue
        try:
            setattr(market, name.lower(), int(raw.strip()))
        except ValueError:
            continue


def _import_app(
    mgr: MarketPlaceManager, unit: Unit, market: MarketPlace, t64: str
) -> tuple[int, bool]:
    """``MarketPlaceAppPool::import``: (app id, created); raises ValueError."""
    core = mgr.core
    app = MarketPlaceApp(-1, "", perms=Permissions.from_octal(IMPORTED_PERMS))
    try:
        app.from_template64(t64)
    except TemplateSyntaxError as exc:
        raise ValueError(exc.parse_error) from exc
    app.market_id, app.market_name = market.oid, market.name
    app.zone_id = core.config.zone_id
    if validate_name(app.name) is not None:
        app.name = f"imported-{app.origin_id}"
        if validate_name(app.name) is not None:
            raise ValueError("Cannot generate a valid name for app")
    for found in core.marketapps.objects():
        if found.name == app.name and found.uid == 0:
            if (found.version, found.md5, found.source) != (app.version, app.md5, app.source):
                updated = found.copy()
                updated.from_template64(t64)
                unit.save(core.marketapps, updated)
            return found.oid, False
    app.oid = unit.allocate(core.marketapps)
    unit.add(core.marketapps, app)
    return app.oid, True


async def apply(mgr: MarketPlaceManager, msg: DriverMessage) -> None:
    """Apply one MONITOR reply."""
    core, log, mp_id = mgr.core, mgr.log, msg.oid
    if msg.status != "SUCCESS":
        log.error("Error monitoring marketplace {i}: {p}", i=mp_id, p=msg.payload)
        return
    info = b64decode(msg.payload)
    try:
        data = parse_text(info)
    except TemplateSyntaxError as exc:
        log.error(
            "Error parsing marketplace information: {e}. Monitoring information: \n{i}",
            e=exc.parse_error,
            i=info,
        )
        return
    listed = core.markets.get(mp_id)
    held = sorted(listed.apps) if listed is not None else []
    async with Locks((core.markets, mp_id), *((core.marketapps, a) for a in held)):
        found = core.markets.get(mp_id)
        if found is None or found.state == DISABLED:
            return
        market = found.copy()
        _capacity(market, data)
        unit = core.unit()
        unseen = set(market.apps)
        apps = [v for n, v in data.items if n == "APP" and isinstance(v, str)]
        for t64 in apps:
            try:
                app_id, created = _import_app(mgr, unit, market, t64)
            except ValueError as exc:
                log.error("Error importing app: {e}", e=exc)
                continue
            if created:
                market.apps.add(app_id)
            mgr.missing[app_id] = -1
            unseen.discard(app_id)
        if apps:
            for app_id in sorted(unseen):
                count = mgr.missing.get(app_id, 0) + 1
                if count < MAX_MISSING_MONITORS:
                    mgr.missing[app_id] = count
                    continue
                mgr.missing.pop(app_id, None)
                if core.marketapps.get(app_id) is not None:
                    unit.drop(core.marketapps, app_id)
                    market.apps.discard(app_id)
        unit.save(core.markets, market)
        await unit.commit(f"MONITOR reply of marketplace {mp_id}")
    log.debug("Marketplace {n} ({i}) successfully monitored.", n=market.name, i=mp_id)


__all__ = ["MAX_MISSING_MONITORS", "apply", "ma"]
