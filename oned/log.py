"""oned.log in OpenNebula's line format (mirrors ``NebulaLog``/``FileLog``).

Every line reads ``Tue Nov 24 07:11:45 2026 [Z0][ReM][D]: text``. The bracketed module
tag is the last component of the logger namespace (``oned.ReM`` -> ``ReM``); the letter is
E, W, I or D, and lines above ``DEBUG_LEVEL`` (0 error .. 3 debug) are dropped.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

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


def format_line(event: dict[str, Any], zone_id: int = 0) -> str:
    """One log line for an event, in oned's format (no trailing newline)."""
    when = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(event.get("log_time")))
    module = tag_of(str(event.get("log_namespace") or ""))
    letter = _LETTER.get(event.get("log_level", LogLevel.info), "I")
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}: {failure.getErrorMessage()}"
        if letter != "E":
            letter = "E"
    text = text.replace("\n", " ")
    return f"{when} [Z{zone_id}][{module}][{letter}]: {text}"


@implementer(ILogObserver)
class OnedLogObserver:
    """Writes events to a stream in oned's format."""

    def __init__(self, stream: IO[str], zone_id: int = 0) -> None:
        self._stream = stream
        self._zone_id = zone_id

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self._stream.write(format_line(event, self._zone_id) + "\n")
            self._stream.flush()
        except Exception:  # noqa: S110 - a broken log stream must not kill the daemon
            pass


def start_logging(stream: IO[str], debug_level: int, zone_id: int = 0) -> None:
    """Route the global log publisher to ``stream`` at ``debug_level``."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=level_for_debug(debug_level))
    observer = FilteringLogObserver(OnedLogObserver(stream, zone_id), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def stderr_stream() -> IO[str]:
    return sys.stderr
