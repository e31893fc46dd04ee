"""DispatchManager: disk attach/detach, disk snapshots, disksaveas and diskresize
(``DispatchManager::attach``, ``detach``, ``disk_snapshot_*``, ``disk_resize``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.manager import LifeCycleManager
    from oned.managers.lifecycle.tx import Tx
    from oned.objects.vm import VirtualMachine


class DispatchDisks:
    """Mixed into ``DispatchManager``, which provides ``_run`` and ``_act``."""

    core: Core
    lcm: LifeCycleManager

    async def _run(self, vid: int, step: Any, desc: str) -> VirtualMachine:
        raise NotImplementedError

    def _act(self, tx: Tx, action: int, who: Any) -> None:
        raise NotImplementedError
