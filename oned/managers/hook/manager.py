"""``HookManager``: hook events to HM_MAD and their results into the hook log (mirrors
``HookManager.cc``, ``HookManagerProtocol.cc`` and the ``trigger_send_event`` calls of
the pools and of ``Request::execute``).

* API events: the request manager reports every call (``api_call`` before the handler
  runs, ``ApiEvent.done`` with the answer); all but the read-only info calls become an
  API HOOK_MESSAGE.
* State events: the VM, host, image and network pools call ``_observe`` whenever a
  unit stages one of their objects; a state (or LCM state) different from the committed
  one is an event, and so is a new VM or host (``VirtualMachinePool::allocate``,
  ``HostPool::allocate``). Several saves of an object in one unit count from the last
  one staged, so each change is reported once.
* Every event is written as ``EXECUTE  -1 <b64>`` after its transaction commits. One
  that some hook will run is also kept in ``hook_event_queue`` (state events in the
  very transaction of the change, API events before they are sent) until a result of
  each of those hooks arrives; what is still queued is sent again when the manager
  starts, when the driver restarts and shortly after a ``one.hookpool.info`` (what a
  Hook Execution Manager calls when it starts), so a hook is not lost while oned, the
  driver or the execution manager is down. Delivery is at least once.
* ``EXECUTE SUCCESS|FAILURE <hook id> <rc> <b64 result>`` replies become hook-log
  records; ``one.hook.retry`` sends ``RETRY  -1 <b64>``.
"""

from __future__ import annotations

import sqlite3
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from oned._async import background
from oned.db.database import Statement
from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode
from oned.log import logger
from oned.managers.hook import message
from oned.managers.hook.log import HookLog
from oned.objects.hook import API, STATE, supported_call

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from oned.core import Core
    from oned.pools.base import Unit

#: Seconds between a ``one.hookpool.info`` and sending the queued events again (the
#: Hook Execution Manager subscribes right after loading its hooks).
RESEND_DELAY = 1.0

_ZONE_DISABLED = "Cannot process request, zone disabled"

#: ``one.<x>.*`` prefix -> ``Core`` pool attribute, for the EXTRA of allocate/delete.
_POOLS = {
    "vm": "vms",
    "host": "hosts",
    "vn": "vnets",
    "image": "images",
    "user": "users",
    "template": "templates",
    "group": "groups",
    "datastore": "datastores",
    "cluster": "clusters",
    "document": "documents",
    "zone": "zones",
    "secgroup": "secgroups",
    "vdc": "vdcs",
    "vrouter": "vrouters",
    "vmgroup": "vmgroups",
    "vntemplate": "vntemplates",
    "hook": "hooks",
    "backupjob": "backupjobs",
    "market": "markets",
    "marketapp": "marketapps",
}


def _thd_queue(conn: sqlite3.Connection) -> list[tuple[int, int, str]]:
    rows = conn.execute("SELECT eid, hkid, message FROM hook_event_queue ORDER BY eid, hkid")
    return [(int(e), int(h), str(m)) for e, h, m in rows]


@dataclass
class Pending:
    """A sent event and the hooks whose result has not arrived yet."""

    message: str
    hooks: set[int] = field(default_factory=set)


class ApiEvent:
    """One call on its way through the request manager."""

    def __init__(self, manager: HookManager, method: str, params: tuple[Any, ...]) -> None:
        self.manager = manager
        self.method = method
        self.params = params
        self.extra = ""
        if method.endswith(".delete") and len(params) > 1:
            self.extra = manager.object_xml(method, params[1])

    def done(self, result: list[Any]) -> None:
        """The call answered ``result``: send its event (never fails the call)."""
        try:
            self._done(result)
        except Exception:
            self.manager.log.failure("API hook event of {m}", m=self.method)

    def _done(self, result: list[Any]) -> None:
        if not result[0] and str(result[1]).endswith(_ZONE_DISABLED):
            return
        extra = self.extra
        if self.method.endswith(".allocate") and result[0]:
            extra = self.manager.object_xml(self.method, result[1])
        doc = message.api_document(self.method, self.params, result, extra)
        self.manager.api_event(self.method, b64encode(doc))


class _Silent:
    def done(self, result: list[Any]) -> None:
        """Info calls fire nothing."""


_SILENT = _Silent()


class HookManager:
    """Sends hook events, keeps them until executed, records results."""

    log = logger("HKM")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.drivers: Any = None
        raw = (core.config.template.get_vector("HOOK_LOG_CONF") or {}).get("LOG_RETENTION")
        retention = int(raw) if raw and raw.strip().lstrip("-").isdigit() else 20
        self.hook_log = HookLog(core.db, retention)
        self.pending: dict[int, Pending] = {}
        self._next_eid = 0
        self._staged: weakref.WeakKeyDictionary[Unit, dict[tuple[str, int], tuple[int, int]]]
        self._staged = weakref.WeakKeyDictionary()
        self._resend_timer: IDelayedCall | None = None
        for kind, pool in (
            ("VM", core.vms),
            ("HOST", core.hosts),
            ("IMAGE", core.images),
            ("NET", core.vnets),
        ):
            pool.observer = partial(self._observe, kind)

    async def load(self) -> None:
        """Read the queue and the hook-log index (``Core.load``)."""
        await self.hook_log.load()
        self.pending = {}
        for eid, hkid, text in await self.core.db.run("hook event queue", _thd_queue):
            self.pending.setdefault(eid, Pending(text)).hooks.add(hkid)
            self._next_eid = max(self._next_eid, eid + 1)

    # -- the driver ------------------------------------------------------------------

    def use_drivers(self, drivers: Any) -> HookManager:
        self.drivers = drivers
        return self

    async def start(self) -> None:
        if self.drivers is None:
            return
        self.drivers.register_action(Family.HOOK, "EXECUTE", self._on_execute)
        self.drivers.register_action(Family.HOOK, "RETRY", self._on_retry)
        add = getattr(self.drivers, "add_reconnect_callback", None)
        if add is not None:
            add(Family.HOOK, self.resend)
        self.log.info("Starting Hook Manager...")
        self.resend()

    async def stop(self) -> None:
        if self._resend_timer is not None and self._resend_timer.active():
            self._resend_timer.cancel()
        self._resend_timer = None

    def _send(self, action: str, payload: str) -> None:
        if self.drivers is not None:
            self.drivers.send(Family.HOOK, action, -1, payload)

    def resend(self) -> None:
        """Send again every event some hook has not answered yet."""
        self._resend_timer = None
        for eid in sorted(self.pending):
            self._send("EXECUTE", self.pending[eid].message)

    def subscriber_loading(self) -> None:
        """A ``one.hookpool.info``: an execution manager may be (re)starting."""
        if not self.pending or self.drivers is None:
            return
        if self._resend_timer is None or not self._resend_timer.active():
            self._resend_timer = self.core.clock.callLater(RESEND_DELAY, self.resend)

    # -- which hooks an event runs ---------------------------------------------------

    # An execution manager answers nothing for a REMOTE hook without a REMOTE_HOST (API
    # events, images, networks, VMs never placed): such events are not waited for.

    def api_hooks(self, method: str) -> list[int]:
        return sorted(
            h.oid
            for h in self.core.hooks.objects()
            if h.type == API and h.template.get("CALL") == method and not _remote(h)
        )

    def state_hooks(self, kind: str, state: str, lcm: str, remote_host: bool) -> list[int]:
        key = f"{kind}/{state}/{lcm}"
        return sorted(
            h.oid
            for h in self.core.hooks.objects()
            if h.type == STATE and h.key() == key and (remote_host or not _remote(h))
        )

    # -- API events ------------------------------------------------------------------

    def api_call(self, method: str, params: tuple[Any, ...]) -> ApiEvent | _Silent:
        """Called before a call runs; ``done(result)`` after it answered."""
        if not supported_call(method):
            return _SILENT
        return ApiEvent(self, method, params)

    def object_xml(self, method: str, oid: Any) -> str:
        parts = method.split(".")
        pool = getattr(self.core, _POOLS.get(parts[1] if len(parts) > 2 else "", ""), None)
        if pool is None or isinstance(oid, bool) or not isinstance(oid, int):
            return ""
        try:
            return str(pool.body(int(oid)))
        except (KeyError, AttributeError):
            return ""

    def api_event(self, method: str, payload: str) -> None:
        hooks = self.api_hooks(method)
        if not hooks:
            self._send("EXECUTE", payload)
            return
        background(self._queue_and_send(payload, hooks), f"API hook event of {method}")

    async def _queue_and_send(self, payload: str, hooks: list[int]) -> None:
        unit = self.core.unit()
        self._stage(unit, payload, hooks)
        await unit.commit("queue hook event")

    # -- state events ----------------------------------------------------------------

    def _observe(self, kind: str, unit: Unit, old: Any, new: Any) -> None:
        staged = self._staged.setdefault(unit, {})
        key = (kind, new.oid)
        state = (new.state, getattr(new, "lcm_state", 0))
        if key in staged:
            before: tuple[int, int] | None = staged[key]
        elif old is not None:
            before = (old.state, getattr(old, "lcm_state", 0))
        else:
            before = None
        staged[key] = state
        if before == state or (before is None and kind in ("IMAGE", "NET")):
            return
        names = message.state_names(kind, new)
        payload = b64encode(message.state_document(kind, new))
        remote_host = kind == "HOST" or (kind == "VM" and new.current is not None)
        self._stage(unit, payload, self.state_hooks(kind, *names, remote_host))

    def _stage(self, unit: Unit, payload: str, hooks: list[int]) -> None:
        """Queue (when hooks wait for it) and send an event with ``unit``'s commit."""
        if hooks:
            eid = self._next_eid
            self._next_eid += 1
            for hkid in hooks:
                unit.sql(
                    (
                        "INSERT INTO hook_event_queue (eid, hkid, message) VALUES (?, ?, ?)",
                        (eid, hkid, payload),
                    )
                )
            unit.then(partial(self._remember, eid, Pending(payload, set(hooks))))
        unit.then(partial(self._send, "EXECUTE", payload))

    def _remember(self, eid: int, pending: Pending) -> None:
        self.pending[eid] = pending

    # -- results -----------------------------------------------------------------------

    def _on_retry(self, msg: DriverMessage) -> None:
        self.log.debug("Message received: {m}", m=f"RETRY {msg.status} {msg.oid} {msg.payload}")

    def _on_execute(self, msg: DriverMessage) -> None:
        self.log.debug("Message received: {m}", m=f"EXECUTE {msg.status} {msg.oid} {msg.payload}")
        head, _, info_b64 = msg.payload.strip().partition(" ")
        try:
            rc = int(head)
        except ValueError:
            self.log.error("Error reading hook execution return code.")
            return
        if msg.status == "SUCCESS":
            self.log.info("Success executing Hook {h}", h=msg.oid)
        else:
            self.log.error("Error executing Hook {h}", h=msg.oid)
        background(self.record(msg.oid, rc, b64decode(info_b64)), f"hook {msg.oid} result")

    async def record(self, hkid: int, rc: int, result: str) -> None:
        """A result: its hook-log record, and its event off the queue (one transaction)."""
        unit = self.core.unit()
        for statement in self.hook_log.add(hkid, rc, result, self.core.now()):
            unit.sql(statement)
        if "<RETRY>yes</RETRY>" not in result:
            self._consume(unit, hkid)
        await unit.commit(f"hook {hkid} execution")

    def _consume(self, unit: Unit, hkid: int) -> None:
        for eid in sorted(self.pending):
            pending = self.pending[eid]
            if hkid in pending.hooks:
                pending.hooks.discard(hkid)
                if not pending.hooks:
                    del self.pending[eid]
                unit.sql(_delete_queued(eid, hkid))
                return

    # -- hooks going away, retries -----------------------------------------------------

    def drop_hook(self, unit: Unit, hkid: int) -> None:
        """A deleted hook: its records, and the events only it waited for."""
        unit.sql(self.hook_log.drop(hkid))
        self.drop_queued(unit, hkid)

    def drop_queued(self, unit: Unit, hkid: int) -> None:
        """Stop waiting for a hook's results (deleted, or changed: the execution manager
        reloads it and may no longer run it for what was queued)."""
        unit.sql(("DELETE FROM hook_event_queue WHERE hkid = ?", (hkid,)))
        unit.then(partial(self._forget_hook, hkid))

    def _forget_hook(self, hkid: int) -> None:
        for eid in list(self.pending):
            self.pending[eid].hooks.discard(hkid)
            if not self.pending[eid].hooks:
                del self.pending[eid]

    def retry(self, args: str, remote_host: str, hkid: int) -> None:
        """``trigger_retry``: ``RETRY  -1 <b64 HOOK_MESSAGE>``."""
        self._send("RETRY", b64encode(message.retry_document(args, remote_host, hkid)))


def _remote(hook: Any) -> bool:
    return (hook.template.get("REMOTE") or "").upper() == "YES"


def _delete_queued(eid: int, hkid: int) -> Statement:
    return "DELETE FROM hook_event_queue WHERE eid = ? AND hkid = ?", (eid, hkid)
