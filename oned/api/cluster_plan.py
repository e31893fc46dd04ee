"""``one.cluster.optimize/planexecute/plandelete`` and ``one.cluster.info`` with the
cluster's plan (mirrors ``ClusterAPI::Optimize/PlanExecute/PlanDelete`` and
``ClusterInfoAPI::load_extended_data``).

As in oned 7.5 these three check only that the cluster exists (no ACL request is made);
``optimize`` asks the scheduler driver for a plan (OPTIMIZE), which is stored READY
(or applied at once with ``ONE_DRS/AUTOMATION=full``); ``planexecute`` starts a READY
plan; ``plandelete`` empties it. ``one.cluster.info`` shows a plan that is not NONE as
``<PLAN>`` after the TEMPLATE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.api import shared
from oned.api.cluster import CLUSTER
from oned.api.context import Call
from oned.api.registry import rpc
from oned.core import Core
from oned.errors import ActionError, InternalError, no_exists
from oned.managers.scheduler.plans import PlanState
from oned.objects.base import Op

if TYPE_CHECKING:
    from oned.managers.scheduler.manager import SchedulerManager


def scheduler(core: Core) -> SchedulerManager:
    manager: SchedulerManager | None = core.scheduler_manager
    if manager is None:
        raise InternalError("Scheduler manager is not running")
    return manager


def _cluster(core: Core, oid: int) -> None:
    if core.clusters.get(oid) is None:
        raise no_exists("cluster", oid)


@rpc("one.cluster.info", "ib", required=1, help="Returns cluster information.")
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns cluster information (with its optimization plan, if any)."""
    obj = shared.get_authorized(core, call, CLUSTER, oid, Op.USE, ignore_lock=True)
    body = str(shared.info_body(core, call, CLUSTER, obj, decrypt))
    manager: SchedulerManager | None = core.scheduler_manager
    if manager is None:
        return body
    plans = manager.planner.plans
    await plans.load()
    plan = plans.get(oid)
    if plan.state == PlanState.NONE:
        return body
    return f"{body[: -len('</CLUSTER>')]}{plan.to_xml()}</CLUSTER>"


@rpc("one.cluster.optimize", "i", help="Create an optimization plan for Cluster")
async def optimize(core: Core, call: Call, oid: int) -> int:
    """Create an optimization plan for Cluster."""
    _cluster(core, oid)
    manager = scheduler(core)
    await manager.planner.plans.load()
    if manager.planner.plans.get(oid).state == PlanState.APPLYING:
        raise ActionError("Can't optimize cluster. A previous plan is currently being applied.")
    manager.trigger_optimize(oid)
    return oid


@rpc("one.cluster.planexecute", "i", help="Start execution of optimization plan")
async def planexecute(core: Core, call: Call, oid: int) -> int:
    """Start execution of optimization plan."""
    _cluster(core, oid)
    error = await scheduler(core).planner.start_plan(oid)
    if error:
        raise ActionError(error)
    return oid


@rpc("one.cluster.plandelete", "i", help="Deletes an optimization plan")
async def plandelete(core: Core, call: Call, oid: int) -> int:
    """Deletes an optimization plan."""
    _cluster(core, oid)
    if not await scheduler(core).planner.delete_plan(oid):
        raise ActionError(f"Plan for cluster {oid} does not exist")
    return oid
