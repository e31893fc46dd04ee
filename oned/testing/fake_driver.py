"""A scripted in-process driver for manager tests (modelled on ``one_vmm_dummy.rb``).

Attach a :class:`FakeDriver` to a :class:`~oned.testing.fake_process.FakeProcess`
(usually as the ``responder`` of ``expect_spawn``). It answers ``INIT``, parses every
request, and replies per action from a queue of scripted :class:`Outcome` values
(``SUCCESS`` with the dummy's INFO by default), each after a delay measured on the
fake clock. ``FINALIZE`` and stdin EOF end the fake child like the Ruby drivers do.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, format_line, parse_line

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.testing.fake_process import FakeProcess

__all__ = ["FakeDriver", "Outcome", "dummy_vmm_info"]


@dataclass(frozen=True)
class Outcome:
    """How the fake answers one request.

    Attributes:
        status: STATUS of the reply (``SUCCESS``/``FAILURE``).
        info: INFO of the reply; ``None`` uses the action's default.
        delay: Seconds (fake clock) before answering.
        reply: ``False`` never answers (a lost reply).
    """

    status: str = "SUCCESS"
    info: str | None = None
    delay: float = 0.0
    reply: bool = True


SUCCESS = Outcome()
FAILURE = Outcome("FAILURE")


def _xml_text(doc: str, path: str) -> str | None:
    try:
        root = ET.fromstring(doc)  # noqa: S314 - test data
    except ET.ParseError:
        return None
    node = root.find(path)
    return None if node is None else (node.text or "")


def dummy_vmm_info(msg: DriverMessage) -> str:
    """The INFO ``one_vmm_dummy`` gives on success for ``msg``."""
    action = msg.action
    if action == "DEPLOY":
        doc = b64decode(msg.payload)
        host = _xml_text(doc, "HOST") or ""
        name = _xml_text(doc, "VM/NAME") or ""
        return f"{host}:{name}:dummy"
    if action in ("SNAPSHOTCREATE", "DISKSNAPSHOTCREATE"):
        return "dummy-snap"
    if action == "BACKUP":
        return "dummy-backup-id 1024"
    if action == "UPDATESG":
        return _xml_text(b64decode(msg.payload), "SECURITY_GROUP_ID") or ""
    if action == "UPDATENIC":
        return _xml_text(b64decode(msg.payload), "VIRTUAL_NETWORK_ID") or ""
    return "-"


class FakeDriver:
    """Scripted responder for one fake driver process.

    Args:
        clock: The fake clock (usually the ``FakeProcessReactor`` itself).
        family: Family whose codec the replies use.
        init_reply: Bytes written after ``INIT`` (``None``: never answer).
        exit_on_finalize: Exit with status 0 on ``FINALIZE``.
        exit_on_eof: Exit with status 255 when stdin is closed (Ruby drivers).
    """

    def __init__(
        self,
        clock: IReactorTime,
        family: Family = Family.VMM,
        *,
        init_reply: bytes | None = b"INIT SUCCESS - -\n",
        exit_on_finalize: bool = True,
        exit_on_eof: bool = True,
    ) -> None:
        self.clock = clock
        self.family = family
        self.init_reply = init_reply
        self.exit_on_finalize = exit_on_finalize
        self.exit_on_eof = exit_on_eof
        self.received: list[DriverMessage] = []
        self.process: FakeProcess | None = None
        self.processes: list[FakeProcess] = []
        self._scripts: dict[str, deque[Outcome]] = defaultdict(deque)
        self._buffer = b""
        self.finalized = False

    def __call__(self, process: FakeProcess) -> None:
        self.attach(process)

    def attach(self, process: FakeProcess) -> None:
        """Start answering for ``process`` (a new spawn replaces the old one)."""
        self.process = process
        self.processes.append(process)
        self._buffer = b""
        self.finalized = False
        process.on_write = self._on_write
        process.on_close_stdin = self._on_eof

    def script(self, action: str, *outcomes: Outcome) -> None:
        """Queue outcomes for the next requests of ``action`` (then defaults)."""
        self._scripts[action].extend(outcomes)

    def actions(self) -> list[str]:
        """The request types received so far, in order."""
        return [m.action for m in self.received]

    def send(self, data: bytes) -> None:
        """Write raw bytes on the driver's stdout."""
        if self.process is None or self.process.ended:
            return
        self.process.send_stdout(data)

    def reply(self, msg: DriverMessage) -> None:
        """Write ``msg`` (encoded per family) on the driver's stdout."""
        spec = self.family.spec
        payload = spec.encode_payload(msg.payload)
        if spec.has_timestamp and msg.timestamp is None:
            msg = DriverMessage(msg.action, msg.status, msg.oid, payload, 0)
        else:
            msg = DriverMessage(msg.action, msg.status, msg.oid, payload, msg.timestamp)
        self.send(format_line(msg))

    def _on_write(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        process = self.process
        if process is None or not line.strip() or self.finalized:
            return
        word = line.split()[0]
        if word == b"INIT":
            if self.init_reply is not None:
                self.clock.callLater(0, self.send, self.init_reply)
            return
        if word == b"FINALIZE":
            self.finalized = True
            if self.exit_on_finalize:
                self.clock.callLater(0, self._exit, process, 0)
            return
        spec = self.family.spec
        msg = self._parse_request(line)
        if spec.encode and msg.payload:
            msg = DriverMessage(msg.action, msg.status, msg.oid, spec.decode_payload(msg.payload))
        self.received.append(msg)
        queue = self._scripts.get(msg.action)
        outcome = queue.popleft() if queue else SUCCESS
        if not outcome.reply or msg.action == "DRIVER_CANCEL":
            return
        info = outcome.info
        if info is None:
            info = dummy_vmm_info(msg) if self.family is Family.VMM else "-"
        oid = spec.reply_id.get(msg.action, msg.oid)
        reply = DriverMessage(msg.action, outcome.status, oid, info)
        self.clock.callLater(outcome.delay, self._send_if_current, process, reply)

    def _parse_request(self, line: bytes) -> DriverMessage:
        """Read a core request: ``TYPE  ID PAYLOAD`` (empty status) or the
        monitoring form with ``-`` and a timestamp."""
        spec = self.family.spec
        if spec.request_status:
            return parse_line(line, has_timestamp=spec.has_timestamp)
        fields = line.split(None, 2)
        oid = int(fields[1]) if len(fields) > 1 else -1
        payload = fields[2].decode() if len(fields) > 2 else ""
        return DriverMessage(fields[0].decode(), "", oid, payload.rstrip("\n"))

    def _send_if_current(self, process: FakeProcess, reply: DriverMessage) -> None:
        if process is self.process and not process.ended:
            self.reply(reply)

    def _on_eof(self) -> None:
        process = self.process
        if process is not None and self.exit_on_eof and not self.finalized:
            self.clock.callLater(0, self._exit, process, 255)

    @staticmethod
    def _exit(process: FakeProcess, status: int) -> None:
        if not process.ended:
            process.exit(status)
