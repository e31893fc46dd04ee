"""What the request manager calls: ``begin`` when a call arrives, ``end`` when its
answer is ready, ``malformed`` for a body that is not a call.

``end`` keeps the record's raw fields (``record.Raw``) and copies them into the journal
(``oned.audit.journal``: a shared file mapping, no system call) before the answer can
go out, so a ``kill -9`` loses no record of an acknowledged call. Every ``WRITE_DELAY``
seconds the records kept are built, chained (in the order the calls ended) and written
to the log with one ``write(2)`` (``flush``): one warm loop over many records costs far
less than a build and a write per call between two calls' worth of other work. At start
the journal's records the log lacks are written first. Without a journal (syslog, or a
file system that cannot map it) each record is written when its call ends.
"""

from __future__ import annotations

import marshal
import time
from collections.abc import Callable, Iterable, Mapping
from hashlib import sha256
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from oned.audit import record as rec
from oned.audit.journal import Journal, journal_path
from oned.audit.settings import AuditSettings
from oned.audit.writer import ChainedFile, Sink, SyslogSink
from oned.auth.authorize import Caller
from oned.config import ConfigError
from oned.errors import ErrorCode, RpcFault
from oned.log import logger

_SECURITY_REFUSALS = (int(ErrorCode.AUTHENTICATION), int(ErrorCode.AUTHORIZATION))
#: Seconds a record waits in the journal for its batch to be written to the log.
WRITE_DELAY = 0.05


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
        journal: Journal | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.journal = journal
        self.masker = masker
        self.clock = clock
        self.monotonic = monotonic
        self._all = settings.mode == "all"
        self._read_only: dict[str, bool] = {}
        # JSON pieces that repeat from record to record, by who, peer and method:
        self._whos: dict[tuple[Any, ...], str] = {}
        self._peers: dict[str, str] = {}
        self._methods: dict[str, str] = {}
        self._timer: IDelayedCall | None = None
        self._kept: list[rec.Raw] = []  # ended, not written to the log yet
        self._seq = sink.seq if sink is not None else 0
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
        journal: Journal | None = None
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
                journal = cls._journal(journal_path(path), settings.fsync == 0)
        trail = cls(settings, sink, rec.Masker(hidden, secret_attrs), clock, journal=journal)
        trail._recover()
        return trail

    @classmethod
    def _journal(cls, path: Path, sync: bool) -> Journal | None:
        try:
            return Journal(path, sync=sync)
        except (OSError, ValueError) as exc:
            cls.log.warn("No audit journal ({err}): every record is written when its call "
                         "ends", err=str(exc))  # fmt: skip
            return None

    def _recover(self) -> None:
        """Write the journal's records the log lacks (the daemon stopped before their
        batch was written), then start the journal afresh."""
        journal, sink = self.journal, self.sink
        if journal is None or sink is None:
            return
        # (frames are CRC-checked; a well-formed frame with fields of the wrong types is
        # someone's edit, reported and not replayed)
        try:
            raws = [raw for raw in journal.recover() if len(raw) == 12 and raw[0] > sink.seq]
            if raws:
                self._store(sink, raws)
                self.log.info("Wrote {n} audit records of calls answered before the last "
                              "stop", n=len(raws))  # fmt: skip
        except (TypeError, ValueError, AttributeError) as exc:
            self.log.error("Audit journal {path} unreadable, not replayed: {err}",
                           path=str(journal.path), err=str(exc))  # fmt: skip
        self._seq = sink.seq
        journal.clear()

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
        """Keep the record for the next batch, in the journal (or write it now)."""
        ms = (self.monotonic() - entry.started) * 1000.0
        caller = entry.caller
        if caller is None:
            params = entry.params
            raw: rec.Raw = (
                self._seq + 1, self.clock.seconds(), entry.req_id,
                rec.session_user(params[0]) if params else None, -1, None, -1,
                entry.peer, entry.method, self.masker.stored(entry.method, params), ending, ms,
            )  # fmt: skip
        else:
            raw = (
                self._seq + 1, self.clock.seconds(), entry.req_id,
                caller.uname, caller.uid, caller.gname, caller.gid,
                entry.peer, entry.method, self.masker.stored(entry.method, entry.params),
                ending, ms,
            )  # fmt: skip
        self._seq += 1
        kept = self._kept
        kept.append(raw)
        journal = self.journal
        if journal is None:
            self.flush()
            return
        try:
            payload = marshal.dumps(raw)
        except ValueError:  # a parameter marshal cannot store (base64, dateTime)
            raw = (*raw[:9], tuple(self.masker.value(v) for v in raw[9]), *raw[10:])
            kept[-1] = raw
            payload = marshal.dumps(raw)
        if not journal.append(payload):
            self.flush()  # the journal is full (or the record too big for it)
        elif self._timer is None:
            self._timer = self.clock.callLater(WRITE_DELAY, self.flush)

    def flush(self) -> None:
        """Build, chain and write the records kept so far, then clear the journal."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        kept, self._kept = self._kept, []
        if kept and self.sink is not None:
            self._store(self.sink, kept)
            if self.journal is not None:
                self.journal.clear()

    def _store(self, sink: Sink, raws: list[rec.Raw]) -> None:
        """Build the records' lines, chain them and write them with one ``write``."""
        whos, peers, methods = self._whos, self._peers, self._methods
        stored_json, line, timestamp = self.masker.stored_json, rec.line, rec.timestamp
        prev = sink.last_hash
        seq = sink.seq
        lines = []
        for raw in raws:
            seq, when, req, user, uid, group, gid, peer, method, params, ending, ms = raw
            key = raw[3:7]
            who = whos.get(key) or _cache(whos, key, rec.who_json(user, uid, group, gid))
            peer_json = peers.get(peer) or _cache(peers, peer, rec.peer_json(peer))
            method_json = methods.get(method) or _cache(methods, method, rec.quote(method))
            text = line(seq, timestamp(when), req, who, peer_json, method_json,
                        stored_json(params), ending, ms, prev)  # fmt: skip
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
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def _cache(pieces: dict[Any, str], key: Any, piece: str) -> str:
    """Keep a JSON piece that repeats from call to call (bounded: peers and method
    names are the clients')."""
    if len(pieces) >= 4096:
        pieces.clear()
    pieces[key] = piece
    return piece
