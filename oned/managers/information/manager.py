"""``InformationManager``: host monitoring over the IM driver protocol.

Skeleton: the hosts work fills it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.core import Core


class InformationManager:
    """Starts, stops and absorbs host monitoring."""

    def __init__(self, core: Core, drivers: Any, clock: IReactorTime) -> None:
        self.core = core
        self.drivers = drivers
        self.clock = clock

    async def start(self) -> None:
        """Begin monitoring (after the drivers run)."""

    async def stop(self) -> None:
        """Stop timers and flush pending monitoring."""
