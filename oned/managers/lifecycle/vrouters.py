"""A virtual router's VM leaves the router's VMS list when it is done (mirrors the
``vrouterpool`` part of ``DispatchManager::done``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vm import VirtualMachine
    from oned.pools.base import Unit


def leave(core: Core, unit: Unit, vm: VirtualMachine) -> None:
    raw = (vm.template.get("VROUTER_ID") or "").strip()
    if not raw.lstrip("-").isdigit():
        return
    router = core.vrouters.get(int(raw))
    if router is not None and vm.oid in router.vms:
        router = router.copy()
        router.vms.discard(vm.oid)
        unit.save(core.vrouters, router)
