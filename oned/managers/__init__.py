"""Managers: one package per OpenNebula manager (src/<manager>)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.core import Core


class Manager(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_managers(core: Core, drivers: Any, clock: IReactorTime) -> list[Manager]:
    """The driver-backed managers, in start order (``Nebula::start``); also sets the
    ``Core`` references API handlers use to reach them."""
    from oned.managers.image.manager import ImageManager
    from oned.managers.information.manager import InformationManager

    core.image_manager = ImageManager(core, drivers, clock)
    core.information_manager = InformationManager(core, drivers, clock)
    from oned.managers.ipam.manager import IPAMManager

    core.ipam_manager = IPAMManager(core, drivers, clock)
    from oned.managers.lifecycle.wiring import use_drivers

    lcm = use_drivers(core, drivers)
    from oned.managers.schedaction.manager import ScheduledActionManager

    sam = ScheduledActionManager(core, clock)
    from oned.managers.market.manager import MarketPlaceManager

    core.market_manager = MarketPlaceManager(core, drivers, clock)
    return [
        core.hook_manager.use_drivers(drivers),
        core.image_manager,
        core.information_manager,
        core.ipam_manager,
        core.market_manager,
        lcm,
        core.scheduler_manager,
        sam,
    ]
