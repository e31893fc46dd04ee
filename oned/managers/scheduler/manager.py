"""``SchedulerManager``: the core side of SCHED_MAD (mirrors ``SchedulerManager.cc``).

VMs entering PENDING (allocate, release, resume of a stopped/undeployed VM...) or
flagged for rescheduling open a window; PLACE goes to the driver once the window is
``SCHED_MAX_WND_TIME`` seconds old or holds ``SCHED_MAX_WND_LENGTH`` requests, and a
timer (every 5 s) sends it again every ``SCHED_RETRY_TIME`` seconds while VMs wait. The
request is built by :mod:`oned.managers.scheduler.match`; the reply is a plan the
:class:`PlanManager` applies. One PLACE is in flight at a time and none while the
placement plan is applying (it places again when that plan ends); a driver that fails
or does not answer (``SCHED_TIMEOUT``) leaves the VMs PENDING for the next round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned._async import background
from oned.drivers.families import Family
from oned.log import logger
from oned.managers.scheduler import match
from oned.managers.scheduler.message import document
from oned.managers.scheduler.planner import PlanManager, _conf_int
from oned.objects.host import log_time

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from oned.core import Core
    from oned.drivers.message import DriverMessage
    from oned.objects.vm import VirtualMachine

TIMER_PERIOD = 5
PLACE_TIMEOUT = 300.0


class SchedulerManager:
    log = logger("SCM")

    def __init__(self, core: Core, drivers: Any = None) -> None:
        self.core = core
        self.drivers = drivers
        self.clock = core.clock
        self.max_wnd_time = _conf_int(core, "SCHED_MAX_WND_TIME", 10)
        self.max_wnd_length = _conf_int(core, "SCHED_MAX_WND_LENGTH", 7)
        self.retry_time = _conf_int(core, "SCHED_RETRY_TIME", 60)
        self.manager_timer = max(1, _conf_int(core, "MANAGER_TIMER", 15))
        self.wnd_start = 0
        self.wnd_length = 0
        self.last_place = self.now()
        self.planner = PlanManager(core)
        self.planner.on_placement_done = self.place_finished
        self.in_flight = False
        self.deferred = False
        self.optimizing: set[int] = set()
        self._timers: list[IDelayedCall] = []
        self._mark = 0
        self.running = False

    def now(self) -> int:
        return int(self.clock.seconds())

    # -- start/stop ------------------------------------------------------------------

    async def start(self) -> None:
        await self.planner.load()
        if self.drivers is None:
            return
        self.drivers.register_action(Family.SCHED, "PLACE", self._on_place)
        self.drivers.register_action(Family.SCHED, "OPTIMIZE", self._on_optimize)
        self.drivers.register_action(Family.SCHED, "LOG", self._on_log)
        add = getattr(self.drivers, "add_reconnect_callback", None)
        if add is not None:
            add(Family.SCHED, self._driver_restarted)
        self.running = True
        self.log.info("Starting Scheduler Manager...")
        self._timers = [
            self.clock.callLater(TIMER_PERIOD, self._tick),
            self.clock.callLater(self.manager_timer, self._plan_tick),
        ]
        if self.planner.plans.active():
            self.core.eventually(self.planner.execute_plans)

    async def stop(self) -> None:
        self.running = False
        for call in self._timers:
            if call.active():
                call.cancel()
        self._timers = []

    def _driver_restarted(self) -> None:
        self.in_flight = False
        self.optimizing.clear()

    # -- events ----------------------------------------------------------------------

    def vm_changed(self, before: VirtualMachine | None, after: VirtualMachine) -> None:
        """Called after every committed VM change: opens/extends the window when the VM
        became a scheduling candidate, and reports plan actions that ended."""
        if match.is_candidate(after) and (before is None or not match.is_candidate(before)):
            self.trigger_place()
        if self.planner.by_vm:
            self.planner.vm_changed(after)

    def trigger_place(self) -> None:
        """``trigger_place``: one more request in the window; PLACE when it closes."""
        if not self.running:
            return
        now = self.now()
        if self.wnd_start == 0:
            self.wnd_start = now
        self.wnd_length += 1
        if now < self.wnd_start + self.max_wnd_time and self.wnd_length < self.max_wnd_length:
            return
        self.last_place, self.wnd_start, self.wnd_length = now, 0, 0
        self.core.eventually(self.place)

    def place_finished(self) -> None:
        """The placement plan ended: place again if VMs still wait (``place_finished``)."""
        if not self.running or (self.wnd_start != 0 and not self.deferred):
            return
        if not match.pending(self.core):
            self.deferred = False
            return
        self.last_place = self.now()
        self.core.eventually(self.place)

    def _tick(self) -> None:
        if not self.running:
            return
        self._timers = [t for t in self._timers if t.active()]
        self._timers.append(self.clock.callLater(TIMER_PERIOD, self._tick))
        self._mark += TIMER_PERIOD
        if self._mark >= 600:
            self.log.info("--Mark--")
            self._mark = 0
        now = self.now()
        expired = (self.wnd_start > 0 and now >= self.wnd_start + self.max_wnd_time) or (
            self.wnd_length >= self.max_wnd_length
        )
        waiting = now >= self.last_place + self.retry_time and bool(match.pending(self.core))
        if not expired and not waiting:
            return
        self.last_place, self.wnd_start, self.wnd_length = now, 0, 0
        self.core.eventually(self.place)

    def _plan_tick(self) -> None:
        if not self.running:
            return
        self._timers = [t for t in self._timers if t.active()]
        self._timers.append(self.clock.callLater(self.manager_timer, self._plan_tick))
        background(self.planner.timer_action(), "plan manager timer")

    # -- PLACE / OPTIMIZE ------------------------------------------------------------

    async def place(self) -> None:
        """Build the request, log what cannot match, and send PLACE."""
        if self.drivers is None:
            return
        if self.in_flight or self.planner.placement_applying():
            self.deferred = True
            return
        self.deferred = False
        req = await match.setup_place(self.core)
        if req is None:
            return
        await self._log_errors(req.errors)
        if not req.matched():
            return
        doc = document(self.core, req)
        self.in_flight = True
        if not self.drivers.send(Family.SCHED, "PLACE", -1, doc, timeout=PLACE_TIMEOUT):
            self.in_flight = False

    def trigger_optimize(self, cid: int) -> None:
        self.core.eventually(self.optimize, cid)

    async def optimize(self, cid: int) -> None:
        if cid in self.optimizing or self.drivers is None:
            return
        req, error = await match.setup_optimize(self.core, cid)
        if error:
            await self._cluster_message(cid, error)
            return
        if req is None:
            return
        await self._log_errors(req.errors)
        if not req.matched():
            return
        self.optimizing.add(cid)
        doc = document(self.core, req)
        if not self.drivers.send(Family.SCHED, "OPTIMIZE", cid, doc, timeout=PLACE_TIMEOUT):
            self.optimizing.discard(cid)

    async def _log_errors(self, errors: list[tuple[int, str]]) -> None:
        for vid, text in errors:
            await self.set_sched_message(vid, text, "SCM")

    async def set_sched_message(self, vid: int, text: str, tag: str) -> None:
        """``log_vm``: USER_TEMPLATE/SCHED_MESSAGE = "<time> : text" and an error line."""
        from oned.managers.lifecycle.tx import transition

        stamp = log_time(self.clock.seconds())

        def step(tx: Any) -> None:
            tx.vm.user_template.set("SCHED_MESSAGE", f"{stamp} : {text}")
            tx.log(tag, "E", text)

        await transition(self.core, vid, step, f"scheduler message of VM {vid}")

    async def _cluster_message(self, cid: int, text: str) -> None:
        async with self.core.clusters.lock(cid):
            cluster = self.core.clusters.get(cid)
            if cluster is None:
                return
            cluster = cluster.copy()
            cluster.template.set("SCHED_MESSAGE", f"{log_time(self.clock.seconds())} : {text}")
            unit = self.core.unit()
            unit.save(self.core.clusters, cluster)
            await unit.commit(f"scheduler message of cluster {cid}")

    # -- driver replies --------------------------------------------------------------

    def _on_place(self, msg: DriverMessage) -> None:
        self.in_flight = False
        background(self._placed(msg), "PLACE reply")

    def _on_optimize(self, msg: DriverMessage) -> None:
        self.optimizing.discard(msg.oid)
        background(self._optimized(msg), "OPTIMIZE reply")

    def _on_log(self, msg: DriverMessage) -> None:
        background(self._logged(msg), "scheduler LOG")

    async def _placed(self, msg: DriverMessage) -> None:
        try:
            if msg.status == "FAILURE":
                self.log.info("Scheduler place operation error: {p}", p=msg.payload)
                return
            await self.planner.add_plan(msg.payload)
        finally:
            if self.deferred and not self.planner.placement_applying():
                self.core.eventually(self.place)

    async def _optimized(self, msg: DriverMessage) -> None:
        if msg.status == "FAILURE":
            self.log.info("Optimize error for cluster {cid}: {p}", cid=msg.oid, p=msg.payload)
            return
        await self.planner.add_plan(msg.payload)

    async def _logged(self, msg: DriverMessage) -> None:
        """``_log``: lines about a VM go to its log (VMM tag); errors to SCHED_MESSAGE."""
        letter = msg.status[:1] if msg.status[:1] in ("E", "W", "D") else "I"
        if msg.oid < 0 or self.core.vms.get(msg.oid) is None:
            level = {"E": "error", "W": "warn", "D": "debug"}.get(letter, "info")
            getattr(self.log, level)("{text}", text=msg.payload)
            return
        if letter == "E":
            await self.set_sched_message(msg.oid, msg.payload, "VMM")
            return
        from oned.managers.lifecycle.vmlog import write_vm_log

        write_vm_log(self.core, msg.oid, [("VMM", letter, msg.payload)], self.now())
