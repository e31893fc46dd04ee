"""Async helpers at Twisted's edges (mirrors ``Listener::trigger``).

``async_to_deferred`` is the one adapter used where Twisted calls us; ``Eventually``
queues cross-manager calls for the next reactor turn; ``background`` runs a coroutine
whose failure is logged with a description instead of being lost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

P = ParamSpec("P")
T = TypeVar("T")

_log = Logger(namespace="oned")


def async_to_deferred(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Deferred[T]]:
    """Wrap an ``async def`` so Twisted callers receive a Deferred."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return Deferred.fromCoroutine(fn(*args, **kwargs))

    return wrapper


def background(coro: Coroutine[Any, Any, Any], desc: str) -> Deferred[Any]:
    """Run ``coro`` without awaiting it; log (never lose) its failure."""
    d: Deferred[Any] = Deferred.fromCoroutine(coro)

    def _failed(failure: Any) -> None:
        _log.failure("Background task failed: {desc}", failure=failure, desc=desc)

    d.addErrback(_failed)
    return d


class Eventually:
    """An eventual-send queue: calls run on a later reactor turn, in order."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._queue: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._scheduled = False

    def __call__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            self._clock.callLater(0, self._turn)

    def _turn(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for fn, args in queue:
            try:
                result = fn(*args)
                if isinstance(result, Coroutine):
                    background(result, getattr(fn, "__qualname__", repr(fn)))
            except Exception:
                _log.failure("Eventual call failed: {fn}", fn=fn)

    def flush(self) -> None:
        """Run everything queued (tests)."""
        while self._queue:
            self._turn()
