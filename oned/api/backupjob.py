"""``one.backupjob.*`` and ``one.backupjobpool.info`` (mirrors ``BackupJobAPI``).

The job and the VMs its BACKUP_VMS adds or drops (their ``BACKUP_JOB_ID``) change in one
transaction, under the locks of all of them; so do a job and its scheduled actions.
Runs are started by ``oned.managers.backupjob``.
"""

from __future__ import annotations

from typing import Any

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import (
    ActionError,
    ApiError,
    AuthorizationError,
    InternalError,
    NoExistsError,
    no_exists,
)
from oned.log import logger
from oned.managers.backupjob.links import stage_vm_links, unstage_vm_links
from oned.objects.backupjob import MAX_PRIO, MAX_USER_PRIO, MIN_PRIO, BackupJob, BackupJobError
from oned.objects.base import Op, Permissions
from oned.objects.schedaction import SchedActionError
from oned.pools.base import Locks, Pool
from oned.template import Template, TemplateSyntaxError, parse_str_or_xml

_log = logger("ReM")

BACKUPJOB = Family[BackupJob](
    type_name="BACKUPJOB",
    word="backup job",
    pool_root="BACKUPJOB_POOL",
    pool=lambda core: core.backupjobs,
    auth=shared.owned_auth("BACKUPJOB"),
    lockable=True,
    name_scope="owner",
)

declare(BACKUPJOB, "backupjob", "rename", "chmod", "chown", "lock", "unlock")


@rpc("one.backupjobpool.info", "iii")
async def pool_info(core: Core, call: Call, filter_flag: int, start: int, end: int) -> WireParts:
    """Returns the Backup Job pool."""
    jobs = shared.filtered(core, call, BACKUPJOB, filter_flag, start, end)
    return shared.pool_document("BACKUPJOB_POOL", jobs, core.backupjobs)


def _vm_locks(core: Core, *lists: list[int]) -> list[tuple[Pool[Any], int]]:
    return [(core.vms, v) for v in sorted({v for vids in lists for v in vids})]


@rpc("one.backupjob.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new Backup Job."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("BACKUPJOB", -1))
    sched = tmpl.vectors("SCHED_ACTION")
    tmpl.erase("SCHED_ACTION")
    prio = tmpl.get("PRIORITY")
    if prio is not None and prio.strip().lstrip("+-").isdigit():
        if not MIN_PRIO <= int(prio) <= MAX_PRIO:
            raise InternalError("Wrong priority value")
        if not call.is_admin and int(prio) > 50:
            raise AuthorizationError()
    caller = call.caller
    name = tmpl.get("NAME") or ""
    tmpl.erase("NAME")
    wanted = _vms_of(tmpl)
    job = BackupJob(
        oid=-1,
        name=name,
        uid=caller.uid,
        gid=caller.gid,
        uname=caller.uname,
        gname=caller.gname,
        perms=Permissions.for_new_object(
            caller.uid, caller.gid, caller.umask, core.config.enable_other_permissions
        ),
        template=tmpl,
    )
    async with Locks((core.backupjobs, -1), *_vm_locks(core, wanted)):
        shared.check_new_name(core, BACKUPJOB, name, caller.uid, "BACKUP JOB")
        try:
            vms, _ = job.parse()
        except BackupJobError as exc:
            raise InternalError(str(exc)) from exc
        unit = core.unit()
        job.oid = unit.allocate(core.backupjobs)
        try:
            stage_vm_links(core, unit, job.oid, vms, [])
            for vector in sched:
                va = {k: v for k, v in vector.items() if k != "ARGS"}
                sa = core.sched_actions.stage_new(unit, "BACKUPJOB", job.oid, 0, va)
                job.sched_actions.add(sa.oid)
        except (BackupJobError, SchedActionError) as exc:
            unit.rollback()
            raise InternalError(str(exc)) from exc
        unit.add(core.backupjobs, job)
        await unit.commit(f"allocate backup job {name}")
    return job.oid


@rpc("one.backupjob.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns Backup Job information."""
    job: BackupJob = shared.get_authorized(core, call, BACKUPJOB, oid, Op.USE, ignore_lock=True)
    return job.to_xml(core.sched_actions.dump(list(job.sched_actions)))


@rpc("one.backupjob.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates a Backup Job template."""
    shared.get_authorized(core, call, BACKUPJOB, oid, Op.MANAGE)
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    try:
        new = parse_str_or_xml(text)
    except TemplateSyntaxError as exc:
        raise InternalError(f"Cannot update template. {exc.parse_error}") from exc
    job = shared.get_object(core, BACKUPJOB, oid)
    wanted = _vms_of(new) + job.backup_vms()
    async with Locks((core.backupjobs, oid), *_vm_locks(core, wanted)):
        job = shared.get_object(core, BACKUPJOB, oid).copy()
        new.set("BACKUP_VMS_OLD", job.template.get("BACKUP_VMS") or "")
        if mode == 0:
            job.template = new
        else:
            job.template.merge(new)
        for name in ("NAME", "PRIORITY", "SCHED_ACTION"):
            job.template.erase(name)
        unit = core.unit()
        try:
            vms, old = job.parse()
            stage_vm_links(core, unit, oid, vms, old)
        except BackupJobError as exc:
            raise InternalError(f"Cannot update template. {exc}") from exc
        unit.save(core.backupjobs, job)
        await unit.commit(f"update backup job {oid}")
    return oid


def _vms_of(tmpl: Template) -> list[int]:
    from oned.objects.backupjob import split_uints

    return split_uints(tmpl.get("BACKUP_VMS") or "")


@rpc("one.backupjob.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a Backup Job (its VMs leave it, its scheduled actions go)."""
    job: BackupJob = shared.get_authorized(core, call, BACKUPJOB, oid, Op.MANAGE)
    async with Locks((core.backupjobs, oid), *_vm_locks(core, job.backup_vms())):
        job = shared.get_object(core, BACKUPJOB, oid)
        unit = core.unit()
        unit.drop(core.backupjobs, oid)
        unstage_vm_links(core, unit, oid, job.backup_vms())
        for sa_id in sorted(job.sched_actions):
            if core.sched_actions.get(sa_id) is not None:
                unit.drop(core.sched_actions, sa_id)
        shared.drop_resource_rules(core, unit, "BACKUPJOB", oid)
        await unit.commit(f"delete backup job {oid}")
    return oid


async def _change(core: Core, call: Call, oid: int, op: Op, change: object) -> BackupJob:
    """``basic_authorization``, then ``change(job)`` on a copy saved in any case; a
    ``BackupJobError`` it raises is answered as ACTION after the save (oned saves the
    job before checking the result)."""
    shared.get_authorized(core, call, BACKUPJOB, oid, op)
    pool = core.backupjobs
    failure: BackupJobError | None = None
    async with pool.lock(oid):
        job: BackupJob = shared.get_object(core, BACKUPJOB, oid).copy()
        try:
            change(job)  # type: ignore[operator]
        except BackupJobError as exc:
            failure = exc
        await shared.save(core, BACKUPJOB, job, f"{call.method} {oid}")
    if failure is not None:
        _log.error("{msg}", msg=str(failure))
        raise ActionError(str(failure))
    return job


@rpc("one.backupjob.backup", "i")
async def backup(core: Core, call: Call, oid: int) -> int:
    """Execute Backup Job."""
    await _change(core, call, oid, Op.MANAGE, lambda job: job.execute(core.now()))
    return oid


@rpc("one.backupjob.cancel", "i")
async def cancel(core: Core, call: Call, oid: int) -> int:
    """Cancel Backup Job execution: pending VMs are dropped, running backups cancelled."""
    active: list[int] = []

    def stop(job: BackupJob) -> None:
        active.extend(sorted(job.backing_up))
        job.cancel()

    await _change(core, call, oid, Op.MANAGE, stop)
    dm = core.dispatch_manager
    for vid in active:
        if dm is None:
            break
        try:
            await dm.backup_cancel(vid, None)
        except Exception as exc:  # oned ignores these failures (VM gone, wrong state)
            _log.debug("backup cancel of VM {vid}: {exc}", vid=vid, exc=exc)
    return oid


@rpc("one.backupjob.retry", "i")
async def retry(core: Core, call: Call, oid: int) -> int:
    """Retry Backup Job: the VMs in error are backed up again."""
    await _change(core, call, oid, Op.MANAGE, lambda job: job.retry())
    return oid


@rpc("one.backupjob.priority", "ii")
async def priority(core: Core, call: Call, oid: int, prio: int) -> int:
    """Set Backup Job priority (above 49 needs ADMIN rights)."""
    if not MIN_PRIO <= prio <= MAX_PRIO:
        raise ActionError("Wrong priority value")
    op = Op.ADMIN if prio > MAX_USER_PRIO else Op.MANAGE

    def set_prio(job: BackupJob) -> None:
        job.priority = prio

    await _change(core, call, oid, op, set_prio)
    return oid


def _sched_vector(text: str) -> dict[str, str] | None:
    return shared.parse_template(text).get_vector("SCHED_ACTION")


@rpc("one.backupjob.schedadd", "is")
async def schedadd(core: Core, call: Call, oid: int, text: str) -> int:
    """Create Scheduled Action."""
    shared.get_authorized(core, call, BACKUPJOB, oid, Op.MANAGE)
    va = _sched_vector(text)
    if va is None:
        raise ActionError("No SCHED_ACTION attribute in template")
    async with core.backupjobs.lock(oid):
        job = shared.get_object(core, BACKUPJOB, oid).copy()
        unit = core.unit()
        try:
            sa = core.sched_actions.stage_new(unit, "BACKUPJOB", oid, 0, va)
        except SchedActionError as exc:
            unit.rollback()
            raise ActionError(str(exc)) from exc
        job.sched_actions.add(sa.oid)
        unit.save(core.backupjobs, job)
        await unit.commit(f"schedadd backup job {oid}")
    return sa.oid


@rpc("one.backupjob.schedupdate", "iis")
async def schedupdate(core: Core, call: Call, oid: int, sa_id: int, text: str) -> int:
    """Update Scheduled Action."""
    shared.get_authorized(core, call, BACKUPJOB, oid, Op.MANAGE)
    va = _sched_vector(text)
    if va is None:
        raise InternalError("No SCHED_ACTION attribute in template")
    pool = core.sched_actions
    async with Locks((core.backupjobs, oid), (pool, sa_id)):
        job = shared.get_object(core, BACKUPJOB, oid)
        if sa_id not in job.sched_actions:
            raise InternalError(f"SCHED_ACTION with id = {sa_id} doesn't exist")
        sa = pool.get(sa_id)
        if sa is None:
            return sa_id
        sa = sa.copy()
        try:
            sa.parse(va, 0)
        except SchedActionError as exc:
            raise InternalError(str(exc)) from exc
        unit = core.unit()
        pool.save_in(unit, sa)
        await unit.commit(f"schedupdate {sa_id} of backup job {oid}")
    return sa_id


@rpc("one.backupjob.scheddelete", "ii")
async def scheddelete(core: Core, call: Call, oid: int, sa_id: int) -> int:
    """Delete Scheduled Action."""
    shared.get_authorized(core, call, BACKUPJOB, oid, Op.MANAGE)
    pool = core.sched_actions
    async with Locks((core.backupjobs, oid), (pool, sa_id)):
        job = core.backupjobs.get(oid)
        if job is None:
            raise no_exists("backup job", oid)
        if sa_id not in job.sched_actions:
            raise NoExistsError("", sa_id, "scheduled action")
        job = job.copy()
        job.sched_actions.discard(sa_id)
        unit = core.unit()
        unit.save(core.backupjobs, job)
        if pool.get(sa_id) is not None:
            unit.drop(pool, sa_id)
        await unit.commit(f"scheddelete {sa_id} of backup job {oid}")
    return sa_id
