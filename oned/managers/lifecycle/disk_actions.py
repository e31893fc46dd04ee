"""LifeCycleManager: disk hotplug, disk snapshots and disk resize (``LifeCycleActions.cc``
/ ``LifeCycleStates.cc`` attach, detach, disk_snapshot, disk_resize parts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager


class LcmDisks:
    """Mixed into ``LifeCycleManager``."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager
