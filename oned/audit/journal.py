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

import marshal
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Any

#: The file's size: room for the records of a few seconds of calls (a call whose
#: record does not fit is written to the log at once).
SIZE = 8 << 20
_HEAD = struct.Struct("<2sII")
_MAGIC = b"AJ"


def journal_path(log: Path) -> Path:
    """``.<log name>.journal`` beside the log: a dot file, so that logrotate's globs
    (``*``, ``*.log``) leave it alone (truncating a mapped file would kill the daemon)."""
    return log.with_name(f".{log.name}.journal")


class Journal:
    """Frames appended to a shared mapping of ``path``; ``recover`` reads them back."""

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
        self.pos = 0  # where the next frame goes; frames before it are unwritten records

    def append(self, payload: bytes) -> bool:
        """Copy one frame in; False when it does not fit (write the records, ``clear``)."""
        mapping = self._map
        end = self.pos + _HEAD.size + len(payload)
        if end > self.size or mapping is None:
            return False
        mapping[self.pos : end] = _HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload
        if self.sync:
            start = self.pos - self.pos % mmap.ALLOCATIONGRANULARITY
            mapping.flush(start, end - start)
        self.pos = end
        return True

    def clear(self) -> None:
        """Forget the frames (their records are in the log): zero what they used."""
        if self.pos and self._map is not None:
            self._map[: self.pos] = bytes(self.pos)
            if self.sync:
                self._map.flush(0, self.pos)
        self.pos = 0

    def recover(self) -> list[tuple[Any, ...]]:
        """The payloads of the whole frames from the start, in order."""
        found: list[tuple[Any, ...]] = []
        mapping = self._map
        if mapping is None:
            return found
        pos = 0
        while pos + _HEAD.size <= self.size:
            magic, length, crc = _HEAD.unpack_from(mapping, pos)
            start, end = pos + _HEAD.size, pos + _HEAD.size + length
            if magic != _MAGIC or end > self.size:
                break
            payload = mapping[start:end]
            if zlib.crc32(payload) != crc:
                break
            try:
                raw = marshal.loads(payload)  # noqa: S302 (our own 0600 file, CRC-checked)
            except (ValueError, EOFError, TypeError):
                break
            if not isinstance(raw, tuple):
                break
            found.append(raw)
            pos = end
        return found

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
