"""``/metrics`` on its own port, served from the daemon's reactor.

prometheus_client's Twisted ``MetricsResource`` runs the exposition in the reactor's
thread pool (and imports the global reactor); the pools are only consistent on the
reactor thread, so this resource renders there instead: first the VMs whose lines must
be rendered again, a block at a time with the reactor given back in between, then in one
synchronous pass the exporter's families (``exporter``, ``services``) and the daemon's
registry (``instruments``). ``/`` answers the exporter's small HTML page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from oned._async import background
from oned.log import logger
from oned.metrics.exporter import PoolExporter
from oned.metrics.instruments import DaemonMetrics
from oned.metrics.services import (
    BackupState,
    ServiceStates,
    ha_families,
    server_fqdn,
    systemctl_runner,
)
from oned.metrics.text import CONTENT_TYPE

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort
    from twisted.web.server import Request

    from oned.core import Core
    from oned.metrics.services import Runner
    from oned.metrics.settings import MetricsSettings

INDEX = (
    b"<html><head><title>OpenNebula Exporter</title></head><body>"
    b"<h1>OpenNebula Exporter</h1><p><a href='/metrics'>Metrics</a></p></body></html>"
)


class Scrape:
    """Everything one ``GET /metrics`` writes."""

    def __init__(
        self,
        core: Core,
        metrics: DaemonMetrics,
        clock: Any,
        runner: Runner | None = None,
        fqdn: str | None = None,
    ) -> None:
        self.core = core
        self.metrics = metrics
        self.clock = clock
        self.fqdn = fqdn if fqdn is not None else server_fqdn()
        self.pools = PoolExporter(core)
        self.services = ServiceStates(core, None, clock, self.fqdn, runner)
        self.backups = BackupState(core.config.locations.var / "state.json")

    def attach_drivers(self, drivers: Any) -> None:
        self.metrics.drivers = drivers
        self.services.drivers = drivers

    async def refresh(self) -> None:
        """The slow part of a scrape (VMs whose lines must be rendered again), in steps
        that give the reactor back in between."""
        await self.pools.refresh(self._pause)

    def _pause(self) -> Deferred[None]:
        return deferLater(self.clock, 0, lambda: None)

    def pieces(self) -> list[bytes]:
        """The exposition as pieces to write in order (the VMs' straight from the cache)."""
        head = "".join([*self.services.render(), *ha_families(self.core, self.fqdn)])
        tail = "".join(self.backups.render())
        return [head.encode(), *self.pools.render(), tail.encode(), self.metrics.render()]

    def render(self) -> bytes:
        return b"".join(self.pieces())


class MetricsResource(Resource):
    isLeaf = True
    log = logger("ReM")

    def __init__(self, scrape: Scrape) -> None:
        super().__init__()
        self.scrape = scrape

    def render_GET(self, request: Request) -> bytes | int:
        path = request.path.rstrip(b"/")
        if path == b"":
            request.setHeader(b"Content-Type", b"text/html")
            return INDEX
        if path != b"/metrics":
            request.setResponseCode(404)
            return b"Not Found\n"
        background(self._serve(request), "metrics scrape")
        return NOT_DONE_YET

    async def _serve(self, request: Request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _: gone.append(True))
        try:
            await self.scrape.refresh()
            pieces = self.scrape.pieces()
        except Exception:
            self.log.failure("Metrics scrape failed")
            request.setResponseCode(500)
            pieces = [b"metrics unavailable\n"]
        else:
            request.setHeader(b"Content-Type", CONTENT_TYPE.encode())
        if gone:
            return
        request.setHeader(b"Content-Length", str(sum(map(len, pieces))).encode())
        request.registerProducer(_Pieces(request, pieces), False)


class _Pieces:
    """Writes the answer a piece per call as the transport drains (a pull producer),
    small pieces joined up to ``BATCH`` bytes and large ones (the VM families, cached
    between scrapes) as they are: a 4 MB exposition is never copied into a fresh buffer,
    whose pages would cost more than rendering it."""

    BATCH = 64 * 1024

    def __init__(self, request: Request, pieces: list[bytes]) -> None:
        self._request = request
        self._batches = _batches(pieces, self.BATCH)
        self._next = 0

    def resumeProducing(self) -> None:
        if self._next < len(self._batches):
            self._next += 1
            self._request.write(self._batches[self._next - 1])
            return
        if self._batches:
            self._batches = []
            self._request.unregisterProducer()
            self._request.finish()

    def stopProducing(self) -> None:
        self._batches = []
        self._next = 0


def _batches(pieces: list[bytes], limit: int) -> list[bytes]:
    out: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for piece in pieces:
        if group and size + len(piece) > limit:
            out.append(b"".join(group))
            group, size = [], 0
        if len(piece) > limit:
            out.append(piece)
            continue
        group.append(piece)
        size += len(piece)
    if group:
        out.append(b"".join(group))
    return out


class _QuietSite(Site):
    def log(self, request: Any) -> None:
        """No access log (Prometheus scrapes every few seconds)."""


class MetricsEndpoint:
    """The listening side: ``start`` binds ``LISTEN_ADDRESS:PORT``, ``stop`` unbinds."""

    log = logger("ReM")

    def __init__(self, scrape: Scrape, settings: MetricsSettings, reactor: Any) -> None:
        self.scrape = scrape
        self.settings = settings
        self.reactor = reactor
        self.port: IListeningPort | None = None

    @classmethod
    def build(
        cls, core: Core, metrics: DaemonMetrics, settings: MetricsSettings, reactor: Any
    ) -> MetricsEndpoint:
        return cls(Scrape(core, metrics, reactor, systemctl_runner(reactor)), settings, reactor)

    def start(self) -> int:
        """Listen; returns the bound port (PORT 0 picks a free one)."""
        site = _QuietSite(MetricsResource(self.scrape), reactor=self.reactor)
        site.noisy = False
        self.port = self.reactor.listenTCP(
            self.settings.port, site, interface=self.settings.listen_address
        )
        bound = int(getattr(self.port.getHost(), "port", self.settings.port))
        self.log.info(
            "Metrics served on http://{addr}:{port}/metrics",
            addr=self.settings.listen_address,
            port=bound,
        )
        return bound

    async def stop(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            stopping = port.stopListening()
            if stopping is not None:
                await stopping


def attach(
    settings: MetricsSettings, core: Core, manager: Any, db: Any, drivers: Any, reactor: Any
) -> MetricsEndpoint | None:
    """Instrument the request manager and the database, then serve ``/metrics``.

    A port that cannot be bound is logged and the daemon goes on without the endpoint
    (the API matters more than its metrics).
    """
    from oned.api.dispatch import _SYSTEM_METHODS

    methods = manager.registry.methods

    def known(name: str) -> bool:
        return name in methods or name in _SYSTEM_METHODS

    metrics = DaemonMetrics(core, known)
    endpoint = MetricsEndpoint.build(core, metrics, settings, reactor)
    endpoint.scrape.attach_drivers(drivers)
    try:
        endpoint.start()
    except Exception as exc:
        MetricsEndpoint.log.error(
            "Cannot serve metrics on {addr}:{port}: {error}",
            addr=settings.listen_address,
            port=settings.port,
            error=str(exc),
        )
        return None
    manager.metrics = metrics
    db.on_transaction = metrics.transaction
    return endpoint
