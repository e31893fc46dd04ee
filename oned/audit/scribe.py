"""The audit scribe: the process that builds, chains and writes the daemon's records.

``python -m oned.audit.scribe CONFIG`` (CONFIG: JSON with ``path``, ``journal``,
``max_size``, ``keep``, ``fsync`` and ``secret_attrs``) is started by the daemon's
trail (``oned.audit.link``) so that turning records into hash-chained JSON lines costs
the API thread nothing: the daemon only copies each record's raw fields into the
journal when its call ends, and every ``WRITE_DELAY`` sends the journal's frames down
the scribe's stdin as one batch (a little-endian u32 length, then the frames). The
scribe writes the batch's records the log lacks (``seq`` past its last line) with one
``write(2)`` and answers the seq it reached on a line of its stdout; the daemon then
forgets those frames. It holds an exclusive ``flock`` on the journal file while it may
write, so the daemon, which writes the log itself whenever the scribe is gone (killed,
crashed, being replaced), waits for the lock first and never writes beside it.

It rotates the log and follows logrotate as ``ChainedFile`` does in the daemon, fsyncs
every FSYNC seconds, runs at nice ``NICE`` and ends, fsyncing, when its stdin closes (the
daemon is gone).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

from oned.audit import record as rec
from oned.audit.batch import LineBuilder, in_order
from oned.audit.journal import frames
from oned.audit.writer import ChainedFile

LENGTH = struct.Struct("<I")
#: How much nicer than oned the scribe runs.
NICE = 10


def scribe_config(path: Path, journal: Path, max_size: int, keep: int, fsync: float,
                  secret_attrs: list[str]) -> str:  # fmt: skip
    """The CONFIG argument for a scribe writing ``path`` (paths made absolute: the
    scribe runs in the package's directory)."""
    return json.dumps({
        "path": str(path.absolute()), "journal": str(journal.absolute()), "max_size": max_size,
        "keep": keep, "fsync": fsync, "secret_attrs": secret_attrs,
    })  # fmt: skip


def _read(fd: int, size: int) -> bytes | None:
    """Exactly ``size`` bytes of ``fd`` (None at its end)."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _say(text: str) -> None:
    os.write(2, f"{text}\n".encode(errors="replace"))


class Scribe:
    """Writes the batches read from ``source`` into ``sink``; acks on ``answers``."""

    def __init__(self, sink: ChainedFile, builder: LineBuilder, source: int = 0,
                 answers: int = 1) -> None:  # fmt: skip
        self.sink = sink
        self.builder = builder
        self.source = source
        self.answers = answers
        self.failing = False
        self.interval = sink.fsync if sink.fsync > 0 else 1.0

    def run(self) -> None:
        """Until ``source`` ends: write each batch, tick (fsync, logrotate) on time."""
        due = time.monotonic() + self.interval
        while True:
            ready, _, _ = select.select([self.source], [], [], max(0.0, due - time.monotonic()))
            if not ready:
                self.sink.tick()
                due = time.monotonic() + self.interval
                continue
            head = _read(self.source, LENGTH.size)
            batch = _read(self.source, LENGTH.unpack(head)[0]) if head is not None else None
            if batch is None:
                return
            self.write(batch)
            os.write(self.answers, b"%d\n" % self.sink.seq)

    def write(self, batch: bytes) -> None:
        try:
            raws = in_order(frames(batch), self.sink.seq)
            error = self.builder.store(self.sink, raws) if raws else None
        except (TypeError, ValueError, AttributeError) as exc:
            _say(f"Audit batch unreadable, left out: {exc}")
            return
        if error is not None and not self.failing:
            _say(f"Cannot write the audit trail: {error}")
        self.failing = error is not None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        _say("usage: python -m oned.audit.scribe CONFIG (started by oned)")
        return 2
    config: dict[str, Any] = json.loads(args[0])
    # The daemon stops it by closing its stdin (or kills it): a ^C or a reload sent
    # to the daemon's process group is not for the scribe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Writing the log is background work: on a busy machine the API goes first (the
    # journal holds a few seconds of records; past that oned writes them itself).
    os.nice(NICE)
    lock = os.open(config["journal"], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # the daemon has stopped writing the log
    try:
        sink = ChainedFile(Path(config["path"]), None, max_size=int(config["max_size"]),
                           keep=int(config["keep"]), fsync=float(config["fsync"]))  # fmt: skip
    except OSError as exc:
        _say(f"Cannot open the audit log {config['path']}: {exc.strerror}")
        return 1
    try:
        Scribe(sink, LineBuilder(rec.Masker({}, config["secret_attrs"]))).run()
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
