"""HTTP transport of the XML-RPC API (mirrors xmlrpc-c's Abyss server as oned runs it).

``/RPC2`` (and ``/``) accept POST only (405; OPTIONS 200), require Content-Length (411;
invalid 400), refuse bodies over MESSAGE_SIZE with HTTP 500 before reading them, close a
connection after KEEPALIVE_MAX_CONN calls or KEEPALIVE_TIMEOUT idle seconds, give a
client TIMEOUT seconds to send a whole request, and hold at most MAX_CONN connections
(further ones wait in the listen backlog, as with oned).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.interfaces import IListeningPort, IReactorTime, ITCPTransport
from twisted.internet.main import CONNECTION_DONE
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from oned._async import background
from oned.api.dispatch import RequestManager
from oned.log import logger

_DONE = Failure(CONNECTION_DONE)
#: Answers larger than this are written piece by piece as the socket drains.
STREAM_ABOVE = 1 << 20
RPC_PATHS = (b"/RPC2", b"/")


class OneXMLRPC(Resource):
    """The ``/RPC2`` resource: HTTP checks, then the request manager."""

    isLeaf = True
    log = logger("ReM")

    def __init__(self, manager: RequestManager) -> None:
        super().__init__()
        self._manager = manager

    def render(self, request: Request) -> bytes | int:
        path = request.path.split(b"?", 1)[0]
        if path not in RPC_PATHS:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain")
            return b"No such resource; this server serves XML-RPC at /RPC2\n"
        if request.method == b"OPTIONS":
            request.setHeader(b"allow", b"POST")
            return b""
        if request.method != b"POST":
            request.setResponseCode(405)
            request.setHeader(b"allow", b"POST")
            request.setHeader(b"content-type", b"text/plain")
            return b"Method not allowed: use POST\n"
        length = request.getHeader(b"content-length")
        if length is None:
            request.setResponseCode(411)
            request.setHeader(b"content-type", b"text/plain")
            return b"Content-Length header required\n"
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size <= 0:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain")
            return b"Invalid Content-Length\n"
        assert request.content is not None
        body = request.content.read()
        peer = request.getClientAddress()
        peer_text = f"{getattr(peer, 'host', '')}:{getattr(peer, 'port', '')}"
        finished = {"done": False}

        def gone(_: object) -> None:
            finished["done"] = True

        request.notifyFinish().addErrback(gone)

        async def respond() -> None:
            try:
                payload = await self._manager.handle_body_parts(body, peer_text)
            except Exception:
                self.log.failure("Unexpected error serving a call")
                payload = []
            if finished["done"]:
                return
            if not payload:
                request.setResponseCode(500)
                payload = [b"Internal error\n"]
            else:
                request.setHeader(b"content-type", b"text/xml")
            size = sum(len(piece) for piece in payload)
            request.setHeader(b"content-length", str(size).encode())
            if size > STREAM_ABOVE and len(payload) > 3:
                request.registerProducer(_Pieces(request, payload), False)
                return
            for piece in payload:
                request.write(piece)
            request.finish()

        background(respond(), "XML-RPC call")
        return NOT_DONE_YET


class _Pieces:
    """Writes a large answer one piece at a time as the transport drains (a pull
    producer), so no reactor step copies the whole answer at once."""

    def __init__(self, request: Request, pieces: list[bytes]) -> None:
        self._request = request
        self._pieces = pieces
        self._next = 0

    def resumeProducing(self) -> None:
        if self._next < len(self._pieces):
            self._next += 1
            self._request.write(self._pieces[self._next - 1])
            return
        if self._pieces:
            self._pieces = []
            self._request.unregisterProducer()
            self._request.finish()

    def stopProducing(self) -> None:
        self._pieces = []
        self._next = 0


class OneChannel(http.HTTPChannel):
    """Keep-alive limits and a deadline for each request."""

    def __init__(self) -> None:
        super().__init__()
        self._served = 0
        self._deadline: Any = None

    def _site(self) -> OneSite:
        return cast("OneSite", getattr(self, "site"))  # noqa: B009 - untyped attribute

    def _tcp(self) -> ITCPTransport:
        assert self.transport is not None
        return cast("ITCPTransport", self.transport)

    def connectionMade(self) -> None:
        super().connectionMade()
        site = self._site()
        site.connection_opened()

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self._cancel_deadline()
        site = self._site()
        site.connection_closed()
        super().connectionLost(reason)

    def allHeadersReceived(self) -> None:
        site = self._site()
        if self.length is not None and self.length > site.message_size:
            message = f"XML-RPC request too large ({self.length} bytes)".encode()
            self._cancel_deadline()
            tcp = self._tcp()
            tcp.stopReading()  # type: ignore[attr-defined]
            tcp.write(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                b"Connection: close\r\nContent-Length: "
                + str(len(message)).encode()
                + b"\r\n\r\n"
                + message
            )
            tcp.loseConnection()
            return
        super().allHeadersReceived()

    def lineReceived(self, line: bytes) -> None:
        if self._deadline is None and not self._handlingRequest:
            site = self._site()
            self._deadline = site.clock.callLater(site.request_timeout, self._too_slow)
        super().lineReceived(line)

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        super().allContentReceived()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport is not None:
            self._tcp().abortConnection()

    def checkPersistence(self, request: Request, version: bytes) -> bool:
        self._served += 1
        site = self._site()
        if self._served >= site.keepalive_max:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return bool(super().checkPersistence(request, version))


class OneSite(Site):
    """HTTP factory with oned's connection limits."""

    protocol = OneChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Resource,
        clock: IReactorTime,
        message_size: int,
        keepalive_timeout: int,
        keepalive_max: int,
        request_timeout: int,
        max_conn: int,
    ) -> None:
        super().__init__(
            resource, timeout=keepalive_timeout, reactor=clock, parsePOSTFormSubmission=False
        )
        self.clock = clock
        self.message_size = message_size
        self.keepalive_max = max(1, keepalive_max)
        self.request_timeout = request_timeout
        self.max_conn = max(1, max_conn)
        self.port: IListeningPort | None = None
        self.open_connections = 0
        self.displayTracebacks = False
        self.noisy = False

    def log(self, request: http.Request) -> None:
        """No access log: calls are logged by the request manager."""

    def connection_opened(self) -> None:
        self.open_connections += 1
        if self.open_connections >= self.max_conn and self.port is not None:
            self.port.stopReading()  # type: ignore[attr-defined]

    def connection_closed(self) -> None:
        self.open_connections -= 1
        if self.open_connections < self.max_conn and self.port is not None:
            self.port.startReading()  # type: ignore[attr-defined]
