"""A scripted IPAM driver seam for network tests (modelled on OpenNebula's dummy IPAM
and ``remotes/vnm/dummy``).

:class:`FakeIPAMDrivers` stands in for ``DriverManager`` in front of an
``IPAMManager``: it records VNET_CREATE/VNET_DELETE, lets a test answer them
(``reply``/``answer_all``: the dummy answers ``-``), and answers address-range requests
at once from ``replies`` (default: success with ``-``, as the dummy scripts do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode


@dataclass
class Sent:
    action: str
    oid: int
    payload: str

    @property
    def document(self) -> str:
        return b64decode(self.payload)


@dataclass
class FakeIPAMDrivers:
    sent: list[Sent] = field(default_factory=list)
    handlers: dict[str, Callable[[DriverMessage], Any]] = field(default_factory=dict)
    requests: list[Sent] = field(default_factory=list)
    replies: dict[str, tuple[bool, str]] = field(default_factory=dict)
    reconnect: list[Callable[[], object]] = field(default_factory=list)

    def register_action(self, family: Family, action: str, handler: Any) -> None:
        assert family is Family.IPAM
        self.handlers[action] = handler

    def add_reconnect_callback(self, family: Family, callback: Callable[[], object]) -> None:
        self.reconnect.append(callback)

    def send(self, family: Family, action: str, oid: int, payload: str = "") -> bool:
        self.sent.append(Sent(action, oid, payload))
        return True

    async def request(
        self, family: Family, action: str, payload: str, timeout: float | None = None
    ) -> tuple[bool, str]:
        self.requests.append(Sent(action, -1, payload))
        ok, info = self.replies.get(action, (True, ""))
        return ok, b64encode(info) if info else ""

    def pending(self, action: str | None = None) -> list[Sent]:
        return [s for s in self.sent if action is None or s.action == action]

    def reply(self, action: str, oid: int, status: str = "SUCCESS", info: str = "-") -> None:
        for i, s in enumerate(self.sent):
            if s.action == action and s.oid == oid:
                del self.sent[i]
                break
        self.handlers[action](DriverMessage(action, status, oid, b64encode(info)))

    def answer_all(self, action: str | None = None) -> int:
        todo = self.pending(action)
        for s in todo:
            self.reply(s.action, s.oid)
        return len(todo)


def attach(core: Any, clock: Any) -> FakeIPAMDrivers:
    """Give ``core`` an IPAMManager behind a fake driver (for other families' tests).

    Networks then wait in LOCK_CREATE until ``settle(core, drivers, clock)``.
    """
    from twisted.internet.defer import Deferred

    from oned.managers.ipam.manager import IPAMManager

    drivers = FakeIPAMDrivers()
    manager = IPAMManager(core, drivers, clock)
    core.ipam_manager = manager
    Deferred.fromCoroutine(manager.start())
    return drivers


def settle(drivers: FakeIPAMDrivers, clock: Any) -> None:
    """Answer every pending VNET_CREATE/VNET_DELETE as the dummy driver does."""
    while drivers.answer_all():
        clock.advance(0)
    clock.advance(0)
