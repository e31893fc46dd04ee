"""What the request manager calls: ``begin`` when a call arrives, ``end`` when its
answer is ready, ``malformed`` for a body that is not a call; and what the HTTP side
calls before it sends an answer: ``after_write``.

``end`` only keeps what the record needs; the records of the calls one reactor turn
completes are built, chained (in the order the calls completed) and handed to the OS
together by ``flush`` at the start of the next turn (or, for the calls a batch of
database answers completes, right after that batch): one loop over them while its code
is warm, and one ``write(2)`` to an ``O_APPEND`` file (a copy into the page cache,
cheaper than a thread hand-off). ``after_write`` holds an answer until that write is
done, so no call is answered before its record is written: a ``kill -9`` loses no
record of an acknowledged call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from hashlib import sha256
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

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

    __slots__ = (
        "caller", "ending", "method", "ms", "params", "peer", "read_only", "req_id", "started",
    )  # fmt: skip

    def __init__(self, method: str, params: tuple[Any, ...], peer: str, started: float) -> None:
        self.read_only = False
        self.method = method
        self.params = params
        self.peer = peer
        self.started = started
        self.req_id = -1
        self.caller: Caller | None = None
        # Set when the call ends (``AuditTrail._write``):
        self.ending: rec.Outcome
        self.ms: float  # duration


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
        flush_coming: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        #: True when someone calls ``flush`` before this turn ends (the database after
        #: a batch of answers): no timer needed then.
        self.flush_coming = flush_coming
        self.sink = sink
        self.masker = masker
        self.clock = clock
        self.monotonic = monotonic
        self._all = settings.mode == "all"
        self._read_only: dict[str, bool] = {}
        # JSON pieces that repeat from call to call, by caller, peer and method name:
        self._callers: dict[Caller, str] = {}
        self._peers: dict[str, str] = {}
        self._methods: dict[str, str] = {}
        self._flush_call: IDelayedCall | None = None
        self._kept: list[AuditEntry] = []  # ended this turn, records not yet written
        self._waiting: list[Callable[[], None]] = []  # answers held until the write
        self.failed = False

    @classmethod
    def from_config(
        cls,
        settings: AuditSettings,
        var: Any,
        clock: IReactorTime,
        hidden: Mapping[str, Iterable[int]],
        secret_attrs: Iterable[str],
        flush_coming: Callable[[], bool] = lambda: False,
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
        return cls(
            settings, sink, rec.Masker(hidden, secret_attrs), clock, flush_coming=flush_coming
        )

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
        """Keep the record for this turn's write."""
        entry.ending = ending
        entry.ms = (self.monotonic() - entry.started) * 1000.0
        self._kept.append(entry)
        if self._flush_call is None and not self.flush_coming():
            self._flush_call = self.clock.callLater(0, self.flush)

    def after_write(self, send: Callable[[], None]) -> None:
        """Run ``send`` (an answer going out) once the records kept so far are
        written: now when none is kept, else right after this turn's write."""
        if self._kept:
            self._waiting.append(send)
        else:
            send()

    def flush_kept(self) -> None:
        """``flush`` if a record is kept (the database's ``after_answers`` hook)."""
        if self._kept:
            self.flush()

    def flush(self) -> None:
        """Build, chain and write the records kept this turn, then let their answers go."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        kept, self._kept = self._kept, []
        sink = self.sink
        if kept and sink is not None:
            # One loop over this turn's records, the pieces that repeat from call to
            # call (callers, peers, methods) cached; "time" is this write's.
            when = rec.timestamp(self.clock.seconds())
            callers, peers, methods = self._callers, self._peers, self._methods
            params_json, line = self.masker.params_json, rec.line
            seq, prev = sink.seq, sink.last_hash
            lines = []
            for entry in kept:
                caller = entry.caller
                if caller is None:
                    name = rec.session_user(entry.params[0]) if entry.params else None
                    who = rec.who_json(name, -1, None, -1)
                else:
                    who = callers.get(caller) or _cache(
                        callers, caller,
                        rec.who_json(caller.uname, caller.uid, caller.gname, caller.gid),
                    )  # fmt: skip
                peer = peers.get(entry.peer) or _cache(peers, entry.peer,
                                                       rec.peer_json(entry.peer))  # fmt: skip
                method = methods.get(entry.method) or _cache(methods, entry.method,
                                                             rec.quote(entry.method))  # fmt: skip
                seq += 1
                text = line(seq, when, entry.req_id, who, peer, method,
                            params_json(entry.method, entry.params), entry.ending, entry.ms,
                            prev)  # fmt: skip
                prev = sha256(text).hexdigest()
                lines.append(text)
            try:
                sink.write(lines)
            except OSError as exc:
                # The next record links to the last one written: the lost ones show
                # as a gap in seq, which ``oned-audit verify`` reports.
                sink.seq = seq
                self._failed(exc)
            else:
                sink.seq, sink.last_hash = seq, prev
                self.failed = False
        waiting, self._waiting = self._waiting, []
        for send in waiting:
            try:
                send()
            except Exception:
                self.log.failure("Unexpected error sending an answer")

    def _failed(self, exc: OSError) -> None:
        # The calls are answered anyway (their changes are committed; refusing every
        # call because a disk is full would take the cloud down); the lost records
        # show as a gap in the chain's seq.
        if not self.failed:
            self.log.error("Cannot write the audit trail: {err}", err=str(exc))
        self.failed = True

    def close(self) -> None:
        self.flush()
        if self.sink is not None:
            self.sink.close()
            self.sink = None


def _cache(pieces: dict[Any, str], key: Any, piece: str) -> str:
    """Keep a JSON piece that repeats from call to call (bounded: peers and method
    names are the clients')."""
    if len(pieces) >= 4096:
        pieces.clear()
    pieces[key] = piece
    return piece
