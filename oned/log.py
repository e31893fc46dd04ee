"""oned.log in OpenNebula's line format (mirrors ``NebulaLog``/``FileLog``).

Every line reads ``Tue Nov 24 07:11:45 2026 [Z0][ReM][D]: text``. The bracketed module
tag is the last component of the logger namespace (``oned.ReM`` -> ``ReM``); the letter is
E, W, I or D, and lines above ``DEBUG_LEVEL`` (0 error .. 3 debug) are dropped.
"""

from __future__ import annotations

import time
from typing import IO, Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

_LETTER = {
    LogLevel.critical: "E",
    LogLevel.error: "E",
    LogLevel.warn: "W",
    LogLevel.info: "I",
    LogLevel.debug: "D",
}

_DEBUG_LEVELS = [LogLevel.error, LogLevel.warn, LogLevel.info, LogLevel.debug]


def level_for_debug(debug_level: int) -> LogLevel:
    """Map oned.conf DEBUG_LEVEL (0..3) to the lowest Twisted level kept."""
    level: LogLevel = _DEBUG_LEVELS[max(0, min(3, debug_level))]
    return level


class TaggedLogger(Logger):
    """A Logger that keeps its namespace when used as a class attribute."""

    def __get__(self, instance: object, owner: type | None = None) -> TaggedLogger:
        return self


def logger(tag: str) -> TaggedLogger:
    """The logger of one oned module tag (``ReM``, ``AuM``, ``VMM``...)."""
    return TaggedLogger(namespace=f"oned.{tag}")


def tag_of(namespace: str) -> str:
    """``oned.ReM`` -> ``ReM``; anything else is tagged ``ONE``."""
    parts = namespace.split(".")
    if len(parts) == 2 and parts[0] == "oned" and parts[1]:
        return parts[1]
    return "ONE"


_LETTER_LEVEL = {"E": 0, "W": 1, "I": 2, "D": 3}


class LogSink:
    """The oned.log writer: OpenNebula's line format, DEBUG_LEVEL, buffered writes.

    Lines are buffered and flushed a moment later on the injected clock (or at once
    without one), so logging every API call costs no system call per line.
    """

    FLUSH_DELAY = 0.2
    FLUSH_BYTES = 1 << 16

    def __init__(self, stream: IO[str], debug_level: int = 3, zone_id: int = 0) -> None:
        self._stream = stream
        self.debug_level = debug_level
        self._zone = f"[Z{zone_id}]"
        self._buffer: list[str] = []
        self._size = 0
        self._clock: IReactorTime | None = None
        self._pending: IDelayedCall | None = None
        self._second = -1
        self._stamp = ""

    def attach_clock(self, clock: IReactorTime) -> None:
        self._clock = clock

    def enabled(self, letter: str) -> bool:
        return _LETTER_LEVEL.get(letter, 2) <= self.debug_level

    def _when(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(second))
        return self._stamp

    def write(self, module: str, letter: str, text: str, now: float | None = None) -> None:
        """Append one line (if DEBUG_LEVEL allows it)."""
        if not self.enabled(letter):
            return
        line = (
            f"{self._when(time.time() if now is None else now)} {self._zone}[{module}]"
            f"[{letter}]: {text.replace(chr(10), ' ')}\n"
        )
        self._buffer.append(line)
        self._size += len(line)
        if self._clock is None or self._size >= self.FLUSH_BYTES:
            self.flush()
        elif self._pending is None:
            self._pending = self._clock.callLater(self.FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if not self._buffer:
            return
        data, self._buffer, self._size = "".join(self._buffer), [], 0
        try:
            self._stream.write(data)
            self._stream.flush()
        except Exception:  # noqa: S110 - a broken log stream must not kill the daemon
            pass


def event_text(event: dict[str, Any]) -> tuple[str, str, str]:
    """(module tag, level letter, text) of a Twisted log event."""
    module = tag_of(str(event.get("log_namespace") or ""))
    letter = _LETTER.get(event.get("log_level", LogLevel.info), "I")
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}: {failure.getErrorMessage()}"
        letter = "E"
    return module, letter, text


def format_line(event: dict[str, Any], zone_id: int = 0) -> str:
    """One log line for an event, in oned's format (no trailing newline)."""
    when = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(event.get("log_time")))
    module, letter, text = event_text(event)
    return f"{when} [Z{zone_id}][{module}][{letter}]: {text.replace(chr(10), ' ')}"


@implementer(ILogObserver)
class OnedLogObserver:
    """Routes Twisted log events into a ``LogSink``."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink

    def __call__(self, event: dict[str, Any]) -> None:
        module, letter, text = event_text(event)
        self._sink.write(module, letter, text, event.get("log_time"))
        if letter == "E":
            self._sink.flush()


def start_logging(stream: IO[str], debug_level: int, zone_id: int = 0) -> LogSink:
    """Route the global log publisher to ``stream`` at ``debug_level``."""
    sink = LogSink(stream, debug_level, zone_id)
    predicate = LogLevelFilterPredicate(defaultLogLevel=level_for_debug(debug_level))
    observer = FilteringLogObserver(OnedLogObserver(sink), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return sink
