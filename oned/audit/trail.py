"""What the request manager calls: ``begin`` when a call arrives, ``end`` when its
answer is ready, ``malformed`` for a body that is not a call.

``end`` keeps the record's raw fields (``record.Raw``) and copies them into the journal
(``oned.audit.journal``: a shared file mapping, no system call) before the answer can
go out, so a ``kill -9`` loses no record of an acknowledged call. Every WRITE_DELAY
seconds the records kept are built, chained (in the order the calls ended) and written
to the log with one ``write(2)`` (``flush``): one warm loop over many records costs far
less than a build and a write per call between two calls' worth of other work.

In the daemon that build is not even done on the API thread: the trail hands the
journal's frames to the scribe (``oned.audit.scribe``, a process of its own) and only
forgets them once the scribe says they are in the log. Whenever there is no scribe (it
died, it fell a journal half behind, a record bigger than a half, the daemon stopping
or reloading) the trail kills it, waits for its lock, writes the records the log lacks
from the journal itself, and goes on writing them itself until a new scribe is started
(``_take_over``/``_hand_over``). At start the journal's records the log lacks are written
first. Without a journal (syslog, or a file system that cannot map it) each record is
written when its call ends.
"""

from __future__ import annotations

import marshal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime

from oned.audit import record as rec
from oned.audit.batch import LineBuilder, in_order
from oned.audit.journal import Journal, journal_path, wait_for_scribe
from oned.audit.link import ScribeLink
from oned.audit.scribe import scribe_config
from oned.audit.settings import AuditSettings
from oned.audit.writer import ChainedFile, Sink, SyslogSink
from oned.auth.authorize import Caller
from oned.config import ConfigError
from oned.errors import ErrorCode, RpcFault
from oned.log import logger

_SECURITY_REFUSALS = (int(ErrorCode.AUTHENTICATION), int(ErrorCode.AUTHORIZATION))
#: Seconds a record waits in the journal for its batch to be written to the log
#: (AUDIT WRITE_DELAY, this by default).
WRITE_DELAY = AuditSettings.write_delay
#: Seconds before a scribe that died is replaced (doubled while they die young).
SCRIBE_RESTART = 5.0
SCRIBE_RESTART_MAX = 300.0
#: Seconds to wait for a scribe's lock before writing the log anyway.
SCRIBE_WAIT = 10.0
#: marshal format of the journal's frames (2: no reference table to build per record).
MARSHAL_VERSION = 2


class AuditEntry:
    """A call being served: filled in by the dispatcher as it learns more (made by
    ``AuditTrail.begin`` without an ``__init__`` call: this runs for every call)."""

    __slots__ = ("caller", "method", "params", "peer", "read_only", "req_id", "started")

    method: str
    params: tuple[Any, ...]
    peer: str
    started: float
    read_only: bool
    req_id: int
    caller: Caller | None


_new_entry = object.__new__


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
        opener: Callable[[], ChainedFile] | None = None,
        scribe: tuple[IReactorProcess, str] | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink  # None while a scribe writes the log
        self.journal = journal
        self.masker = masker
        self.builder = LineBuilder(masker)
        self.clock = clock
        self.monotonic = monotonic
        self.enabled = sink is not None
        self._all = settings.mode == "all"
        self._delay = settings.write_delay
        self._read_only: dict[str, bool] = {}
        self._timer: IDelayedCall | None = None
        self._kept: list[rec.Raw] = []  # ended, not written to the log yet (no scribe)
        self._seq = sink.seq if sink is not None else 0
        self.failed = False
        #: Reopens the log file when the daemon takes the writing back from a scribe.
        self._opener = opener
        self._scribe = scribe  # how to start one: the reactor, its CONFIG argument
        self.link: ScribeLink | None = None
        self._in_flight: int | None = None  # the journal half the scribe is writing
        self._restart: IDelayedCall | None = None
        self._restart_delay = SCRIBE_RESTART
        self._link_started = 0.0

    @classmethod
    def from_config(
        cls,
        settings: AuditSettings,
        var: Any,
        clock: IReactorTime,
        hidden: Mapping[str, Iterable[int]],
        secret_attrs: Iterable[str],
        scribe: IReactorProcess | None = None,
    ) -> AuditTrail:
        """The trail ``settings`` ask for; with ``scribe`` (a reactor that can spawn
        processes) a scribe writes its file. Raises ``ConfigError``."""
        secrets = list(secret_attrs)
        sink: Sink | None = None
        journal: Journal | None = None
        opener: Callable[[], ChainedFile] | None = None
        spawn: tuple[IReactorProcess, str] | None = None
        if settings.mode != "off":
            if settings.destination == "syslog":
                sink = SyslogSink(settings.facility)
            else:
                path = settings.file_path(var)

                def opener() -> ChainedFile:
                    return ChainedFile(path, clock, max_size=settings.max_size_mb * 1024 * 1024,
                                       keep=settings.keep, fsync=settings.fsync)  # fmt: skip

                cls._wait_for_scribe(journal_path(path))  # a scribe left by a killed oned
                try:
                    sink = opener()
                except OSError as exc:
                    raise ConfigError(f"Cannot open the audit log {path}: {exc.strerror}") from exc
                journal = cls._journal(journal_path(path), settings.fsync == 0)
                if scribe is not None and journal is not None:
                    config = scribe_config(path, journal.path, settings.max_size_mb * 1024 * 1024,
                                           settings.keep, settings.fsync, secrets)  # fmt: skip
                    spawn = (scribe, config)
        trail = cls(settings, sink, rec.Masker(hidden, secrets), clock, journal=journal,
                    opener=opener, scribe=spawn)  # fmt: skip
        trail._recover()
        trail._hand_over()
        return trail

    @classmethod
    def _journal(cls, path: Path, sync: bool) -> Journal | None:
        try:
            return Journal(path, sync=sync)
        except (OSError, ValueError) as exc:
            cls.log.warn("No audit journal ({err}): every record is written when its call "
                         "ends", err=str(exc))  # fmt: skip
            return None

    @classmethod
    def _wait_for_scribe(cls, path: Path) -> None:
        try:
            free = wait_for_scribe(path, SCRIBE_WAIT)
        except OSError:
            return  # no journal there: no scribe either
        if not free:
            cls.log.error("An audit scribe still holds {path}; writing the audit log anyway",
                          path=str(path))  # fmt: skip

    def _recover(self) -> None:
        """Write the journal's records the log lacks (the daemon stopped before their
        batch was written), then start the journal afresh."""
        if self.journal is not None and self.sink is not None:
            written = self._replay(self.sink)
            if written:
                self.log.info("Wrote {n} audit records of calls answered before the last "
                              "stop", n=written)  # fmt: skip

    def _replay(self, sink: Sink) -> int:
        """Write the journal's records past ``sink``'s seq and clear it; how many."""
        assert self.journal is not None
        # (frames are CRC-checked; a well-formed frame with fields of the wrong types is
        # someone's edit, reported and not replayed)
        try:
            raws = in_order(self.journal.recover(), sink.seq)
            if raws:
                self._store(sink, raws)
            return len(raws)
        except (TypeError, ValueError, AttributeError) as exc:
            self.log.error("Audit journal {path} unreadable, not replayed: {err}",
                           path=str(self.journal.path), err=str(exc))  # fmt: skip
            return 0
        finally:
            self._seq = max(self._seq, sink.seq)
            self.journal.wipe()

    def begin(self, method: str, params: tuple[Any, ...], peer: str) -> AuditEntry | None:
        """The entry of a call that may be recorded (None when the mode is off)."""
        if not self.enabled:
            return None
        entry: AuditEntry = _new_entry(AuditEntry)
        entry.method, entry.params, entry.peer = method, params, peer
        entry.started, entry.req_id, entry.caller = self.monotonic(), -1, None
        if self._all:
            entry.read_only = False
            return entry
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
        ending: rec.Outcome
        if error is None:
            if type(result) is list and len(result) > 1 and result[0] is True:
                if entry.read_only:
                    return  # MODE "writes", a read that succeeded: nothing to do
                # (an answer that is not a number names no new object)
                value = result[1]
                ending = rec.OK if type(value) is str else rec.outcome(entry.method, result)
            else:
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
        entry = self.begin("", (), peer)
        if entry is not None:
            entry.read_only = False
            self._write(entry, (False, -503, None, message[:1024]))

    def _write(self, entry: AuditEntry, ending: rec.Outcome) -> None:
        """Keep the record for the next batch, in the journal (or write it now)."""
        ms = (self.monotonic() - entry.started) * 1000.0
        method, params, caller, masker = entry.method, entry.params, entry.caller, self.masker
        stored = masker.stored(method, params) if method in masker.hiding else params[1:]
        if caller is None:
            raw: rec.Raw = (
                self._seq + 1, self.clock.seconds(), entry.req_id,
                rec.session_user(params[0]) if params else None, -1, None, -1,
                entry.peer, method, stored, ending, ms,
            )  # fmt: skip
        else:
            raw = (
                self._seq + 1, self.clock.seconds(), entry.req_id,
                caller.uname, caller.uid, caller.gname, caller.gid,
                entry.peer, method, stored, ending, ms,
            )  # fmt: skip
        self._seq += 1
        journal = self.journal
        if journal is None:
            self._kept.append(raw)
            self.flush()
            return
        try:
            payload = marshal.dumps(raw, MARSHAL_VERSION)
        except ValueError:  # a parameter marshal cannot store (base64, dateTime)
            raw = (*raw[:9], tuple(self.masker.value(v) for v in raw[9]), *raw[10:])
            payload = marshal.dumps(raw, MARSHAL_VERSION)
        if self.link is not None:
            if journal.append(payload):
                if self._timer is None:
                    self._timer = self.clock.callLater(self._delay, self.flush)
                return
            self._take_over()  # the scribe is a journal half behind, or a huge record
            self._schedule_hand_over()
        self._kept.append(raw)
        if not journal.append(payload):
            self.flush()  # the journal is full (or the record too big for it)
        elif self._timer is None:
            self._timer = self.clock.callLater(self._delay, self.flush)

    def flush(self) -> None:
        """Write the records kept so far (or send them to the scribe)."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self.link is not None:
            self._send(self.link)
            return
        kept, self._kept = self._kept, []
        if kept and self.sink is not None:
            self._store(self.sink, kept)
            if self.journal is not None:
                self.journal.clear()

    def _store(self, sink: Sink, raws: list[rec.Raw]) -> None:
        error = self.builder.store(sink, raws)
        if error is not None:
            self._failed(error)
        else:
            self.failed = False

    def _failed(self, exc: OSError) -> None:
        # The calls are answered anyway (their changes are committed; refusing every
        # call because a disk is full would take the cloud down); the lost records
        # show as a gap in the chain's seq.
        if not self.failed:
            self.log.error("Cannot write the audit trail: {err}", err=str(exc))
        self.failed = True

    # -- the scribe ----------------------------------------------------------------

    def _send(self, link: ScribeLink) -> None:
        """Hand the journal's active half to the scribe (unless it is still writing
        the last one: its ack sends the next)."""
        journal = self.journal
        if journal is None or not journal.pos or self._in_flight is not None:
            return
        self._in_flight, frames = journal.take()
        link.send(frames)

    def _acked(self, link: ScribeLink) -> None:
        """The scribe wrote the last batch: its frames can go."""
        journal = self.journal
        if link is not self.link or self._in_flight is None or journal is None:
            return
        journal.release(self._in_flight)
        self._in_flight = None
        if journal.pos and self._timer is None:
            self._timer = self.clock.callLater(self._delay, self.flush)
        if self.clock.seconds() - self._link_started > 60:
            self._restart_delay = SCRIBE_RESTART  # it lived: the next one is not hurried

    def _scribe_ended(self, link: ScribeLink) -> None:
        if link is not self.link:
            return  # one this trail killed
        self.log.error("The audit scribe stopped; oned writes the audit log until the next "
                       "one starts")  # fmt: skip
        self._take_over()
        self._schedule_hand_over()

    def _hand_over(self) -> None:
        """Let a new scribe write the log: the kept records are written first and the
        log closed (it opens it after them)."""
        self._restart = None
        if self._scribe is None or self.link is not None or self.journal is None:
            return
        self.flush()
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        reactor, config = self._scribe
        try:
            self.link = ScribeLink.spawn(reactor, config, self._acked, self._scribe_ended)
        except Exception as exc:  # spawnProcess: OSError, or what the reactor raises
            self.log.error("Cannot start the audit scribe ({err}); oned writes the audit log",
                           err=str(exc))  # fmt: skip
            self._take_over()
            self._schedule_hand_over()
            return
        self._link_started = self.clock.seconds()

    def _take_over(self) -> None:
        """Write the log in the daemon from now on: kill the scribe, wait for its lock,
        reopen the log and write the journal's records it lacks."""
        link, self.link = self.link, None
        if link is not None:
            link.kill()
        self._in_flight = None
        if self._opener is None or self.journal is None or self.sink is not None:
            return
        self._wait_for_scribe(self.journal.path)
        try:
            self.sink = self._opener()
        except OSError as exc:  # the records wait in the journal for the next scribe
            self._failed(exc)
            return
        self._replay(self.sink)

    def _schedule_hand_over(self) -> None:
        if self._scribe is None or self._restart is not None:
            return
        delay = self._restart_delay
        self._restart_delay = min(delay * 2, SCRIBE_RESTART_MAX)
        self._restart = self.clock.callLater(delay, self._hand_over)

    def close(self) -> None:
        """Write every record kept (the scribe stopped first) and close the log."""
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        self._scribe = None
        self._take_over()
        self.flush()
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
