"""A scripted datastore driver seam for image tests (modelled on the dummy remotes).

:class:`FakeDatastoreDrivers` stands in for ``DriverManager`` in front of an
``ImageManager``: it records every action sent, answers ``STAT``/``RESTORE``
requests at once, and lets a test deliver replies (``reply``) or answer every
pending action as ``remotes/datastore/dummy`` does (``answer_all``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode

#: What the dummy remotes print on success.
DUMMY_INFO = {
    "CP": "dummy_path dummy_format",
    "MKFS": "dummy_path",
    "CLONE": "dummy_path",
    "RM": "-",
    "SNAP_DELETE": "-",
    "SNAP_REVERT": "-",
    "SNAP_FLATTEN": "-",
    "MONITOR": b64encode("USED_MB=9720\nTOTAL_MB=20480\nFREE_MB=20480\n"),
}


@dataclass
class Sent:
    action: str
    oid: int
    payload: str

    @property
    def document(self) -> str:
        """The decoded ``DS_DRIVER_ACTION_DATA``."""
        return b64decode(self.payload)


@dataclass
class FakeDatastoreDrivers:
    """Records datastore actions; replies come when the test says so."""

    sent: list[Sent] = field(default_factory=list)
    handlers: dict[str, Callable[[DriverMessage], Any]] = field(default_factory=dict)
    stat_reply: tuple[bool, str] = (True, "1024")
    restore_reply: tuple[bool, str] = (True, "0 dummy_image")
    requests: list[Sent] = field(default_factory=list)

    def register_action(self, family: Family, action: str, handler: Any) -> None:
        assert family is Family.IMAGE
        self.handlers[action] = handler

    def add_reconnect_callback(self, family: Family, callback: Callable[[], object]) -> None:
        """Unused: the fake never restarts."""

    def send(self, family: Family, action: str, oid: int, payload: str = "") -> bool:
        self.sent.append(Sent(action, oid, payload))
        return True

    async def request(
        self, family: Family, action: str, payload: str, timeout: float | None = None
    ) -> tuple[bool, str]:
        self.requests.append(Sent(action, -1, payload))
        return self.stat_reply if action == "STAT" else self.restore_reply

    def pending(self, action: str | None = None) -> list[Sent]:
        return [s for s in self.sent if action is None or s.action == action]

    def reply(
        self, action: str, oid: int, status: str = "SUCCESS", info: str | None = None
    ) -> None:
        """Deliver one reply (the sent action is forgotten)."""
        for i, s in enumerate(self.sent):
            if s.action == action and s.oid == oid:
                del self.sent[i]
                break
        text = DUMMY_INFO.get(action, "-") if info is None else info
        self.handlers[action](DriverMessage(action, status, oid, text))

    def answer_all(self, action: str | None = None) -> int:
        """Answer every pending action (or those of ``action``) with the dummy's INFO."""
        todo = self.pending(action)
        for s in todo:
            self.reply(s.action, s.oid)
        return len(todo)
