"""The audit journal: the records of answered calls that are not in the log yet.

``.<log name>.journal`` beside the log is a file of a fixed size mapped shared into the
daemon. When a call ends its record's raw fields are copied into the mapping as one
frame: a copy into the page cache, with no system call, that a ``kill -9`` cannot undo
(the kernel owns those pages). The trail builds, chains and writes the journal's
records to the log in batches (every ``WRITE_DELAY`` seconds, while the code that
builds them is warm) and then ``clear``\\ s it; at start the frames whose ``seq`` the log
lacks are built and written first, so no acknowledged call's record is lost and none is
written twice.

A frame is ``b"AJ"``, the payload's length and CRC-32 (little-endian u32 each), then
the payload: ``marshal`` of the record's raw fields (``record.Raw``). The session and
the parameters oned hides are never stored; ``clear`` zeroes what was used, so template
secrets (masked when the record is built) stay in the file only until their batch is
written. A scan stops at the first frame that is not whole (a copy cut by a crash).
"""

from __future__ import annotations

import fcntl
import marshal
import mmap
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

#: The file's size: room for the records of a few seconds of calls (a call whose
#: record does not fit is written to the log at once).
SIZE = 8 << 20
_HEAD = struct.Struct("<2sII")
_HEAD_SIZE = _HEAD.size
_MAGIC = b"AJ"


def journal_path(log: Path) -> Path:
    """``.<log name>.journal`` beside the log: a dot file, so that logrotate's globs
    (``*``, ``*.log``) leave it alone (truncating a mapped file would kill the daemon)."""
    return log.with_name(f".{log.name}.journal")


class Journal:
    """Frames appended to a shared mapping of ``path``; ``recover`` reads them back.

    The mapping is two halves. Frames go to the ``active`` one; the trail either builds
    and writes them itself (then ``clear``) or, with a scribe, hands it the active half's
    frames (``take``) and goes on in the other half, forgetting the taken ones (``release``)
    once the scribe says its records are in the log."""

    def __init__(self, path: Path, size: int = 0, sync: bool = False) -> None:
        self.path = path
        size = size or SIZE
        #: msync every frame (AUDIT FSYNC 0: a power loss loses nothing either).
        self.sync = sync
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            found = os.fstat(fd).st_size
            if found > size:
                size = found  # made bigger by another version: its frames are kept
            elif found < size:
                os.ftruncate(fd, size)
            self._map: mmap.mmap | None = mmap.mmap(fd, size, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.size = size
        self.half = size // 2
        self.active = 0  # the half frames go to
        self.pos = 0  # where the next frame goes in it; frames before it are unwritten
        self._base = 0  # where the active half starts
        self._taken = [0, 0]  # bytes of frames in each half handed to a scribe

    def _activate(self, half: int) -> None:
        self.active, self.pos, self._base = half, 0, half * self.half

    def append(self, payload: bytes) -> bool:
        """Copy one frame in; False when it does not fit (write the records, ``clear``)."""
        mapping = self._map
        size = len(payload)
        end = self.pos + _HEAD_SIZE + size
        if end > self.half or mapping is None:
            return False
        start = self._base + self.pos
        _HEAD.pack_into(mapping, start, _MAGIC, size, zlib.crc32(payload))
        mapping[start + _HEAD_SIZE : self._base + end] = payload
        if self.sync:
            page = start - start % mmap.ALLOCATIONGRANULARITY
            mapping.flush(page, self._base + end - page)
        self.pos = end
        return True

    def take(self) -> tuple[int, bytes]:
        """The active half's frames (for a scribe); frames go to the other half from
        now on, which must have been released."""
        half, used, base = self.active, self.pos, self._base
        data = self._map[base : base + used] if self._map is not None else b""
        self._taken[half] = used
        self._activate(1 - half)
        return half, data

    def release(self, half: int) -> None:
        """Forget the frames ``take`` handed out of ``half`` (they are in the log)."""
        self._zero(half * self.half, self._taken[half])
        self._taken[half] = 0

    def clear(self) -> None:
        """Forget every frame (their records are in the log): zero what they used."""
        self._zero(self._base, self.pos)
        for half in (0, 1):
            self.release(half)
        self._activate(0)

    def wipe(self) -> None:
        """Zero the whole file (after ``recover``: frames a killed daemon left are not
        known to this one's ``clear``)."""
        self._zero(0, self.size)
        self._taken = [0, 0]
        self._activate(0)

    def _zero(self, start: int, length: int) -> None:
        if length and self._map is not None:
            self._map[start : start + length] = bytes(length)
            if self.sync:
                self._map.flush(start - start % mmap.ALLOCATIONGRANULARITY,
                                length + start % mmap.ALLOCATIONGRANULARITY)  # fmt: skip

    def recover(self) -> list[tuple[Any, ...]]:
        """The payloads of the whole frames in both halves (a frame of an older,
        one-region journal may run on into the second half)."""
        mapping = self._map
        if mapping is None:
            return []
        return frames(mapping, 0, self.size) + frames(mapping, self.half, self.size)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def frames(data: Any, pos: int = 0, end: int | None = None) -> list[tuple[Any, ...]]:
    """The payloads of the whole frames in ``data[pos:end]``, in order: the scan stops
    at the first one that is not whole (a copy cut by a crash, or zeroes)."""
    found: list[tuple[Any, ...]] = []
    end = len(data) if end is None else end
    while pos + _HEAD.size <= end:
        magic, length, crc = _HEAD.unpack_from(data, pos)
        start, stop = pos + _HEAD.size, pos + _HEAD.size + length
        if magic != _MAGIC or stop > end:
            break
        payload = data[start:stop]
        if zlib.crc32(payload) != crc:
            break
        try:
            raw = marshal.loads(payload)  # noqa: S302 (our own 0600 file, CRC-checked)
        except (ValueError, EOFError, TypeError):
            break
        if not isinstance(raw, tuple):
            break
        found.append(raw)
        pos = stop
    return found


def wait_for_scribe(path: Path, timeout: float, poll: float = 0.01) -> bool:
    """Wait (up to ``timeout`` seconds) until no scribe holds ``path``'s lock: a
    scribe holds it while it may write the log, so the daemon writes only after this.
    False when one still held it at the deadline."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(poll)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
    finally:
        os.close(fd)
