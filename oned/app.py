"""Composition root (mirrors ``Nebula::start``/``Nebula::finalize``).

Start-up is explicit and awaited, in OpenNebula's order: database, pools (and the
first-start bootstrap), drivers, then the request manager's listening socket, and only
then ``READY=1``. Shutdown runs in reverse: stop accepting calls, let in-flight ones
finish, stop drivers, close the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorProcess, IReactorTCP, IReactorTime

from oned._async import async_to_deferred
from oned.api import build_registry
from oned.api.dispatch import RequestManager
from oned.api.server import OneSite, OneXMLRPC
from oned.bootstrap import Credentials, bootstrap
from oned.config import ConfigError, OnedConfig, load_config
from oned.core import Core
from oned.db.database import Database
from oned.log import LogSink, logger
from oned.managers import Manager, build_managers
from oned.managers.auth.manager import AuthManager
from oned.metrics import http as metrics_http
from oned.systemd import sdnotify


class OnedService(Service):
    """The whole daemon as one service with ordered start and stop."""

    log = logger("ONE")

    def __init__(
        self,
        config: OnedConfig,
        reactor: Any,
        environ: dict[str, str] | None = None,
        on_credentials: Callable[[Credentials], None] | None = None,
        drivers_factory: Callable[[OnedConfig, Any], Any] | None = None,
        sink: LogSink | None = None,
        init_only: bool = False,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.environ = dict(os.environ if environ is None else environ)
        self.on_credentials = on_credentials
        self.drivers_factory = drivers_factory
        self.sink = sink
        self.init_only = init_only
        self.db: Database | None = None
        self.core: Core | None = None
        self.drivers: Any = None
        self.managers: list[Manager] = []
        self.manager: RequestManager | None = None
        self.site: OneSite | None = None
        self.port: IListeningPort | None = None
        self.metrics: metrics_http.MetricsEndpoint | None = None

    @async_to_deferred
    async def start(self) -> None:
        config = self.config
        locations = config.locations
        for path in (locations.var, locations.log):
            path.mkdir(parents=True, exist_ok=True)
        self.log.info("Starting oned (Python) on port {port}", port=config.port)
        self.db = Database.open(locations.var / "one.db", self.reactor, config.db_timeout_ms)
        clock: IReactorTime = self.reactor
        self.core = Core.create(config, clock, self.db)
        await self.core.load()
        creds = await bootstrap(self.core, self.environ)
        if creds is not None and self.on_credentials is not None:
            self.on_credentials(creds)
        if self.init_only:
            self.log.info("Database initialized ({path})", path=locations.var / "one.db")
            return
        if self.drivers_factory is not None:
            self.drivers = self.drivers_factory(config, self.reactor)
            await self.drivers.start()
            auth = AuthManager(self.drivers)
            if auth.enabled:
                self.core.auth.external = auth
            self.managers = build_managers(self.core, self.drivers, clock)
            for manager in self.managers:
                await manager.start()
        if self.sink is not None:
            self.sink.attach_clock(clock)
        processes = self.reactor if IReactorProcess.providedBy(self.reactor) else None
        self.manager = RequestManager(self.core, build_registry(), self.sink, processes)
        self.site = OneSite(
            OneXMLRPC(self.manager),
            clock,
            message_size=config.message_size,
            keepalive_timeout=config.keepalive_timeout,
            keepalive_max=config.keepalive_max_conn,
            request_timeout=config.timeout,
            max_conn=config.max_conn,
        )
        tcp: IReactorTCP = self.reactor
        backlog = int(config.get("MAX_CONN_BACKLOG") or 15)
        self.port = tcp.listenTCP(
            config.port,
            self.site,  # type: ignore[arg-type]
            backlog=max(backlog, 64),
            interface=config.listen_address,
        )
        self.site.port = self.port
        self.log.info(
            "XML-RPC server listening on {addr}:{port}",
            addr=config.listen_address,
            port=getattr(self.port.getHost(), "port", config.port),
        )
        if config.metrics is not None:
            self.metrics = metrics_http.attach(
                config.metrics, self.core, self.manager, self.db, self.drivers, self.reactor
            )
        sdnotify("READY=1", self.environ)

    def startService(self) -> None:
        super().startService()

    def reload(self) -> None:
        """SIGHUP (``systemctl reload``): read oned.conf again and apply its AUDIT
        section; a file that no longer parses leaves everything as it was."""
        if self.manager is None:
            return
        try:
            config = load_config(self.config.locations, self.config.port)
            self.manager.reload_audit(config.audit)
        except ConfigError as exc:
            self.log.error("Reload refused, nothing changed: {msg}", msg=str(exc))

    @async_to_deferred
    async def stop(self) -> None:
        sdnotify("STOPPING=1", self.environ)
        self.log.info("Stopping oned")
        if self.metrics is not None:
            await self.metrics.stop()
            self.metrics = None
        if self.port is not None:
            stopping = self.port.stopListening()
            self.port = None
            if stopping is not None:
                await stopping
        if self.manager is not None:
            await self.manager.drain(self.reactor, timeout=10.0)
            self.manager.audit.close()
        for manager in reversed(self.managers):
            await manager.stop()
        if self.drivers is not None:
            await self.drivers.stop()
        if self.db is not None:
            await self.db.close()
        self.log.info("All modules finalized, exiting.")
        if self.sink is not None:
            self.sink.flush()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.stop()
