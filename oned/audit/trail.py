"""What the request manager calls: ``begin`` when a call arrives, ``end`` when its
answer is ready (before it is sent), ``malformed`` for a body that is not a call.

Records are written in the order calls complete, from the reactor thread: a write of
one short line to an ``O_APPEND`` file is a copy into the page cache, cheaper than a
thread hand-off, and it must be done before the answer goes out anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime

from oned.audit import record as rec
from oned.audit.settings import AuditSettings
from oned.audit.writer import ChainedFile, Sink, SyslogSink
from oned.auth.authorize import Caller
from oned.config import ConfigError
from oned.errors import ErrorCode, RpcFault
from oned.log import logger

_SECURITY_REFUSALS = (int(ErrorCode.AUTHENTICATION), int(ErrorCode.AUTHORIZATION))


class AuditEntry:
    """A call being served: filled in by the dispatcher as it learns more."""

    __slots__ = ("caller", "method", "params", "peer", "read_only", "req_id", "started")

    def __init__(self, method: str, params: tuple[Any, ...], peer: str, started: float) -> None:
        self.read_only = False
        self.method = method
        self.params = params
        self.peer = peer
        self.started = started
        self.req_id = -1
        self.caller: Caller | None = None


class AuditTrail:
    """Builds and chains the records of the calls ``settings.mode`` selects."""

    log = logger("AUD")

    def __init__(
        self,
        settings: AuditSettings,
        sink: Sink | None,
        masker: rec.Masker,
        clock: IReactorTime,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.masker = masker
        self.clock = clock
        self.monotonic = monotonic
        self._all = settings.mode == "all"
        self._read_only: dict[str, bool] = {}
        self._pieces: dict[Any, str] = {}
        self.failed = False

    @classmethod
    def from_config(
        cls,
        settings: AuditSettings,
        var: Any,
        clock: IReactorTime,
        hidden: Mapping[str, Iterable[int]],
        secret_attrs: Iterable[str],
    ) -> AuditTrail:
        sink: Sink | None = None
        if settings.mode != "off":
            if settings.destination == "syslog":
                sink = SyslogSink(settings.facility)
            else:
                path = settings.file_path(var)
                try:
                    sink = ChainedFile(
                        path,
                        clock,
                        max_size=settings.max_size_mb * 1024 * 1024,
                        keep=settings.keep,
                        fsync=settings.fsync,
                    )
                except OSError as exc:
                    raise ConfigError(f"Cannot open the audit log {path}: {exc.strerror}") from exc
        return cls(settings, sink, rec.Masker(hidden, secret_attrs), clock)

    def begin(self, method: str, params: tuple[Any, ...], peer: str) -> AuditEntry | None:
        """The entry of a call that may be recorded (None when the mode is off)."""
        if self.sink is None:
            return None
        entry = AuditEntry(method, params, peer, self.monotonic())
        if not self._all:
            read_only = self._read_only.get(method)
            if read_only is None:
                read_only = rec.is_read_only(method)
                if len(self._read_only) < 4096:  # method names are the client's
                    self._read_only[method] = read_only
            entry.read_only = read_only
        return entry

    def end(self, entry: AuditEntry | None, result: Any, error: BaseException | None = None
            ) -> None:  # fmt: skip
        """Write the record of a finished call: ``result`` is its answer array, or
        ``error`` what it raised instead (an XML-RPC fault)."""
        if entry is None:
            return
        if entry.read_only and error is None and type(result) is list and result[:1] == [True]:
            return  # MODE "writes", a read that succeeded: nothing to do
        ending: rec.Outcome
        if error is None:
            ending = rec.outcome(entry.method, result)
        elif isinstance(error, RpcFault):
            ending = (False, error.fault_code, None, error.message)
        else:
            ending = (False, -1, None, f"{type(error).__name__}: {error}")
        if entry.read_only and ending[1] not in _SECURITY_REFUSALS:
            return  # MODE "writes": reads are left out, unless refused to their caller
        self._write(entry, ending)

    def malformed(self, peer: str, message: str) -> None:
        """A body that is not an XML-RPC call (fault -503)."""
        if self.sink is None:
            return
        entry = AuditEntry("", (), peer, self.monotonic())
        self._write(entry, (False, -503, None, message[:1024]))

    def _write(self, entry: AuditEntry, ending: rec.Outcome) -> None:
        sink = self.sink
        assert sink is not None
        caller = entry.caller
        if caller is not None:
            key = (caller.uid, caller.gid, caller.uname, caller.gname)
            who = self._cached(key, lambda: rec.who_json(key[2], key[0], key[3], key[1]))
        else:
            who = rec.who_json(
                rec.session_user(entry.params[0]) if entry.params else None, -1, None, -1
            )
        line = rec.line(
            sink.seq + 1,
            rec.timestamp(self.clock.seconds()),
            entry.req_id,
            who,
            self._cached(entry.peer, lambda: rec.peer_json(entry.peer)),
            self._cached(entry.method, lambda: rec.quote(entry.method)),
            self.masker.params_json(entry.method, entry.params),
            ending,
            (self.monotonic() - entry.started) * 1000.0,
            sink.last_hash,
        )
        sink.seq += 1
        try:
            sink.append(line)
        except OSError as exc:
            # The call is answered anyway (its change is committed; refusing every
            # call because a disk is full would take the cloud down); the lost
            # record shows as a gap in the chain's seq.
            if not self.failed:
                self.log.error("Cannot write the audit trail: {err}", err=str(exc))
            self.failed = True
            return
        self.failed = False

    def _cached(self, key: Any, make: Callable[[], str]) -> str:
        """JSON pieces that repeat from call to call (callers, peers, methods)."""
        piece = self._pieces.get(key)
        if piece is None:
            if len(self._pieces) >= 8192:  # peers and method names are the clients'
                self._pieces.clear()
            piece = self._pieces[key] = make()
        return piece

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
