"""The two ZeroMQ sockets of the HEM: a SUB socket on the hook driver's publisher and a
REQ socket on its result (REP) socket.

Results go out one at a time (REQ is lockstep) from a queue. The REQ socket only queues
a message on a completed connection (``ZMQ_IMMEDIATE``), so while the driver is down a
result waits here and is delivered once it is back. A result handed to a connection
whose ``ACK`` never comes is not sent again (the driver may have taken it): the socket
is replaced and the next result goes on, so one execution never yields two results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("oned.hem.bus")

#: Messages the SUB socket buffers while the HEM is busy (libzmq's default is 1,000).
SUB_HWM = 200_000


class Subscriber:
    """The SUB socket and the set of prefixes it is subscribed to."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str) -> None:
        self.endpoint = endpoint
        self.socket = ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, SUB_HWM)
        self.socket.setsockopt(zmq.LINGER, 0)
        # watched from before the first connection, so that only reconnections follow it
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_CONNECTED)
        self.socket.connect(endpoint)
        self.filters: set[str] = set()

    def apply(self, wanted: Iterable[str]) -> None:
        """Subscribe to the filters in ``wanted`` and leave the others."""
        target = set(wanted)
        for gone in sorted(self.filters - target):
            self.socket.setsockopt(zmq.UNSUBSCRIBE, gone.encode())
        for new in sorted(target - self.filters):
            self.socket.setsockopt(zmq.SUBSCRIBE, new.encode())
        self.filters = target

    async def connections(self) -> AsyncIterator[None]:
        """Yields each time the SUB socket connects to the publisher (the first time, and
        after the hook driver restarts: what it published meanwhile was missed)."""
        while True:
            frames = await self.monitor.recv_multipart()
            if parse_monitor_message(frames)["event"] == zmq.EVENT_CONNECTED:
                yield None

    async def receive(self) -> tuple[bytes, bytes]:
        """The next (key, content) message; a message without content has b""."""
        frames = await self.socket.recv_multipart()
        key = frames[0] if frames else b""
        content = frames[1] if len(frames) > 1 else b""
        return key, content

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)


class ResultSender:
    """Delivers ``<rc> <hook_id> <b64>`` results to the driver's REP socket in order."""

    def __init__(
        self, ctx: zmq.asyncio.Context, endpoint: str, ack_timeout: float = 30.0
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.ack_timeout = ack_timeout
        self.queue: asyncio.Queue[tuple[str, Callable[[], None] | None]] = asyncio.Queue()
        self.acked = 0
        self.unacknowledged = 0
        self._socket: zmq.asyncio.Socket | None = None

    def submit(self, message: str, delivered: Callable[[], None] | None = None) -> None:
        """Queue a result; ``delivered`` is called once it is acknowledged or given up."""
        self.queue.put_nowait((message, delivered))

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    def _req(self) -> zmq.asyncio.Socket:
        if self._socket is None:
            sock = self.ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket

    async def run(self) -> None:
        while True:
            message, delivered = await self.queue.get()
            try:
                await self.deliver(message)
            finally:
                self.queue.task_done()
                if delivered is not None:
                    delivered()

    async def deliver(self, message: str) -> bool:
        """Send one result and wait for its ACK; True when acknowledged."""
        sock = self._req()
        await sock.send_string(message)  # waits for a connection (ZMQ_IMMEDIATE)
        if await sock.poll(int(self.ack_timeout * 1000)):
            ack = await sock.recv_string()
            self.acked += 1
            if ack != "ACK":
                log.error("Wrong ACK message: %s.", ack)
            return True
        self.unacknowledged += 1
        log.error(
            "No ACK for a hook result in %ss (%s); it is not sent again", self.ack_timeout,
            message.split(" ", 2)[:2],
        )
        self._socket = None
        sock.close(linger=0)
        return False

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every submitted result is delivered."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except TimeoutError:
            log.warning("%d hook results not delivered at shutdown", self.queue.qsize())

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
