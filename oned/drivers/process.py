"""Supervision of one driver process (mirrors ``include/Driver.h``).

:class:`DriverProcess` spawns the driver exactly as oned does (``[exe, ARGUMENTS]``,
stdin/stdout pipes, fd 2 closed, the daemon's environment), performs the ``INIT``
handshake within 10 s, keeps track of the requests in flight, and restarts the driver
with back-off when it dies (procmon style). Unlike oned, requests in flight when the
driver dies, or sent while it is down, do not wait forever: they are answered with a
synthesised ``FAILURE`` through the family's normal reply handler, so the object takes
its failure path. Shutdown writes ``FINALIZE``, closes the pipe, then escalates to
``SIGTERM`` and ``SIGKILL``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from oned._async import background
from oned.drivers.message import DriverMessage, format_line
from oned.drivers.protocol import DriverProtocol, HandshakeError

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IDelayedCall,
        IProcessTransport,
        IReactorProcess,
        IReactorTime,
    )
    from twisted.python.failure import Failure

    from oned.drivers.families import Family

__all__ = ["DriverProcess", "DriverStartError", "DriverState"]

Handler = Callable[[DriverMessage], object]


class DriverStartError(Exception):
    """The driver could not be spawned or did not complete the INIT handshake."""


class DriverState(Enum):
    """Where a :class:`DriverProcess` is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"


@dataclass(eq=False)
class _Pending:
    """One request written to the driver and not answered yet."""

    action: str
    oid: int
    sent: float
    waiter: Deferred[DriverMessage] | None = None
    timer: IDelayedCall | None = field(default=None, repr=False)


class _Adapter(ProcessProtocol):
    """Connects a :class:`DriverProtocol` to a child process (like ``_WrapIProtocol``).

    Unlike the endpoint wrapper it also reports the driver closing its stdout, which
    the core treats like the driver's death.
    """

    def __init__(
        self,
        proto: DriverProtocol,
        stdout_closed: Callable[[], None],
        ended: Callable[[Failure], None],
    ) -> None:
        self.proto = proto
        self._stdout_closed = stdout_closed
        self._ended = ended

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        self.proto.makeConnection(transport)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self.proto.dataReceived(data)

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == 1:
            self._stdout_closed()

    def processEnded(self, reason: Failure) -> None:
        self.proto.connectionLost(reason)
        self._ended(reason)


def _python_script(path: str) -> bool:
    """Whether ``path`` starts with a ``#!`` line naming python (pyzmq and the other
    libraries of the installed environment are then found whatever PATH says)."""
    try:
        with open(path, "rb") as program:
            first = program.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _exit_text(reason: Failure | None) -> str:
    if reason is None:
        return "unknown status"
    value = reason.value
    signal = getattr(value, "signal", None)
    if signal:
        return f"killed by signal {signal}"
    code = getattr(value, "exitCode", None)
    return f"exit status {code}" if code is not None else str(value)


class DriverProcess(Service):
    """One running driver: spawn, handshake, request tracking, restart, stop.

    Args:
        name: The driver's name (``NAME`` of its section, or the internal name).
        family: Its family (codec, message table, reply tracking rules).
        executable: Absolute path of the program.
        arguments: The whole ``ARGUMENTS`` string, passed as one argument.
        reactor: Spawns the child.
        clock: Time source for timeouts and back-off.
        env: Environment of the child (default: this process's environment).
        path: Working directory of the child (default: inherited).
        init_timeout: Seconds to wait for ``INIT SUCCESS``.
        finalize_timeout: Seconds to wait for exit after ``FINALIZE``.
        kill_timeout: Seconds to wait after ``SIGTERM`` before ``SIGKILL``.
        min_restart_delay: First back-off delay after a crash.
        max_restart_delay: Back-off ceiling.
        restart_threshold: A driver that ran this long restarts after the minimum delay.
        log: Logger of the owning manager (its namespace gives the log tag).
    """

    def __init__(
        self,
        name: str,
        family: Family,
        executable: str,
        arguments: str,
        reactor: IReactorProcess,
        clock: IReactorTime,
        *,
        env: Mapping[str, str] | None = None,
        path: str | None = None,
        init_timeout: float = 10.0,
        finalize_timeout: float = 10.0,
        kill_timeout: float = 5.0,
        min_restart_delay: float = 1.0,
        max_restart_delay: float = 60.0,
        restart_threshold: float = 10.0,
        log: Logger | None = None,
    ) -> None:
        self.name = name
        self.driver_name = name
        self.family = family
        self.spec = family.spec
        self.executable = executable
        self.arguments = arguments
        self._reactor = reactor
        self._clock = clock
        self._env = env
        self._path = path
        self.init_timeout = init_timeout
        self.finalize_timeout = finalize_timeout
        self.kill_timeout = kill_timeout
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max_restart_delay
        self.restart_threshold = restart_threshold
        self.log = log or Logger(namespace=f"oned.{self.spec.log_tag}")
        self.state = DriverState.STOPPED
        self.restarts = 0
        #: Requests that got no reply in time, and FAILURE replies by action (metrics).
        self.timed_out = 0
        self.failed: Counter[str] = Counter()
        self._handlers: dict[str, Handler] = {}
        self._undefined_handler: Callable[[str], None] = self._log_undefined
        self._reconnect: list[Callable[[], object]] = []
        self._pending: dict[tuple[str, int], deque[_Pending]] = {}
        self._proto: DriverProtocol | None = None
        self._process: IProcessTransport | None = None
        self._end_waiters: list[Deferred[bool]] = []
        self._restart_call: IDelayedCall | None = None
        self._restart_delay = min_restart_delay
        self._started_at = 0.0
        self._killing = False
        self._batch: list[bytes] = []
        self._batch_call: IDelayedCall | None = None

    # -- registration ------------------------------------------------------------

    def register_action(self, action: str, handler: Handler) -> None:
        """Set the handler of one reply/message type (replaces any previous one)."""
        self._handlers[action] = handler

    def set_undefined_handler(self, handler: Callable[[str], None]) -> None:
        """Set what receives unparseable lines and unknown types."""
        self._undefined_handler = handler

    def add_reconnect_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` after every successful restart (``reconnected()``)."""
        self._reconnect.append(callback)

    # -- sending -------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Whether the driver has answered INIT and is accepting requests."""
        return self.state is DriverState.RUNNING and self._proto is not None

    def in_flight(self) -> int:
        """Number of requests awaiting their reply."""
        return sum(len(q) for q in self._pending.values())

    def send(
        self,
        action: str,
        oid: int,
        payload: str = "",
        *,
        timeout: float | None = None,
    ) -> None:
        """Write ``ACTION  ID PAYLOAD`` (payload encoded as the family requires).

        The reply arrives later through the handler registered for ``action``. If
        the driver is down, or ``timeout`` seconds pass, or the driver dies first,
        the handler gets a synthesised ``FAILURE`` instead.
        """
        self._send(action, oid, payload, timeout, None)

    def request(
        self, action: str, oid: int, payload: str, timeout: float | None
    ) -> Deferred[DriverMessage]:
        """Send a request and return a Deferred firing with its reply message.

        Timeouts, driver death and a driver that is down produce a ``FAILURE``
        message (``Request timeout`` on timeout), never an errback.
        """
        waiter: Deferred[DriverMessage] = Deferred()
        self._send(action, oid, payload, timeout, waiter)
        return waiter

    def _send(
        self,
        action: str,
        oid: int,
        payload: str,
        timeout: float | None,
        waiter: Deferred[DriverMessage] | None,
    ) -> None:
        spec = self.spec
        tracked = (spec.track_replies and action not in spec.no_reply) or waiter is not None
        pending: _Pending | None = None
        if tracked:
            reply_oid = spec.reply_id.get(action, oid)
            pending = _Pending(action, reply_oid, self._clock.seconds(), waiter)
            self._pending.setdefault((action, reply_oid), deque()).append(pending)
        if action == "DRIVER_CANCEL":
            self._forget_oid(oid)
        if not self.is_running or self._proto is None:
            if pending is not None:
                self._clock.callLater(0, self._fail, pending, f"Driver {self.name} is not running")
            return
        if pending is not None and timeout is not None:
            pending.timer = self._clock.callLater(timeout, self._timed_out, pending)
        msg = DriverMessage(action, spec.request_status, oid, spec.encode_payload(payload))
        if spec.has_timestamp:
            msg = DriverMessage(msg.action, msg.status, msg.oid, msg.payload, 0)
        if spec.batch_delay > 0:
            self._batch.append(format_line(msg))
            if self._batch_call is None:
                self._batch_call = self._clock.callLater(spec.batch_delay, self._write_batch)
            return
        self._proto.send(msg)

    def _write_batch(self) -> None:
        """Write the requests held by ``batch_delay`` in one go (in order)."""
        if self._batch_call is not None and self._batch_call.active():
            self._batch_call.cancel()
        self._batch_call = None
        lines, self._batch = self._batch, []
        if lines and self._proto is not None and self._proto.is_open:
            self._proto.send_raw(b"".join(lines))

    def _forget_oid(self, oid: int) -> None:
        """DRIVER_CANCEL: the cancelled action of ``oid`` will never be answered."""
        for key in [k for k in self._pending if k[1] == oid]:
            for pending in self._pending.pop(key):
                if pending.timer is not None and pending.timer.active():
                    pending.timer.cancel()

    # -- receiving -----------------------------------------------------------------

    def _on_message(self, msg: DriverMessage) -> None:
        spec = self.spec
        if msg.status == "FAILURE":
            self.failed[msg.action] += 1
        if msg.action not in spec.unsolicited:
            key = (msg.action, msg.oid)
            queue = self._pending.get(key)
            if queue:
                pending = queue.popleft()
                if not queue:
                    del self._pending[key]
                if pending.timer is not None and pending.timer.active():
                    pending.timer.cancel()
                if pending.waiter is not None:
                    pending.waiter.callback(msg)
                    return
            elif spec.track_replies:
                self.log.warn(
                    "Ignoring reply from driver {driver} with no matching request: "
                    "{action} {status} {oid} {payload}",
                    driver=self.name,
                    action=msg.action,
                    status=msg.status,
                    oid=msg.oid,
                    payload=msg.payload[:200],
                )
                return
        self._deliver(msg)

    def _deliver(self, msg: DriverMessage) -> None:
        handler = self._handlers.get(msg.action)
        if handler is None:
            self.log.debug(
                "No handler for {action} from driver {driver}",
                action=msg.action,
                driver=self.name,
            )
            return
        try:
            result = handler(msg)
        except Exception:
            self.log.failure(
                "Handler for {action} of driver {driver} failed",
                action=msg.action,
                driver=self.name,
            )
            return
        if isinstance(result, Coroutine):
            background(result, f"{self.spec.log_tag} {msg.action} {msg.oid}")
        elif isinstance(result, Deferred):
            result.addErrback(
                lambda f: self.log.failure(
                    "Handler for {action} failed", failure=f, action=msg.action
                )
            )

    def _log_undefined(self, line: str) -> None:
        self.log.warn("Received UNDEFINED msg: {line}", line=line)

    def _fail(self, pending: _Pending, reason: str) -> None:
        msg = DriverMessage(pending.action, "FAILURE", pending.oid, reason)
        self.failed[pending.action] += 1
        if pending.waiter is not None:
            if not pending.waiter.called:
                pending.waiter.callback(msg)
            return
        self._deliver(msg)

    def _timed_out(self, pending: _Pending) -> None:
        key = (pending.action, pending.oid)
        queue = self._pending.get(key)
        if queue is None or pending not in queue:
            return
        queue.remove(pending)
        if not queue:
            del self._pending[key]
        self.log.error(
            "Timeout waiting for {action} {oid} from driver {driver}",
            action=pending.action,
            oid=pending.oid,
            driver=self.name,
        )
        self.timed_out += 1
        self._fail(pending, "Request timeout")

    def _fail_all(self, reason: str, *, deliver: bool = True) -> None:
        pending_all = [p for q in self._pending.values() for p in q]
        self._pending.clear()
        for pending in pending_all:
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            if deliver or pending.waiter is not None:
                self._fail(pending, reason)

    # -- lifecycle -----------------------------------------------------------------

    def startService(self) -> Deferred[None]:
        super().startService()
        return Deferred.fromCoroutine(self.start())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self.stop())

    async def start(self) -> None:
        """Spawn the driver and complete the handshake.

        Raises:
            DriverStartError: Missing or non-executable program, spawn failure,
                no ``INIT SUCCESS`` within ``init_timeout``.
        """
        if self.state is not DriverState.STOPPED:
            return
        self.state = DriverState.STARTING
        try:
            await self._spawn()
        except DriverStartError:
            if self.state is DriverState.STARTING:
                self.state = DriverState.STOPPED
            raise
        if self.state is not DriverState.STARTING:
            raise DriverStartError("Driver stopped while starting")
        self.state = DriverState.RUNNING
        self.log.info("Driver {driver} started", driver=self.name)

    def _check_executable(self) -> None:
        if not os.path.exists(self.executable):
            raise DriverStartError(f"File not exists: {self.executable}")
        if not os.access(self.executable, os.X_OK) or os.path.isdir(self.executable):
            raise DriverStartError(f"File is not executable: {self.executable}")

    async def _spawn(self) -> None:
        self._check_executable()
        proto = DriverProtocol(
            self.driver_name,
            self.spec,
            self._on_message,
            self._on_undefined,
            self.log,
        )
        adapter = _Adapter(
            proto,
            lambda: self._stdout_closed(proto),
            lambda reason: self._ended(proto, reason),
        )
        env = dict(os.environ if self._env is None else self._env)
        self._killing = False
        program, argv = self.executable, [self.executable, self.arguments]
        if _python_script(program):  # our Python drivers run under the daemon's interpreter
            program, argv = sys.executable, [sys.executable, *argv]
        try:
            process = self._reactor.spawnProcess(
                adapter,
                program,
                argv,
                env=env,
                path=self._path,
                childFDs={0: "w", 1: "r"},
            )
        except Exception as exc:
            raise DriverStartError(f"Error starting driver, {exc}") from exc
        self._proto = proto
        self._process = process
        handshake = proto.handshake
        handshake.addTimeout(self.init_timeout, self._clock)
        try:
            await handshake
        except TimeoutError:
            self._abort()
            raise DriverStartError("Driver initialization time out") from None
        except HandshakeError as exc:
            self._abort()
            raise DriverStartError(str(exc)) from None
        self._started_at = self._clock.seconds()

    def _on_undefined(self, line: str) -> None:
        self._undefined_handler(line)

    def _abort(self) -> None:
        """Kill a child that failed its handshake."""
        process, self._process = self._process, None
        self._proto = None
        if process is not None:
            self._signal(process, "KILL")

    @staticmethod
    def _signal(process: IProcessTransport, sig: str) -> None:
        try:
            process.signalProcess(sig)
        except (ProcessExitedAlready, OSError):
            pass

    def _stdout_closed(self, proto: DriverProtocol) -> None:
        """The driver closed its stdout: treat it as dead (oned re-spawns it)."""
        if self.state in (DriverState.STOPPING, DriverState.STOPPED) or self._killing:
            return
        process = self._process
        if process is None or proto is not self._proto:
            return
        self._killing = True
        self.log.error("Driver {driver} closed its output", driver=self.name)
        try:
            process.closeStdin()
        except Exception:  # noqa: S110 - the pipe may already be gone
            pass
        self._clock.callLater(1.0, self._kill_if_alive, process)

    def _kill_if_alive(self, process: IProcessTransport) -> None:
        if process is self._process:
            self._signal(process, "KILL")

    def _ended(self, proto: DriverProtocol, reason: Failure) -> None:
        if proto is not self._proto:
            return  # a child killed after a failed handshake
        this_process = self._process
        self._process = None
        self._proto = None
        waiters, self._end_waiters = self._end_waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(True)
        if this_process is None:
            return
        if self.state in (DriverState.STOPPING, DriverState.STOPPED):
            self.log.info(
                "Driver {driver} stopped ({status})",
                driver=self.name,
                status=_exit_text(reason),
            )
            return
        lived = self._clock.seconds() - self._started_at
        if lived >= self.restart_threshold:
            self._restart_delay = self.min_restart_delay
        delay = self._restart_delay
        self._restart_delay = min(self._restart_delay * 2, self.max_restart_delay)
        in_flight = self.in_flight()
        self.log.error(
            "Driver {driver} exited ({status}), {count} action(s) in flight failed; "
            "restarting in {delay:.0f} s",
            driver=self.name,
            status=_exit_text(reason),
            count=in_flight,
            delay=delay,
        )
        self.state = DriverState.RESTARTING
        self._fail_all(f"Driver {self.name} exited ({_exit_text(reason)})")
        self._schedule_restart(delay)

    def _schedule_restart(self, delay: float) -> None:
        self._restart_call = self._clock.callLater(
            delay, lambda: background(self._restart(), f"restart {self.name}")
        )

    async def _restart(self) -> None:
        self._restart_call = None
        if self.state is not DriverState.RESTARTING:
            return
        self.restarts += 1
        try:
            await self._spawn()
        except DriverStartError as exc:
            if self.state is not DriverState.RESTARTING:
                return
            delay = self._restart_delay
            self._restart_delay = min(self._restart_delay * 2, self.max_restart_delay)
            self.log.error(
                "Unable to restart driver {driver}: {error}; retrying in {delay:.0f} s",
                driver=self.name,
                error=str(exc),
                delay=delay,
            )
            self._schedule_restart(delay)
            return
        if self.state is not DriverState.RESTARTING:
            # stop() was called while we were restarting.
            await self._terminate()
            return
        self.state = DriverState.RUNNING
        self.log.info("Driver {driver} restarted", driver=self.name)
        for callback in self._reconnect:
            try:
                result = callback()
            except Exception:
                self.log.failure("Reconnect callback of {driver} failed", driver=self.name)
                continue
            if isinstance(result, Coroutine):
                background(result, f"reconnected {self.name}")

    async def stop(self) -> None:
        """``FINALIZE``, close the pipe, then ``SIGTERM`` and ``SIGKILL`` as needed."""
        if self.state is DriverState.STOPPED:
            return
        self.state = DriverState.STOPPING
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        self._restart_call = None
        self._fail_all(f"Driver {self.name} stopped", deliver=False)
        await self._terminate()
        self.state = DriverState.STOPPED

    async def _terminate(self) -> None:
        process, proto = self._process, self._proto
        if process is None:
            return
        if proto is not None and proto.is_open:
            try:
                self._write_batch()
                proto.send_raw(b"FINALIZE\n")
                process.closeStdin()
            except Exception:  # noqa: S110 - the pipe may already be gone
                pass
        if await self._wait_end(self.finalize_timeout):
            return
        self.log.warn("Driver {driver} ignored FINALIZE, sending TERM", driver=self.name)
        self._signal(process, "TERM")
        if await self._wait_end(self.kill_timeout):
            return
        self.log.warn("Driver {driver} ignored TERM, sending KILL", driver=self.name)
        self._signal(process, "KILL")
        await self._wait_end(self.kill_timeout)

    async def _wait_end(self, seconds: float) -> bool:
        """Wait until the current child exits; False after ``seconds``."""
        if self._process is None:
            return True
        waiter: Deferred[bool] = Deferred()
        self._end_waiters.append(waiter)

        def expire() -> None:
            if not waiter.called:
                waiter.callback(False)

        timer = self._clock.callLater(seconds, expire)
        result = await waiter
        if timer.active():
            timer.cancel()
        return result
