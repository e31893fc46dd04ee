"""``IPAMManager``: network create/delete and address-range calls over the IPAM driver
(mirrors ``IPAMManager.cc`` and ``IPAMManagerProtocol.cc``).

VNET_CREATE and VNET_DELETE are events: the API commits the network in LOCK_CREATE or
LOCK_DELETE and sends the action; the reply moves it to READY (template merged, its
ARs built), ERROR or DONE (dropped) and is committed then. At start every network the
database shows in LOCK_CREATE/LOCK_DELETE gets its action again, so a ``kill -9``
leaves nothing locked with nothing running for it; a driver restart does the same for
the actions it lost. Address-range calls (REGISTER/UNREGISTER_ADDRESS_RANGE,
GET/ALLOCATE/FREE_ADDRESS) are short synchronous requests.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from oned._async import background
from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode
from oned.log import logger
from oned.managers.ipam import lifecycle

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.core import Core
    from oned.objects.vnet import VirtualNetwork


_B64 = re.compile(r"^[A-Za-z0-9+/=]*$")


def _info(payload: str) -> str:
    """``payload64()``: the decoded INFO; a failure the driver manager made up (driver
    dead, timeout) is plain text and kept as it is."""
    if not payload or payload == "-":
        return ""
    return b64decode(payload) if _B64.match(payload) else payload


class IPAMManager:
    """Sends IPAM/VNM actions and applies their replies to networks."""

    log = logger("IPM")

    def __init__(self, core: Core, drivers: Any, clock: IReactorTime) -> None:
        self.core = core
        self.drivers = drivers
        self.clock = clock

    async def start(self) -> None:
        self.drivers.register_action(Family.IPAM, "VNET_CREATE", self._on_create)
        self.drivers.register_action(Family.IPAM, "VNET_DELETE", self._on_delete)
        add = getattr(self.drivers, "add_reconnect_callback", None)
        if add is not None:
            add(Family.IPAM, self.resume)
        self.resume()

    async def stop(self) -> None:
        """Nothing to stop: replies after this are not applied."""

    def resume(self) -> None:
        """Send again every create/delete the database shows in flight."""
        from oned.objects import vnet as vs

        for vn in sorted(self.core.vnets.objects(), key=lambda v: v.oid):
            if vn.state == vs.LOCK_CREATE:
                self.trigger_vnet_create(vn)
            elif vn.state == vs.LOCK_DELETE:
                self.trigger_vnet_delete(vn.oid, vn.to_xml())

    # -- actions -----------------------------------------------------------------------

    def trigger_vnet_create(self, vn: VirtualNetwork) -> None:
        self.drivers.send(Family.IPAM, "VNET_CREATE", vn.oid, b64encode(vn.to_xml()))

    def trigger_vnet_delete(self, oid: int, xml: str) -> None:
        self.drivers.send(Family.IPAM, "VNET_DELETE", oid, b64encode(xml))

    async def address_request(
        self, action: str, ar_xml: str, address: str = ""
    ) -> tuple[bool, str]:
        """``IPAMRequest``: one synchronous AR call; INFO decoded on both outcomes."""
        if not address:
            address = "<ADDRESS><MAC/><IP/><IP6_GLOBAL/><IP6_ULA/><IP6/><SIZE/></ADDRESS>"
        payload = b64encode(f"<IPAM_DRIVER_ACTION_DATA>{ar_xml}{address}</IPAM_DRIVER_ACTION_DATA>")
        ok, info = await self.drivers.request(Family.IPAM, action, payload)
        return ok, b64decode(info) if info else ""

    # -- replies -----------------------------------------------------------------------

    def _on_create(self, msg: DriverMessage) -> None:
        background(self.apply_create(msg), f"VNET_CREATE reply of {msg.oid}")

    def _on_delete(self, msg: DriverMessage) -> None:
        background(self.apply_delete(msg), f"VNET_DELETE reply of {msg.oid}")

    async def apply_create(self, msg: DriverMessage) -> None:
        info = _info(msg.payload)
        await lifecycle.create_reply(self.core, msg.oid, msg.status == "SUCCESS", info)

    async def apply_delete(self, msg: DriverMessage) -> None:
        info = _info(msg.payload)
        await lifecycle.delete_reply(self.core, msg.oid, msg.status == "SUCCESS", info)
