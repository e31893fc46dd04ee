"""``ImageManager``: image actions and datastore monitoring over the datastore driver.

Skeleton: the images work fills it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.core import Core


class ImageManager:
    """Sends image actions to the datastore driver and applies its replies."""

    def __init__(self, core: Core, drivers: Any, clock: IReactorTime) -> None:
        self.core = core
        self.drivers = drivers
        self.clock = clock

    async def start(self) -> None:
        """Register reply handlers, resume interrupted actions, start monitoring."""

    async def stop(self) -> None:
        """Stop timers."""
