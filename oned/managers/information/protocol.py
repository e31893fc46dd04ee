"""Probe and IM-driver messages (mirrors monitord's ``MonitorDriverProtocol.cc`` and
``HostMonitorManager``'s per-host bookkeeping).

Messages come from two places: the IM driver's stdout (START_MONITOR/STOP_MONITOR
replies, whose ``<MONITOR_MESSAGES>`` payload carries a first report of every probe)
and the UDP port probes send to (``TYPE STATUS HID TS zlib+b64``). Both end in
:meth:`Reports.dispatch`, which keeps monitord's per-host state (last seen, monitor in
progress, last timestamp per message type) and hands state-changing results to the
manager's batch: SYSTEM_HOST templates, errors and MONITOR_HOST samples.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.protocol import DatagramProtocol

from oned.drivers.message import DriverMessage, MessageFormatError, parse_line
from oned.log import logger
from oned.objects.base import parse_xml
from oned.objects.host import OFFLINE
from oned.template import Template, TemplateSyntaxError, parse_text

#: ``MonitorDriverProtocol::_start_monitor``: parts of a MONITOR_MESSAGES reply.
START_PARTS = ("MONITOR_VM", "BEACON_HOST", "MONITOR_HOST", "SYSTEM_HOST", "STATE_VM", "EXEC_VM")
#: Types whose timestamps must not go backwards (``test_set_timestamp``).
#: Largest inflated probe report accepted over UDP.
MAX_REPORT = 4 * 1024 * 1024
#: A single-line ``NAME=value`` attribute (no vector, no open quote).
_ONE_LINE = re.compile(r'\s*[A-Za-z_][\w\-.]*\s*=\s*("[^"\\]*"|[^"\[\s][^"\[]*)?\s*')
ORDERED = frozenset({"MONITOR_VM", "SYSTEM_HOST", "STATE_VM", "EXEC_VM", "MONITOR_HOST"})


def _inflate(payload: str) -> str:
    """zlib+base64 payload of a probe datagram, refusing to inflate past
    ``MAX_REPORT`` bytes (a few KB can otherwise expand to many MB)."""
    try:
        raw = base64.b64decode(payload.strip(), validate=False)
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, MAX_REPORT)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise MessageFormatError(f"bad zlib+base64 payload: {exc}") from exc
    if inflater.unconsumed_tail:
        raise MessageFormatError(f"report larger than {MAX_REPORT} bytes")
    return data.decode("utf-8", "replace")


@dataclass
class HostRecord:
    """monitord's ``HostBase`` runtime state of one host."""

    last_monitored: float = 0.0
    in_progress: bool = False
    last_ts: dict[str, int] = field(default_factory=dict)


class Batch(Protocol):
    """Where state-changing results go (the manager's pending batch)."""

    def queue_system(self, hid: int, tmpl: Template) -> None: ...

    def queue_error(self, hid: int, message: str) -> None: ...

    def queue_sample(self, hid: int, tmpl: Template) -> None: ...


class Reports:
    """Decodes and routes monitoring messages for the information manager."""

    log = logger("InM")

    def __init__(
        self, batch: Batch, now: Callable[[], float], state_of: Callable[[int], int | None]
    ) -> None:
        self.batch = batch
        self.now = now
        self.state_of = state_of
        self.hosts: dict[int, HostRecord] = {}
        self._heads: dict[str, Template] = {}
        self.received = 0
        self.ignored = 0
        #: Reports handled, by type (``oned.metrics``).
        self.absorbed: dict[str, int] = {}

    # -- entry points ----------------------------------------------------------------

    def datagram(self, data: bytes) -> None:
        """One UDP datagram: a probe line with a zlib+base64 payload."""
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                raw = parse_line(line, has_timestamp=True)
                payload = _inflate(raw.payload)
            except MessageFormatError as exc:
                self.ignored += 1
                self.log.warn("Ignoring malformed monitoring message: {e}", e=str(exc))
                continue
            if raw.action in {"START_MONITOR", "STOP_MONITOR"}:
                self.ignored += 1
                continue
            self.dispatch(DriverMessage(raw.action, raw.status, raw.oid, payload, raw.timestamp))

    def dispatch(self, msg: DriverMessage) -> None:
        handler = self._handlers.get(msg.action)
        if handler is None:
            self.ignored += 1
            self.log.info("Received UNDEFINED msg: {p}", p=msg.payload[:200])
            return
        self.received += 1
        self.absorbed[msg.action] = self.absorbed.get(msg.action, 0) + 1
        handler(self, msg)

    # -- per-host bookkeeping --------------------------------------------------------

    def record(self, hid: int) -> HostRecord | None:
        rec = self.hosts.get(hid)
        if rec is None:
            self.ignored += 1
            self.log.warn("message ignored for unknown host {hid}", hid=hid)
        return rec

    def _fresh(self, action: str, hid: int, ts: int | None) -> bool:
        """``test_set_timestamp``: drop a message older than the last of its type."""
        if not ts or action not in ORDERED:
            return True
        rec = self.record(hid)
        if rec is None:
            return False
        if rec.last_ts.get(action, 0) > ts:
            self.log.warn("out of order message ignored for host {hid}", hid=hid)
            return False
        rec.last_ts[action] = ts
        return True

    def _offline(self, hid: int) -> bool:
        return self.state_of(hid) == OFFLINE

    def error_monitor(self, hid: int, message: str) -> None:
        """``HostMonitorManager::error_monitor``: the host goes to ERROR with ``message``."""
        rec = self.record(hid)
        if rec is None or self._offline(hid):
            return
        rec.in_progress = False
        rec.last_monitored = self.now()
        self.batch.queue_error(hid, message)

    # -- handlers --------------------------------------------------------------------

    def _start_monitor(self, msg: DriverMessage) -> None:
        hid = msg.oid
        if not msg.success:
            self.log.warn("Start monitor failed for host {hid}: {p}", hid=hid, p=msg.payload)
            self._start_failure(hid)
            return
        data = msg.payload.strip()
        rec = self.record(hid)
        if rec is None or self._offline(hid):
            return
        if not data or data == "-":
            rec.last_monitored = self.now()
            rec.in_progress = False
            return
        try:
            root = parse_xml(data)
        except Exception:
            self.log.warn("Error parsing start message for host {hid}: {p}", hid=hid, p=data)
            self._start_failure(hid)
            return
        ts_text = (root.findtext("TIMESTAMP") or "0").strip()
        ts = int(ts_text) if ts_text.lstrip("-").isdigit() else 0
        for part in START_PARTS:
            node = root.find(part)
            if node is None:
                continue
            try:
                text = base64.b64decode(node.text or "").decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                text = ""
            self.dispatch(DriverMessage(part, "SUCCESS", hid, text, ts))

    def _start_failure(self, hid: int) -> None:
        """``start_monitor_failure``: HOST_STATE ``ERROR`` without a message."""
        rec = self.hosts.get(hid)
        if rec is None or self._offline(hid):
            return
        rec.in_progress = False
        self.batch.queue_error(hid, "")

    def _stop_monitor(self, msg: DriverMessage) -> None:
        if not msg.success:
            self.log.warn("Stop monitor failed for host {hid}: {p}", hid=msg.oid, p=msg.payload)

    def _beacon_host(self, msg: DriverMessage) -> None:
        if not msg.success:
            self.log.warn(
                "Error condition detected on beacon for host {hid}: {p}",
                hid=msg.oid,
                p=msg.payload,
            )
            if msg.oid >= 0:
                self.error_monitor(msg.oid, msg.payload)
            return
        rec = self.record(msg.oid)
        if rec is not None and not self._offline(msg.oid):
            rec.last_monitored = self.now()

    def _monitor_host(self, msg: DriverMessage) -> None:
        hid = msg.oid
        if not msg.success:
            self.log.warn("Failed to monitor host {hid}: {p}", hid=hid, p=msg.payload)
            self.error_monitor(hid, msg.payload)
            return
        if not self._fresh(msg.action, hid, msg.timestamp):
            return
        tmpl = self._parse(hid, msg.payload)
        if tmpl is None:
            self.error_monitor(hid, "Error parsing monitor information")
            return
        rec = self.record(hid)
        if rec is None or self._offline(hid):
            return
        rec.last_monitored = self.now()
        rec.in_progress = False
        self.batch.queue_sample(hid, tmpl)

    def _system_host(self, msg: DriverMessage) -> None:
        hid = msg.oid
        if not msg.success:
            self.log.warn(
                "Failed to get system information for host {hid}: {p}", hid=hid, p=msg.payload
            )
            self.error_monitor(hid, msg.payload)
            return
        if not self._fresh(msg.action, hid, msg.timestamp):
            return
        if self.record(hid) is None or self._offline(hid):
            return
        tmpl = self._parse(hid, msg.payload)
        if tmpl is not None:
            self.batch.queue_system(hid, tmpl)

    def _vm_report(self, msg: DriverMessage) -> None:
        """MONITOR_VM (samples), STATE_VM (states) and EXEC_VM (guest commands) go to the VMs."""
        if not msg.success:
            self.log.warn(
                "Failed {action} for host {hid}: {p}",
                action=msg.action,
                hid=msg.oid,
                p=msg.payload,
            )
            return
        if self._fresh(msg.action, msg.oid, msg.timestamp) and msg.payload.strip():
            self.log.debug("{action} report from host {hid}", action=msg.action, hid=msg.oid)
            sink = getattr(self.batch, "queue_vm_monitoring", None)
            if msg.action == "MONITOR_VM" and sink is not None:
                sink(msg.oid, msg.payload, msg.timestamp or int(self.now()))
            states = getattr(self.batch, "queue_vm_state", None)
            if msg.action == "STATE_VM" and states is not None:
                states(msg.oid, msg.payload)
            execs = getattr(self.batch, "queue_vm_exec", None)
            if msg.action == "EXEC_VM" and execs is not None:
                execs(msg.oid, msg.payload)

    def _parse(self, hid: int, text: str) -> Template | None:
        try:
            return self._parse_cached(text)
        except TemplateSyntaxError as exc:
            self.log.error(
                "Error parsing monitoring template for host {hid}\nMessage: {p}\nError: {e}",
                hid=hid,
                p=text[:500],
                e=str(exc),
            )
            return None

    def _parse_cached(self, text: str) -> Template:
        """``parse_text``, reusing the parse of everything but a last one-line
        attribute: hosts of one kind send the same SYSTEM_HOST but for a line such as
        HOSTNAME, and thousands of them must not be parsed in full."""
        body = text.rstrip("\n")
        head, _, last = body.rpartition("\n")
        if len(head) < 1024 or not _ONE_LINE.fullmatch(last):
            return parse_text(text)
        cached = self._heads.get(head)
        if cached is None:
            cached = parse_text(head)
            if len(self._heads) >= 32:
                self._heads.pop(next(iter(self._heads)))
            self._heads[head] = cached
        tmpl = cached.copy()
        tmpl.items.extend(parse_text(last).items)
        return tmpl

    _handlers: dict[str, Callable[[Reports, DriverMessage], None]] = {
        "START_MONITOR": _start_monitor,
        "STOP_MONITOR": _stop_monitor,
        "BEACON_HOST": _beacon_host,
        "MONITOR_HOST": _monitor_host,
        "SYSTEM_HOST": _system_host,
        "MONITOR_VM": _vm_report,
        "STATE_VM": _vm_report,
        "EXEC_VM": _vm_report,
    }


class ProbeListener(DatagramProtocol):
    """monitord's ``UDPMonitorDriver``: one probe message per datagram."""

    def __init__(self, reports: Reports) -> None:
        self.reports = reports

    def datagramReceived(self, datagram: bytes, addr: object) -> None:
        try:
            self.reports.datagram(datagram)
        except Exception:
            self.reports.log.failure("Monitoring datagram failed")
