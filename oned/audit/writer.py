"""Append-only, hash-chained record sinks.

Every record carries ``prev``: the SHA-256 (hex) of the previous record's line as
written (without its newline); the very first record of a chain carries 64 zeros.
The trail chains the records (``seq``, ``last_hash``) and hands a sink the lines of a
batch (the journal holds them until then: ``oned.audit.journal``); ``ChainedFile``
writes them with one ``write(2)`` on an ``O_APPEND`` descriptor; ``fsync`` runs every
FSYNC seconds off the reactor thread (or after every write with FSYNC 0).

Rotation never breaks the chain: past MAX_SIZE the file is renamed ``<path>.<n>``
(the next free number) and a new one opened whose first record carries the last hash
of the old one. A file renamed away by logrotate (``create`` mode) is noticed at the
next timer tick and reopened; with ``copytruncate`` the ``O_APPEND`` descriptor simply
goes on writing at the new end. At start the chain (hash and ``seq``) continues from
the last line of the file, or of the newest rotated one; a torn last line (a write cut
by a crash, never acknowledged) is cut off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from oned.log import logger

GENESIS = "0" * 64
TAIL_BYTES = 4 << 20  # records are at most ~1 MiB (record.MAX_PARAMS)
_ROTATED = re.compile(r"\.(\d+)$")


def line_hash(line: bytes) -> str:
    """The hash the next record carries as ``prev`` (``line`` without its newline)."""
    return hashlib.sha256(line).hexdigest()


def encode(record: dict[str, Any]) -> bytes:
    """One record as its JSON line (no newline), ASCII only."""
    return json.dumps(record, separators=(",", ":"), default=str).encode("ascii")


class Sink(Protocol):
    #: The chain so far: the hash of the last record's line, its seq.
    last_hash: str
    seq: int

    def write(self, lines: list[bytes]) -> None:
        """Records' lines (without newlines), in chain order; raises ``OSError``."""

    def close(self) -> None: ...


def rotated_files(path: Path) -> list[Path]:
    """``<path>.<n>`` files beside ``path``, oldest (lowest n) first."""
    if not path.parent.is_dir():
        return []
    found = []
    for candidate in path.parent.iterdir():
        if candidate.name.startswith(path.name + "."):
            match = _ROTATED.search(candidate.name[len(path.name) :])
            if match and candidate.name == f"{path.name}.{match.group(1)}":
                found.append((int(match.group(1)), candidate))
    return [p for _, p in sorted(found)]


def in_chain_order(files: list[Path]) -> list[Path]:
    """``files`` ordered by the seq of their first record (oned's ``.<n>`` numbering
    and logrotate's, newest ``.1``, alike); unchanged if one has no readable record."""

    def first_seq(candidate: Path) -> float:
        try:
            with candidate.open("rb") as handle:
                return float(json.loads(handle.readline())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return float("inf")

    keyed = [(first_seq(f), i, f) for i, f in enumerate(files)]
    if all(k[0] != float("inf") for k in keyed):
        keyed.sort()
    return [f for _, _, f in keyed]


def _last_line(path: Path) -> bytes | None:
    """The last complete line of ``path`` (None when it has none), read backwards."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            data = b""
            while end > 0:
                start = max(0, end - TAIL_BYTES)
                handle.seek(start)
                data = handle.read(end - start) + data
                end = start
                whole = data[: data.rfind(b"\n") + 1]  # drop a torn tail
                if whole.count(b"\n") >= 2 or (start == 0 and whole):
                    return whole[:-1].rsplit(b"\n", 1)[-1] or None
    except OSError:
        return None
    return None


def chain_state(line: bytes | None) -> tuple[str, int]:
    """(hash, seq) to continue after ``line``."""
    if line is None:
        return GENESIS, 0
    seq = 0
    try:
        record = json.loads(line)
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            seq = record["seq"]
    except ValueError:
        pass
    return line_hash(line), seq


class ChainedFile:
    """The audit log file: appends, rotation, fsync, logrotate awareness."""

    log = logger("AUD")

    def __init__(
        self,
        path: Path,
        clock: IReactorTime | None = None,
        max_size: int = 0,
        keep: int = 0,
        fsync: float = 1.0,
    ) -> None:
        self.path = path
        self.clock = clock
        self.max_size = max_size
        self.keep = keep
        self.fsync = fsync
        self._fd = -1
        self._size = 0
        self._dirty = False
        self._timer: IDelayedCall | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        last = _last_line(path)
        if last is None:
            older = in_chain_order(rotated_files(path))
            last = _last_line(older[-1]) if older else None
        self.last_hash, self.seq = chain_state(last)
        self._open()

    def _repair_tail(self) -> None:
        """Cut a torn last line (no newline: its write never completed)."""
        try:
            with self.path.open("r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - 1))
                if size == 0 or handle.read(1) == b"\n":
                    return
                keep, end = 0, size
                while end > 0:  # back to the newline that ends the last whole record
                    start = max(0, end - TAIL_BYTES)
                    handle.seek(start)
                    cut = handle.read(end - start).rfind(b"\n")
                    if cut >= 0:
                        keep = start + cut + 1
                        break
                    end = start
                handle.truncate(keep)
                self.log.warn("Cut a torn last line ({n} bytes) of {path}", n=size - keep,
                              path=str(self.path))  # fmt: skip
        except FileNotFoundError:
            return

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, lines: list[bytes]) -> None:
        """Write record lines (newlines added) in one ``write(2)``; a line that would
        take the file past MAX_SIZE goes to a new file (``rotate``)."""
        data = b"\n".join(lines) + b"\n"
        if self.max_size and self._size + len(data) > self.max_size:
            for line in lines:  # rare: rotate at the line that would not fit
                if self._size and self._size + len(line) + 1 > self.max_size:
                    self.rotate()
                self._put(line + b"\n")
        else:
            self._put(data)

    def _put(self, data: bytes) -> None:
        size = len(data)
        while data:
            data = data[_write(self._fd, data) :]
        self._size += size
        if self.fsync == 0:
            os.fsync(self._fd)
        elif self.fsync > 0 or self.clock is not None:
            self._dirty = True
            self._arm()

    def rotate(self) -> Path:
        """Rename the current file to the next ``<path>.<n>`` and start a new one."""
        older = rotated_files(self.path)
        number = int(_ROTATED.search(older[-1].name).group(1)) + 1 if older else 1  # type: ignore[union-attr]
        target = self.path.with_name(f"{self.path.name}.{number}")
        if self.fsync >= 0:
            os.fsync(self._fd)
        os.rename(self.path, target)
        os.close(self._fd)
        self._open()
        if self.keep:
            for stale in rotated_files(self.path)[: -self.keep]:
                stale.unlink(missing_ok=True)
        return target

    def _arm(self) -> None:
        if self._timer is None and self.clock is not None:
            interval = self.fsync if self.fsync > 0 else 1.0
            self._timer = self.clock.callLater(interval, self.tick)

    def tick(self) -> None:
        """Timer: fsync what was written since the last tick (in a thread when the
        clock is a reactor with threads), and reopen a file logrotate moved away."""
        self._timer = None
        if self._fd < 0:
            return
        if self._dirty and self.fsync > 0:
            self._dirty = False
            fd = os.dup(self._fd)
            in_thread = getattr(self.clock, "callInThread", None)
            if in_thread is not None:
                in_thread(_fsync_close, fd)
            else:
                _fsync_close(fd)
        self._follow_rename()

    def _follow_rename(self) -> None:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(self._fd)
        if on_disk is None or (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            os.close(self._fd)
            self._open()
        elif mine.st_size < self._size:  # copytruncate
            self._size = mine.st_size

    def close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._fd >= 0:
            if self.fsync >= 0:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_write = os.write  # (a module attribute: tests stand in a failing disk)


class SyslogSink:
    """Records sent to syslog (``oned-audit`` ident). The chain starts afresh at each
    start of the daemon (its first record carries 64 zeros): syslog cannot be read back."""

    def __init__(self, facility: str) -> None:
        import syslog

        self._syslog = syslog
        fac = getattr(syslog, f"LOG_{facility.upper()}", syslog.LOG_AUTHPRIV)
        syslog.openlog("oned-audit", 0, fac)
        self.last_hash = GENESIS
        self.seq = 0

    def write(self, lines: list[bytes]) -> None:
        for line in lines:
            self._syslog.syslog(self._syslog.LOG_INFO, line.decode("ascii"))

    def close(self) -> None:
        self._syslog.closelog()
