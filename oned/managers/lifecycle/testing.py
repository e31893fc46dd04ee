"""A scripted VMM/TM driver seam for VM lifecycle tests (modelled on ``one_vmm_dummy``
and ``one_tm`` with the dummy remotes).

:class:`FakeVmDrivers` stands in for ``DriverManager`` in front of the VM managers:
it records every action sent and lets a test answer one (``reply``) or every pending
one (``answer_all``, as the dummy drivers would: DEPLOY answers
``<host>:<name>:dummy``), optionally failing chosen actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode


@dataclass
class Sent:
    family: Family
    action: str
    oid: int
    payload: str
    name: str | None = None

    @property
    def document(self) -> str:
        """The decoded ``VMM_DRIVER_ACTION_DATA`` (VMM actions)."""
        return b64decode(self.payload)


@dataclass
class FakeVmDrivers:
    """Records VMM/TM actions; replies come when the test says so."""

    sent: list[Sent] = field(default_factory=list)
    handlers: dict[tuple[Family, str], Callable[[DriverMessage], Any]] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)

    def register_action(self, family: Family, action: str, handler: Any) -> None:
        self.handlers[(family, action)] = handler

    def add_reconnect_callback(self, family: Family, callback: Callable[[], object]) -> None:
        """Unused: the fake never restarts."""

    def send(
        self,
        family: Family,
        action: str,
        oid: int,
        payload: str = "",
        *,
        name: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        if action != "DRIVER_CANCEL":
            self.sent.append(Sent(family, action, oid, payload, name))
        return True

    def pending(self, action: str | None = None) -> list[Sent]:
        return [s for s in self.sent if action is None or s.action == action]

    def actions(self) -> list[str]:
        return [s.action for s in self.sent]

    def reply(self, action: str, oid: int, success: bool = True, info: str = "-") -> None:
        """Deliver one reply to the oldest matching action (which is forgotten)."""
        for i, s in enumerate(self.sent):
            if s.action == action and s.oid == oid:
                del self.sent[i]
                status = "SUCCESS" if success else "FAILURE"
                self.handlers[(s.family, action)](DriverMessage(action, status, oid, info))
                return
        raise AssertionError(f"no pending {action} for {oid}: {self.actions()}")

    def answer_all(self) -> int:
        """Answer every pending action as the dummy drivers do; returns how many."""
        count = 0
        while self.sent:
            s = self.sent[0]
            info = "-"
            if s.action == "DEPLOY":
                root = etree.fromstring(s.document.encode())
                info = f"{root.findtext('HOST')}:{root.findtext('VM/NAME')}:dummy"
            self.reply(s.action, s.oid, s.action.lower() not in self.fail, info)
            count += 1
        return count
