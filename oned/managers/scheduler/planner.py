"""``PlanManager``: applies plans (mirrors ``PlanManager.cc``).

A plan arriving from the scheduler replaces the stored one of its cluster (-1 for
placement) unless that one is APPLYING; placement plans (and cluster plans of clusters
with ``ONE_DRS/AUTOMATION=full``) start APPLYING, other cluster plans wait READY for
``one.cluster.planexecute``. Actions run as oneadmin through the DispatchManager (deploy
with capacity enforced, migrate, or any ``one.vm.action``), at most
``MAX_ACTIONS_PER_HOST`` per host and ``MAX_ACTIONS_PER_CLUSTER`` per plan at once; a
VM reaching RUNNING (or the resting state of the action) ends its action DONE, a
``*_FAILURE`` state or a refused action ERROR, and ``ACTION_TIMEOUT`` TIMEOUT. Plans
are persisted on every change, so a restart carries on with what was applying.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import DeferredLock

from oned.errors import ActionError, InternalError, OneError
from oned.log import logger
from oned.managers.scheduler.nics import auto_nics
from oned.managers.scheduler.plans import Plan, PlanAction, PlanError, PlanPool, PlanState
from oned.objects.history import ACTION_NAMES
from oned.objects.vm import LcmState, VirtualMachine, VmState

if TYPE_CHECKING:
    from oned.core import Core

_RESTING = (VmState.POWEROFF, VmState.SUSPENDED, VmState.STOPPED, VmState.UNDEPLOYED)


def _conf_int(core: Core, name: str, default: int) -> int:
    try:
        return int(str(core.config.get(name) or default).strip())
    except ValueError:
        return default


def outcome(operation: str, vm: VirtualMachine) -> int | None:
    """The state an action ends in once its VM looks like ``vm`` (None: still running)."""
    if vm.state == VmState.ACTIVE:
        if vm.lcm_state == LcmState.RUNNING:
            return PlanState.DONE
        if LcmState(vm.lcm_state).name.endswith("FAILURE"):
            return PlanState.ERROR
        return None
    if operation in ("deploy", "migrate"):
        if operation == "migrate" and vm.state == VmState.POWEROFF:
            return PlanState.DONE
        return PlanState.ERROR if vm.state not in (VmState.PENDING,) else None
    if vm.state in _RESTING or vm.state == VmState.DONE:
        return PlanState.DONE
    return None


class PlanManager:
    log = logger("PLM")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.plans = PlanPool(core.db)
        self.max_per_host = max(1, _conf_int(core, "MAX_ACTIONS_PER_HOST", 1))
        self.max_per_cluster = max(1, _conf_int(core, "MAX_ACTIONS_PER_CLUSTER", 30))
        self.action_timeout = _conf_int(core, "ACTION_TIMEOUT", 300)
        self.live_resched = _conf_int(core, "LIVE_RESCHEDS", 0) == 1
        cold = _conf_int(core, "COLD_MIGRATE_MODE", 0)
        self.cold_migrate_mode = cold if 0 <= cold <= 2 else 0
        self.drs_interval = _conf_int(core, "DRS_INTERVAL", 600)
        self.drs_last = int(core.clock.seconds())
        #: VM id -> (plan, action) of the actions APPLYING.
        self.by_vm: dict[int, tuple[int, int]] = {}
        self._lock = DeferredLock()
        #: Called when the placement plan is over (the scheduler places again).
        self.on_placement_done: Any = None

    async def load(self) -> None:
        await self.plans.load()
        for cid in self.plans.active():
            for a in self.plans.get(cid).actions:
                if a.state == PlanState.APPLYING:
                    self.by_vm[a.vm_id] = (cid, a.oid)

    def placement_applying(self) -> bool:
        plan = self.plans.peek(-1)
        return plan is not None and plan.state == PlanState.APPLYING

    # -- new plans -------------------------------------------------------------------

    async def add_plan(self, xml: str) -> None:
        """``add_plan``: store the plan the driver answered and start applying it."""
        await self.plans.load()
        try:
            plan = Plan.from_xml(xml)
        except PlanError:
            self.log.error("Error parsing plan XML:{xml}", xml=xml)
            return
        if not plan.actions:
            self.log.debug("Plan has no actions, skipping...")
            return
        current = self.plans.get(plan.cid)
        if plan.cid == -1:
            self.log.info("Adding new placement plan")
            if current.state == PlanState.APPLYING:
                self.log.info("Cannot add plan. A placement plan is already in progress.")
                return
            plan.state = PlanState.APPLYING
        else:
            cluster = self.core.clusters.get(plan.cid)
            if cluster is None:
                self.log.error("Optimization plan for non-existent cluster {cid}", cid=plan.cid)
                return
            self.log.info("Adding new plan for cluster {cid}", cid=plan.cid)
            if current.state == PlanState.APPLYING:
                self.log.info(
                    "Cannot add cluster optimization plan. A plan is already in progress."
                )
                return
            drs = cluster.template.get_vector("ONE_DRS") or {}
            auto = (drs.get("AUTOMATION") or "").strip().lower()
            plan.state = PlanState.APPLYING if auto == "full" else PlanState.READY
        for a in plan.actions:
            a.state, a.timestamp = PlanState.READY, 0
        await self.plans.save(plan)
        await self._clear_messages(plan)
        await self.execute_plans()

    async def _clear_messages(self, plan: Plan) -> None:
        from oned.managers.lifecycle.tx import transition

        for a in plan.actions:
            vm = self.core.vms.get(a.vm_id)
            if vm is None or not vm.user_template.get("SCHED_MESSAGE"):
                continue

            def clear(tx: Any) -> bool:
                if not tx.vm.user_template.get("SCHED_MESSAGE"):
                    return False
                tx.vm.user_template.set("SCHED_MESSAGE", "")
                return True

            await transition(self.core, a.vm_id, clear, f"clear SCHED_MESSAGE of VM {a.vm_id}")

    async def start_plan(self, cid: int) -> str:
        """``start_plan`` (planexecute): an error text, or "" once it is APPLYING."""
        await self.plans.load()
        plan = self.plans.get(cid)
        errors: dict[int, str] = {
            PlanState.NONE: "Plan is not ready",
            PlanState.APPLYING: "Plan is already applying",
            PlanState.DONE: "Plan is already done",
            PlanState.ERROR: "Plan is in error state",
        }
        known = plan.state in {int(s) for s in PlanState}
        error = errors.get(plan.state if known else int(PlanState.NONE), "")
        if error:
            return error
        plan.state = PlanState.APPLYING
        await self.plans.save(plan)
        await self.execute_plans()
        return ""

    async def delete_plan(self, cid: int) -> bool:
        """``plandelete``: empty the plan (False when there is none)."""
        await self.plans.load()
        await self._lock.acquire()
        try:
            plan = self.plans.get(cid)
            if plan.state == PlanState.NONE:
                return False
            for a in plan.actions:
                self.by_vm.pop(a.vm_id, None)
            plan.clear()
            await self.plans.save(plan)
            return True
        finally:
            self._lock.release()

    # -- execution -------------------------------------------------------------------

    async def timer_action(self) -> None:
        await self.execute_plans()
        now = int(self.core.clock.seconds())
        if self.drs_interval > 0 and now - self.drs_last >= self.drs_interval:
            self.drs_last = now
            sched = getattr(self.core, "scheduler_manager", None)
            for cluster in sorted(self.core.clusters.objects(), key=lambda c: c.oid):
                drs = cluster.template.get_vector("ONE_DRS") or {}
                if (drs.get("AUTOMATION") or "manual").strip().lower() == "manual":
                    continue
                if self.plans.get(cluster.oid).state == PlanState.APPLYING:
                    continue
                if sched is not None:
                    sched.trigger_optimize(cluster.oid)

    async def execute_plans(self) -> None:
        await self.plans.load()
        await self._lock.acquire()
        try:
            for cid in self.plans.active():
                plan = self.plans.get(cid)
                before = plan.to_xml()
                await self._execute(plan)
                if plan.to_xml() != before:
                    await self.plans.save(plan)
                self._after_change(plan)
        finally:
            self._lock.release()

    async def _execute(self, plan: Plan) -> None:
        now = int(self.core.clock.seconds())
        plan.timeout_actions(self.action_timeout, now)
        for a in plan.actions:
            if a.state == PlanState.APPLYING:  # an end missed while down or not a transition
                vm = self.core.vms.get(a.vm_id)
                done = PlanState.ERROR if vm is None else outcome(a.operation, vm)
                if done is not None:
                    a.state = done
            if a.state != PlanState.APPLYING:
                self.by_vm.pop(a.vm_id, None)
        per_host: dict[int, int] = {}
        running = 0
        for a in plan.actions:
            if a.state == PlanState.APPLYING:
                per_host[a.host_id] = per_host.get(a.host_id, 0) + 1
                running += 1
        for a in plan.actions:
            if a.state != PlanState.READY:
                continue
            if per_host.get(a.host_id, 0) >= self.max_per_host:
                continue
            if running >= self.max_per_cluster:
                break
            if await self._start(plan.cid, a):
                per_host[a.host_id] = per_host.get(a.host_id, 0) + 1
                running += 1
        plan.check_completed()

    async def _start(self, cid: int, a: PlanAction) -> bool:
        """``start_action``: run the action as oneadmin; False (ERROR) if refused."""
        from oned.managers.dispatch.manager import Requester

        a.timestamp = int(self.core.clock.seconds())
        dm = self.core.dispatch_manager
        try:
            if dm is None:
                raise InternalError("Dispatch manager is not running")
            if a.operation == "deploy":
                placement = self._placement(a)
                await auto_nics(self.core, a)
                await dm.deploy(a.vm_id, placement, True)
            elif a.operation == "migrate":
                migrate = getattr(dm, "migrate", None)
                if migrate is None:
                    raise InternalError("Migrate is not available")
                await migrate(
                    a.vm_id,
                    self._placement(a),
                    self.live_resched,
                    False,
                    self.cold_migrate_mode,
                    Requester(0, 0, -1),
                )
            elif a.operation in ACTION_NAMES:
                await dm.action(a.operation, a.vm_id, Requester(0, 0, -1))
            else:
                raise ActionError(f'Action "{a.operation}" is not supported')
        except OneError as exc:
            a.state = PlanState.ERROR
            detail = exc.message or f"Error getting {exc.word} [{exc.resp_id}]."
            text = f"[internal action] {detail}"
            self.log.info("{text}", text=text)
            await self._vm_error(a.vm_id, text)
            return False
        except Exception as exc:
            a.state = PlanState.ERROR
            self.log.error("Plan action on VM {vid} failed: {exc}", vid=a.vm_id, exc=exc)
            return False
        a.state = PlanState.APPLYING
        await self._record(cid, a)
        vm = self.core.vms.get(a.vm_id)
        done = outcome(a.operation, vm) if vm is not None else PlanState.ERROR
        if done is not None:
            a.state = done
        else:
            self.by_vm[a.vm_id] = (cid, a.oid)
        return True

    async def _record(self, cid: int, a: PlanAction) -> None:
        """The VM's history names the plan and action that moved it (PLAN_ID/ACTION_ID)."""
        from oned.managers.lifecycle.tx import transition

        def step(tx: Any) -> bool:
            if tx.vm.current is None:
                return False
            record = tx.history
            record.plan_id, record.action_id = cid, a.oid
            return True

        await transition(self.core, a.vm_id, step, f"plan action of VM {a.vm_id}")

    def _placement(self, a: PlanAction) -> tuple[int, str, int, str, str, int]:
        from oned.api.vm import _system_ds
        from oned.errors import no_exists

        host = self.core.hosts.get(a.host_id)
        if host is None:
            raise no_exists("host", a.host_id)
        ds = _system_ds(self.core, host.cluster_id, host.oid, a.ds_id)
        tm_mad = ds.template.get("TM_MAD") or ds.tm_mad
        return (host.oid, host.name, host.cluster_id, host.vm_mad, tm_mad, ds.oid)

    async def _vm_error(self, vid: int, text: str) -> None:
        from oned.managers.lifecycle.tx import transition
        from oned.objects.host import log_time

        def step(tx: Any) -> None:
            tx.vm.user_template.set("ERROR", f"{log_time(tx.now)} : {text}")

        await transition(self.core, vid, step, f"plan error of VM {vid}")

    # -- completion ------------------------------------------------------------------

    def vm_changed(self, vm: VirtualMachine) -> None:
        key = self.by_vm.get(vm.oid)
        if key is None:
            return
        cid, aid = key
        plan = self.plans.peek(cid)
        actions = plan.actions if plan is not None else []
        action = next((a for a in actions if a.oid == aid), None)
        if action is None:
            self.by_vm.pop(vm.oid, None)
            return
        state = outcome(action.operation, vm)
        if state is not None:
            self.by_vm.pop(vm.oid, None)
            self.core.eventually(self.action_finished, cid, aid, state)

    async def action_finished(self, cid: int, aid: int, state: int) -> None:
        await self._lock.acquire()
        try:
            plan = self.plans.get(cid)
            if not plan.action_finished(aid, state):
                return
            plan.check_completed()
            await self.plans.save(plan)
        finally:
            self._lock.release()
        self._after_change(plan)
        if plan.state == PlanState.APPLYING:
            self.core.eventually(self.execute_plans)

    def _after_change(self, plan: Plan) -> None:
        if plan.cid == -1 and plan.state != PlanState.APPLYING and self.on_placement_done:
            self.core.eventually(self.on_placement_done)
