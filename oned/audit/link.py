"""The daemon's end of the audit scribe (``oned.audit.scribe``): spawn it, send it
batches of journal frames, hear its acks, kill it.

One batch is in flight at a time; each ack (a line with the seq the log reached)
answers the oldest batch sent. What the scribe says on stderr goes to oned.log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from oned.audit.scribe import LENGTH
from oned.log import logger

Listener = Callable[["ScribeLink"], None]

#: Where ``python -m oned.audit.scribe`` finds the ``oned`` package it is part of.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class ScribeLink(ProcessProtocol):
    """One scribe process: ``send`` batches, ``on_ack`` per batch written,
    ``on_end`` once when it is gone (whatever the reason)."""

    log = logger("AUD")

    def __init__(self, on_ack: Listener, on_end: Listener) -> None:
        self.on_ack = on_ack
        self.on_end = on_end
        self.process: IProcessTransport | None = None
        self.ended = False
        self._err = b""

    @classmethod
    def spawn(cls, reactor: IReactorProcess, config: str, on_ack: Listener, on_end: Listener
              ) -> ScribeLink:  # fmt: skip
        """Start a scribe under the daemon's own interpreter; raises ``OSError``."""
        link = cls(on_ack, on_end)
        argv = [sys.executable, "-m", "oned.audit.scribe", config]
        link.process = reactor.spawnProcess(
            link, sys.executable, argv, env=dict(os.environ), path=str(_PACKAGE_ROOT),
            childFDs={0: "w", 1: "r", 2: "r"},
        )  # fmt: skip
        return link

    def send(self, frames: bytes) -> None:
        if self.process is not None and not self.ended:
            self.process.write(LENGTH.pack(len(frames)) + frames)

    def kill(self) -> None:
        """SIGKILL: the journal still holds every record the scribe has not acked."""
        if self.process is not None and not self.ended:
            try:
                self.process.signalProcess("KILL")
            except (ProcessExitedAlready, OSError):
                pass

    def outReceived(self, data: bytes) -> None:
        for _ in range(data.count(b"\n")):
            if not self.ended:
                self.on_ack(self)

    def errReceived(self, data: bytes) -> None:
        text = self._err + data
        *lines, self._err = text.split(b"\n")
        for line in lines:
            if line.strip():
                self.log.error("Audit scribe: {line}", line=line.decode(errors="replace"))

    def processEnded(self, reason: Failure) -> None:
        if not self.ended:
            self.ended = True
            self.on_end(self)
