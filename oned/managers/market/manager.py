"""``MarketPlaceManager``: the MARKET_MAD driver actions (mirrors ``MarketPlaceManager.cc``,
``MarketPlaceManagerActions.cc`` and ``MarketPlaceManagerProtocol.cc``).

Actions are events: the API commits the app (LOCKED) and the image it exports (USED or
CLONE, the app in its APP_CLONES), then the manager sends IMPORT; the reply moves the app
to READY or ERROR and releases the image, in one transaction. DELETE drops the app when
the driver answers. Every marketplace whose driver supports ``monitor`` is sent MONITOR
``MANAGER_TIMER`` seconds after start and every ``MONITORING_INTERVAL_MARKET`` after;
replies set its capacity and, for public markets, create, update and drop the apps it
lists. A restart sends again every IMPORT and DELETE the database shows in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.task import LoopingCall

from oned._async import background
from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode
from oned.log import logger
from oned.managers.market import monitor
from oned.managers.market.images import CloneError, release_app_clone, set_app_clone_state
from oned.objects import marketapp as ma
from oned.objects.image import log_time
from oned.objects.market import DISABLED, supported_actions
from oned.pools.base import Locks
from oned.template import TemplateSyntaxError, parse_str_or_xml

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from oned.core import Core
    from oned.objects.marketapp import MarketPlaceApp
    from oned.pools.base import Unit


class MarketDrivers(Protocol):
    """The part of ``DriverManager`` the market manager uses (a fake in unit tests)."""

    def register_action(self, family: Family, action: str, handler: Any) -> None: ...

    def send(self, family: Family, action: str, oid: int, payload: str = "") -> bool: ...


def format_message(app_xml: str, market_xml: str, extra: str = "") -> str:
    """``MarketPlaceManager::format_message``: the base64 ``MARKET_DRIVER_ACTION_DATA``."""
    return b64encode(
        f"<MARKET_DRIVER_ACTION_DATA>{app_xml}{market_xml}{extra}</MARKET_DRIVER_ACTION_DATA>"
    )


def set_app_error(app: MarketPlaceApp, message: str, now: float) -> None:
    """``app_failure_action``: ERROR with the template's ``ERROR`` message."""
    app.template.set("ERROR", f"{log_time(now)} : {message}")
    app.state = ma.ERROR


class MarketPlaceManager:
    """Sends marketplace actions to MARKET_MAD and applies its replies."""

    log = logger("MKP")

    def __init__(self, core: Core, drivers: Any, clock: IReactorTime) -> None:
        self.core = core
        self.drivers: MarketDrivers | None = drivers
        self.clock = clock
        self.interval = float(core.config.get("MONITORING_INTERVAL_MARKET") or 600)
        self.first_delay = float(core.config.get("MANAGER_TIMER") or 15)
        self._loop: LoopingCall | None = None
        self._first: IDelayedCall | None = None
        #: ``MarketPlaceAppPool::map_check``: monitors an app of a public market missed.
        self.missing: dict[int, int] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self.drivers is None:
            return
        self.drivers.register_action(Family.MARKET, "IMPORT", self._on_import)
        self.drivers.register_action(Family.MARKET, "DELETE", self._on_delete)
        self.drivers.register_action(Family.MARKET, "MONITOR", self._on_monitor)
        self.resume()
        self._first = self.clock.callLater(self.first_delay, self._start_loop)

    def _start_loop(self) -> None:
        self._first = None
        loop = LoopingCall(self.monitor_all)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=True).addErrback(
            lambda f: self.log.failure("marketplace monitoring stopped", f)
        )

    async def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._first is not None and self._first.active():
            self._first.cancel()

    def resume(self) -> None:
        """Send again what a restart interrupted: IMPORTs of LOCKED image apps and
        DELETEs of apps their marketplace no longer lists."""
        for app in sorted(self.core.marketapps.objects(), key=lambda a: a.oid):
            market = self.core.markets.get(app.market_id)
            if market is None:
                continue
            if app.oid not in market.apps:
                self.send_delete(app.oid, self.core.markets.body(market.oid))
            elif app.type == ma.IMAGE and app.state == ma.LOCKED:
                self.send_import(app.oid)

    # -- sending ---------------------------------------------------------------------

    def send(self, action: str, oid: int, payload: str) -> bool:
        if self.drivers is None:
            return False
        return self.drivers.send(Family.MARKET, action, oid, payload)

    def monitor_all(self) -> None:
        for market in sorted(self.core.markets.objects(), key=lambda m: m.oid):
            self.monitor_market(market.oid)

    def monitor_market(self, mp_id: int) -> None:
        """``monitor_market``: MONITOR for an enabled market of this zone."""
        market = self.core.markets.get(mp_id)
        if market is None:
            return
        if "monitor" not in supported_actions(self.core.config, market.market_mad):
            self.log.debug("Monitoring disabled for market: {n}", n=market.name)
            return
        if market.zone_id != self.core.config.zone_id or market.state == DISABLED:
            return
        self.log.debug("Monitoring marketplace {n} ({i})", n=market.name, i=mp_id)
        self.send("MONITOR", mp_id, format_message("", self.core.markets.body(mp_id)))

    def _image_extra(self, app: MarketPlaceApp) -> str:
        img = self.core.images.get(app.origin_id)
        if img is None:
            return ""
        ds = self.core.datastores.get(img.datastore_id)
        if ds is None:
            return ""
        mgr = self.core.image_manager
        ds_xml = mgr.ds_xml(ds) if mgr is not None else self.core.datastores.body(ds.oid)
        return self.core.images.body(img.oid) + ds_xml

    def send_import(self, app_id: int, extra: str | None = None) -> None:
        app = self.core.marketapps.get(app_id)
        market = self.core.markets.get(app.market_id) if app is not None else None
        if app is None or market is None:
            return
        if extra is None:
            extra = self._image_extra(app) if app.type == ma.IMAGE else ""
        payload = format_message(
            self.core.marketapps.body(app_id), self.core.markets.body(market.oid), extra
        )
        if not self.send("IMPORT", app_id, payload):
            self._on_import(DriverMessage("IMPORT", "FAILURE", app_id, "-"))

    def send_delete(self, app_id: int, market_xml: str) -> None:
        app_xml = self.core.marketapps.body(app_id)
        if not self.send("DELETE", app_id, format_message(app_xml, market_xml)):
            self._on_delete(DriverMessage("DELETE", "FAILURE", app_id, "-"))

    async def import_app(self, app_id: int) -> str | None:
        """``import_app`` for a committed app: mark its image and send IMPORT; returns
        the error (the app then in ERROR) or None."""
        core = self.core
        app = core.marketapps.get(app_id)
        if app is None:
            return "Marketplace app no longer exists"
        error: str | None = None
        extra = ""
        if self.drivers is None:
            error = "Error getting MarketPlaceManagerDriver"
        elif app.type == ma.IMAGE:
            async with Locks((core.images, app.origin_id)):
                img = core.images.get(app.origin_id)
                ds = core.datastores.get(img.datastore_id) if img is not None else None
                if img is None:
                    error = "Image does not exist."
                elif ds is None:
                    error = "Image datastore no longer exists."
                else:
                    extra = self._image_extra(app)
                    copy = img.copy()
                    try:
                        set_app_clone_state(copy, app_id)
                    except CloneError as exc:
                        error = str(exc)
                    else:
                        unit = core.unit()
                        unit.save(core.images, copy)
                        await unit.commit(f"export image {img.oid} to app {app_id}")
        elif app.type == ma.UNKNOWN:
            error = "Marketplace app type not supported."
        if error is not None:
            await self._fail_app(app_id, error)
            self.log.error("{e}", e=error)
            return error
        self.send_import(app_id, extra)
        return None

    async def _fail_app(self, app_id: int, error: str) -> None:
        async with self.core.marketapps.lock(app_id):
            found = self.core.marketapps.get(app_id)
            if found is None:
                return
            app = found.copy()
            set_app_error(app, error, self.clock.seconds())
            unit = self.core.unit()
            unit.save(self.core.marketapps, app)
            await unit.commit(f"app {app_id} error")

    def stage_release(self, unit: Unit, app: MarketPlaceApp) -> None:
        """``release_app_resources``: the exported image of an image app is free."""
        if app.type != ma.IMAGE:
            return
        img = self.core.images.get(app.origin_id)
        if img is None:
            return
        copy = img.copy()
        if release_app_clone(copy, app.oid):
            unit.save(self.core.images, copy)

    # -- replies ---------------------------------------------------------------------

    def _on_import(self, msg: DriverMessage) -> None:
        background(self._import(msg), "MKP import reply")

    def _on_delete(self, msg: DriverMessage) -> None:
        background(self._delete(msg), "MKP delete reply")

    def _on_monitor(self, msg: DriverMessage) -> None:
        background(monitor.apply(self, msg), "MKP monitor reply")

    async def _import(self, msg: DriverMessage) -> None:
        core = self.core
        found = core.marketapps.get(msg.oid)
        if found is None:
            if msg.status == "SUCCESS":
                self.log.error(
                    "Marketplace app successfully imported but it no longer exists. "
                    "You may need to manually remove: {s}",
                    s=_reply_template(msg.payload)[0].get("SOURCE") or "",
                )
            return
        async with Locks((core.marketapps, msg.oid), (core.images, found.origin_id)):
            current = core.marketapps.get(msg.oid)
            if current is None:
                return
            app = current.copy()
            unit = core.unit()
            self.stage_release(unit, app)
            error = self._apply_import(app, msg)
            if error is not None:
                set_app_error(app, error, self.clock.seconds())
                self.log.error("{e}", e=error)
            else:
                self.log.info("Marketplace app successfully imported")
            unit.save(core.marketapps, app)
            await unit.commit(f"IMPORT reply of app {msg.oid}")

    @staticmethod
    def _apply_import(app: MarketPlaceApp, msg: DriverMessage) -> str | None:
        if msg.status == "FAILURE":
            return f"Error importing app into marketplace: {msg.payload}"
        tmpl, parse_error = _reply_template(msg.payload)
        if parse_error is not None:
            return f"Error importing app into marketplace. Parse error: {parse_error}"
        source, md5, fmt = (tmpl.get(n) or "" for n in ("SOURCE", "MD5", "FORMAT"))
        size = _as_int(tmpl.get("SIZE"))
        if not source or not md5 or not fmt or size is None:
            return "Error importing app into marketplace. Missing app attributes."
        app.source, app.md5, app.format, app.size = source, md5, fmt, size
        app.state = ma.READY
        return None

    async def _delete(self, msg: DriverMessage) -> None:
        core = self.core
        async with core.marketapps.lock(msg.oid):
            app = core.marketapps.get(msg.oid)
            if app is None:
                return
            unit = core.unit()
            unit.drop(core.marketapps, msg.oid)
            await unit.commit(f"DELETE reply of app {msg.oid}")
        if msg.status == "FAILURE":
            tail = f": {msg.payload}" if msg.payload and not msg.payload.startswith("-") else ""
            self.log.error("Error removing app from marketplace{t}.", t=tail)
        else:
            self.log.info("Marketplace app successfully removed.")


def _reply_template(payload: str) -> tuple[Any, str | None]:
    """A success INFO: base64 of a template (or XML); (template, parse error)."""
    try:
        return parse_str_or_xml(b64decode(payload)), None
    except TemplateSyntaxError as exc:
        from oned.template import Template

        return Template(), exc.parse_error


def _as_int(text: str | None) -> int | None:
    """``Template::get(name, long long&)``: None when missing or not a number."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None
