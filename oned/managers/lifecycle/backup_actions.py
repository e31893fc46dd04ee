"""LifeCycleManager: backups and restores."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.transfer.manager import TransferManager
    from oned.managers.vmm.manager import VirtualMachineManager


class LcmBackups:
    """Mixed into ``LifeCycleManager``."""

    core: Core
    vmm: VirtualMachineManager
    tm: TransferManager
