"""A fake process reactor for driver tests (no real processes, no real time).

:class:`FakeProcessReactor` is a ``MemoryReactorClock`` that also provides
``IReactorProcess``, in the spirit of twisted's procmon ``DummyProcessReactor`` and
Buildbot's expectation-based ``ProcessReactor``: tests may declare the spawns they
expect (``expect_spawn``), drive each child's output (``process_send_stdout``), end it
(``process_done``), inspect what was written to its stdin and which signals it got,
and finally ``assert_no_remaining_calls()``. A *responder* (for example
:class:`oned.testing.fake_driver.FakeDriver`) can be attached to a spawn to answer
like a real driver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import _ProcessAddress
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import (
    IProcessProtocol,
    IProcessTransport,
    IReactorProcess,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["FakeProcess", "FakeProcessReactor", "SpawnExpectation"]

_SIGNALS = {"TERM": 15, "KILL": 9, "INT": 2, "HUP": 1}

Responder = Callable[["FakeProcess"], None]


@implementer(IProcessTransport)
class FakeProcess:
    """One fake child: records stdin and signals; the test drives its output.

    Attributes:
        written: Every chunk written to the child's stdin, in order.
        signals: Signal names received (``"TERM"``, ``"KILL"``).
        stdin_closed: Whether the parent closed the child's stdin.
        ended: Whether the child has exited.
        term_exits_after: If not None, ``SIGTERM`` ends the child after this many
            seconds (``None``: TERM is ignored, as by a stuck driver).
        on_write: Called with each chunk written to stdin (responders hook here).
        on_close_stdin: Called when the parent closes stdin.
    """

    def __init__(
        self,
        reactor: FakeProcessReactor,
        pid: int,
        protocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[Any, Any] | None,
        path: bytes | str | None,
        child_fds: Mapping[int, object] | None,
    ) -> None:
        self.reactor = reactor
        self.pid: int | None = pid
        self.protocol = protocol
        self.executable = executable
        self.args = list(args)
        self.env = env
        self.path = path
        self.child_fds = child_fds
        self.written: list[bytes] = []
        self.signals: list[str] = []
        self.stdin_closed = False
        self.ended = False
        self.term_exits_after: float | None = 0.0
        self.on_write: Callable[[bytes], None] | None = None
        self.on_close_stdin: Callable[[], None] | None = None

    # -- IProcessTransport / ITransport -----------------------------------------

    def write(self, data: bytes) -> None:
        if self.stdin_closed or self.ended:
            return
        self.written.append(data)
        if self.on_write is not None:
            self.on_write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    def writeToChild(self, childFD: int, data: bytes) -> None:
        if childFD == 0:
            self.write(data)

    def closeStdin(self) -> None:
        if self.stdin_closed:
            return
        self.stdin_closed = True
        if self.on_close_stdin is not None and not self.ended:
            self.on_close_stdin()

    def closeStdout(self) -> None:
        pass

    def closeStderr(self) -> None:
        pass

    def closeChildFD(self, descriptor: int) -> None:
        if descriptor == 0:
            self.closeStdin()

    def loseConnection(self) -> None:
        self.closeStdin()

    def signalProcess(self, signalID: str | int) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        name = signalID if isinstance(signalID, str) else str(signalID)
        self.signals.append(name)
        if name == "KILL":
            self.reactor.callLater(0, self._exit_if_alive, None, _SIGNALS["KILL"])
        elif name == "TERM" and self.term_exits_after is not None:
            self.reactor.callLater(
                self.term_exits_after, self._exit_if_alive, None, _SIGNALS["TERM"]
            )

    def getPeer(self) -> _ProcessAddress:
        return _ProcessAddress()

    def getHost(self) -> _ProcessAddress:
        return _ProcessAddress()

    # -- test side -----------------------------------------------------------------

    @property
    def stdin(self) -> bytes:
        """Everything written to the child's stdin."""
        return b"".join(self.written)

    def send_stdout(self, data: bytes) -> None:
        """Deliver ``data`` as if the child wrote it to its stdout."""
        if self.ended:
            raise AssertionError("process already ended")
        self.protocol.childDataReceived(1, data)

    def close_stdout(self) -> None:
        """The child closes its stdout (keeps running)."""
        self.protocol.childConnectionLost(1)

    def exit(self, status: int | None = 0, signal: int | None = None) -> None:
        """End the child with an exit ``status`` or a ``signal``."""
        if self.ended:
            raise AssertionError("process already ended")
        self.ended = True
        self.stdin_closed = True
        for fd in (0, 1):
            self.protocol.childConnectionLost(fd)
        reason: Failure
        if signal is not None:
            reason = Failure(ProcessTerminated(signal=signal, status=signal))
        elif status == 0:
            reason = Failure(ProcessDone(0))
        else:
            code = status if status is not None else 1
            reason = Failure(ProcessTerminated(exitCode=code, status=code << 8))
        self.pid = None
        self.protocol.processEnded(reason)

    def _exit_if_alive(self, status: int | None, signal: int | None) -> None:
        if not self.ended:
            self.exit(status, signal)


@dataclass
class SpawnExpectation:
    """One spawn a test expects (``None`` fields match anything)."""

    executable: str | None = None
    args: list[str] | None = None
    env: Mapping[str, str] | None = None
    path: str | None = None
    child_fds: Mapping[int, object] | None = None
    responder: Responder | None = None
    error: BaseException | None = None


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactorClock):
    """``MemoryReactorClock`` + a recording, expectation-checking ``spawnProcess``.

    Args:
        strict: When true, every spawn must have been announced with
            :meth:`expect_spawn`; otherwise unexpected spawns are allowed and get
            the ``default_responder`` (if any).
    """

    def __init__(self, strict: bool = False) -> None:
        super().__init__()
        self.strict = strict
        self.processes: list[FakeProcess] = []
        self.default_responder: Responder | None = None
        self._expected: deque[SpawnExpectation] = deque()
        self._next_pid = 1000

    def expect_spawn(
        self,
        executable: str | None = None,
        args: list[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        path: str | None = None,
        child_fds: Mapping[int, object] | None = None,
        responder: Responder | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Announce the next spawn; ``error`` makes ``spawnProcess`` raise it."""
        self._expected.append(
            SpawnExpectation(executable, args, env, path, child_fds, responder, error)
        )

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str] = (),
        env: Mapping[Any, Any] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> FakeProcess:
        responder = self.default_responder
        if self._expected:
            exp = self._expected.popleft()
            self._check(exp, executable, args, env, path, childFDs)
            if exp.error is not None:
                raise exp.error
            responder = exp.responder or responder
        elif self.strict:
            raise AssertionError(f"unexpected spawn of {executable!r} {list(args)!r}")
        self._next_pid += 1
        process = FakeProcess(
            self, self._next_pid, processProtocol, executable, args, env, path, childFDs
        )
        self.processes.append(process)
        if responder is not None:
            responder(process)
        processProtocol.makeConnection(process)
        return process

    @staticmethod
    def _check(
        exp: SpawnExpectation,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[Any, Any] | None,
        path: bytes | str | None,
        child_fds: Mapping[int, int | str] | None,
    ) -> None:
        def fail(what: str, want: object, got: object) -> None:
            raise AssertionError(f"spawn {what} mismatch: expected {want!r}, got {got!r}")

        if exp.executable is not None and exp.executable != executable:
            fail("executable", exp.executable, executable)
        if exp.args is not None and list(exp.args) != list(args):
            fail("args", exp.args, list(args))
        if exp.env is not None:
            for key, value in exp.env.items():
                if env is None or env.get(key) != value:
                    fail(f"env[{key}]", value, None if env is None else env.get(key))
        if exp.path is not None and exp.path != path:
            fail("path", exp.path, path)
        if exp.child_fds is not None and dict(exp.child_fds) != dict(child_fds or {}):
            fail("childFDs", exp.child_fds, child_fds)

    # -- Buildbot-style helpers ------------------------------------------------------

    @property
    def last_process(self) -> FakeProcess:
        """The most recently spawned child."""
        if not self.processes:
            raise AssertionError("nothing was spawned")
        return self.processes[-1]

    def process(self, pid: int) -> FakeProcess:
        """The child spawned with ``pid``."""
        for proc in self.processes:
            if proc.pid == pid:
                return proc
        raise AssertionError(f"no live process {pid}")

    def process_send_stdout(self, pid: int, data: bytes) -> None:
        """The child ``pid`` writes ``data`` to its stdout."""
        self.process(pid).send_stdout(data)

    def process_done(self, pid: int, status: int = 0, signal: int | None = None) -> None:
        """The child ``pid`` exits."""
        self.process(pid).exit(status, signal)

    def assert_no_remaining_calls(self) -> None:
        """Every announced spawn happened."""
        if self._expected:
            raise AssertionError(f"expected spawns not made: {list(self._expected)!r}")
