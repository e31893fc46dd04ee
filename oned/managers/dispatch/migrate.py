"""DispatchManager: cold and live migration (``DispatchManager::migrate``, ``live_migrate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.managers.lifecycle.tx import Tx
    from oned.objects.vm import VirtualMachine


class DispatchMigrate:
    """Mixed into ``DispatchManager``, which provides ``_run`` and ``_act``."""

    core: Core
    lcm: LifeCycleManager

    async def _run(self, vid: int, step: Any, desc: str) -> VirtualMachine:
        raise NotImplementedError

    def _act(self, tx: Tx, action: int, who: Any) -> None:
        raise NotImplementedError
