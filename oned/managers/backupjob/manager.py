"""Backup job runs (mirrors ``ScheduledActionManager::scheduled_backup_jobs`` and
``backup_jobs``), called by the scheduled action timer after the VMs' own actions.

Each tick: the due SCHED_ACTIONs of backup jobs execute their job (all BACKUP_VMS
become OUTDATED_VMS); then the jobs with outdated VMs and the highest PRIORITY start
backups in BACKUP_VMS order, one at a time for SEQUENTIAL jobs, within
``MAX_BACKUPS`` active backups and ``MAX_BACKUPS_HOST`` per host (0: no limit). A VM
that cannot be backed up (wrong state, no backup datastore...) goes to ERROR_VMS with
the reason in the job's ERROR. The LCM's backup replies move a VM from BACKING_UP_VMS
to UPDATED_VMS or ERROR_VMS (``links.job_backup_done``). After a restart the VMs of
BACKING_UP_VMS whose backup is no longer running are settled by ``recover``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import OneError, failure_message, no_exists
from oned.log import logger
from oned.objects.backupjob import BackupJob, BackupJobError
from oned.objects.schedaction import ScheduledAction
from oned.objects.vm import LcmState, VmState

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vm import VirtualMachine

_BACKUP_STATES = (LcmState.BACKUP, LcmState.BACKUP_POWEROFF)


def active_jobs(core: Core) -> list[int]:
    """``BackupJobPool::active``: jobs with outdated VMs at the highest priority."""
    jobs = [j for j in core.backupjobs.objects() if j.outdated]
    if not jobs:
        return []
    top = max(j.priority for j in jobs)
    return sorted(j.oid for j in jobs if j.priority == top)


def backup_counters(core: Core) -> tuple[int, dict[int, int]]:
    """``update_backup_counters``: VMs in BACKUP/BACKUP_POWEROFF, in all and per host."""
    active = 0
    per_host: dict[int, int] = {}
    for vm in core.vms.objects():
        if vm.state == VmState.ACTIVE and vm.lcm_state in _BACKUP_STATES:
            active += 1
            hid = vm.current.hid if vm.current is not None else -1
            per_host[hid] = per_host.get(hid, 0) + 1
    return active, per_host


class BackupJobManager:
    """The backup job half of the scheduled action manager."""

    log = logger("SCH")

    def __init__(self, core: Core) -> None:
        self.core = core

    async def timer_action(self, max_backups: int, max_backups_host: int) -> None:
        await self.scheduled_backup_jobs()
        await self.backup_jobs(max_backups, max_backups_host)

    # -- scheduled actions ---------------------------------------------------------------

    async def scheduled_backup_jobs(self) -> None:
        """Due BACKUPJOB actions (one per job) execute their job."""
        core = self.core
        seen: set[int] = set()
        for sa in core.sched_actions.due("BACKUPJOB", core.now()):
            if sa.parent_id in seen:
                continue
            seen.add(sa.parent_id)
            await self._run_sched(sa)

    async def _run_sched(self, due: ScheduledAction) -> None:
        from oned.managers.schedaction.manager import log_time
        from oned.pools.base import Locks

        core, bj_id = self.core, due.parent_id
        async with Locks((core.backupjobs, bj_id), (core.sched_actions, due.oid)):
            job, sa = core.backupjobs.get(bj_id), core.sched_actions.get(due.oid)
            if job is None or sa is None:
                return
            job, sa = job.copy(), sa.copy()
            now = core.now()
            head = f"Executing action '{sa.action}' for Backup Job {bj_id} : "
            try:
                job.execute(now)
            except BackupJobError as exc:
                sa.message = f"{log_time(now)} : {exc}"
                self.log.error("{text}", text=f"{head}Failure. {exc}")
            else:
                sa.message = ""
                sa.next_action(now)
                self.log.info("{text}", text=f"{head}Success.")
            unit = core.unit()
            core.sched_actions.save_in(unit, sa)
            unit.save(core.backupjobs, job)
            await unit.commit(f"scheduled action {sa.oid} of backup job {bj_id}")

    # -- runs ------------------------------------------------------------------------------

    async def backup_jobs(self, max_backups: int, max_backups_host: int) -> None:
        """Start the backups of the active jobs, within the limits."""
        active, per_host = backup_counters(self.core)
        for bj_id in active_jobs(self.core):
            active = await self._run_job(bj_id, active, per_host, max_backups, max_backups_host)

    async def _run_job(
        self, bj_id: int, active: int, per_host: dict[int, int], limit: int, host_limit: int
    ) -> int:
        core = self.core
        pool = core.backupjobs
        async with pool.lock(bj_id):
            stored = pool.get(bj_id)
            if stored is None:
                return active
            job = stored.copy()
            for vid in job.backup_vms():
                if vid not in job.outdated:
                    continue
                if _started_for(core.vms.get(vid), bj_id):
                    # Started before a kill -9 lost this job's update: its reply is coming.
                    job.backup_started(vid)
                    continue
                if job.execution() == "SEQUENTIAL" and job.backing_up:
                    self.log.debug(
                        "BackupJob {bj}: waiting for a active backup to complete", bj=bj_id
                    )
                    break
                if limit and active >= limit:
                    self.log.debug("Reached max number of active backups ({n})", n=limit)
                    break
                vm = core.vms.get(vid)
                if vm is None or vm.state == VmState.DONE:
                    job.remove_vm(vid)
                    self.log.debug("Backup Job {bj}: Remove non-exist VM {vid}", bj=bj_id, vid=vid)
                    continue
                if vm.current is None:
                    self.log.debug(
                        "Unable to run backup for VM: {vid}, the VM doesn't have history.",
                        vid=vid,
                    )
                    continue
                hid = vm.current.hid
                if host_limit and per_host.get(hid, 0) >= host_limit:
                    self.log.debug(
                        "Reached max number of backups ({n}) for host {hid}", n=host_limit, hid=hid
                    )
                    break
                error = await self._start(job, vid)
                if error:
                    job.add_error(vid, error, core.now())
                    self.log.error("{text}", text=error)
                    continue
                job.backup_started(vid)
                active += 1
                per_host[hid] = per_host.get(hid, 0) + 1
            unit = core.unit()
            unit.save(pool, job)
            await unit.commit(f"run backup job {bj_id}")
        return active

    async def _start(self, job: BackupJob, vid: int) -> str:
        """Configure the VM's backup from the job (``Backups::parse``, appending) and
        start it as ``VirtualMachineAPI::backup`` does for a job; "" or oned's text."""
        from oned.managers.lifecycle.tx import Tx, transition
        from oned.managers.vmm.system_backup_conf import backup_config

        config = job.backup_config()

        def configure(tx: Tx) -> bool:
            backup_config(tx.vm, config, append=True)
            return True

        self.log.info("Backup Job {bj} executing backup for VM {vid}", bj=job.oid, vid=vid)
        try:
            await transition(self.core, vid, configure, f"backup config of VM {vid}")
            await start_vm_backup(self.core, vid, job.ds_id(), job.reset())
        except OneError as exc:
            return failure_message("backup", exc, "virtual machine", 0)
        return ""

    async def refuse_scheduled_backup(self, vm: VirtualMachine) -> bool:
        """``run_vm_backups``: a VM of a backup job gets no scheduled backup of its own;
        its USER_TEMPLATE/ERROR says why (the action stays due)."""
        import time as _time

        from oned.managers.lifecycle.tx import Tx, transition
        from oned.managers.vmm.backup_config import Backups

        bj_id = Backups.of(vm).get_int("BACKUP_JOB_ID")
        if bj_id == -1:
            return False
        text = (
            f"Unable to launch scheduled backup for VM {vm.oid}, "
            f"the VM is part of Backup Job ID {bj_id}"
        )

        def mark(tx: Tx) -> bool:
            tx.vm.user_template.set("ERROR", f"{_time.ctime(tx.now)}: {text}")
            return True

        await transition(self.core, vm.oid, mark, f"scheduled backup of VM {vm.oid} refused")
        self.log.debug("{text}", text=text)
        return True

    # -- restart -------------------------------------------------------------------------

    async def recover(self) -> None:
        """Settle BACKING_UP_VMS whose backup is not running any more (a reply lost
        with a ``kill -9``): UPDATED_VMS if the VM got a backup image during this run,
        else ERROR_VMS. VMs still in a BACKUP state finish through the LCM."""
        core = self.core
        for stored in list(core.backupjobs.objects()):
            if not stored.backing_up:
                continue
            async with core.backupjobs.lock(stored.oid):
                current = core.backupjobs.get(stored.oid)
                if current is None:
                    continue
                job = current.copy()
                changed = False
                now = core.now()
                for vid in sorted(job.backing_up):
                    vm = core.vms.get(vid)
                    if vm is not None and vm.lcm_state in _BACKUP_STATES:
                        continue
                    success = vm is not None and self._backed_up_since(vm, job.last_time)
                    job.backup_finished(vid, success, now)
                    if not success:
                        job.set_error(f"Backup of VM {vid} interrupted", now)
                    changed = True
                if changed:
                    unit = core.unit()
                    unit.save(core.backupjobs, job)
                    await unit.commit(f"recover backup job {job.oid}")

    def _backed_up_since(self, vm: VirtualMachine, since: int) -> bool:
        from oned.managers.vmm.backup_config import Backups

        for image_id in Backups.of(vm).ids:
            image = self.core.images.get(image_id)
            if image is not None and image.regtime >= since:
                return True
        return False


async def start_vm_backup(core: Core, vid: int, ds_id: int, reset: bool) -> None:
    """``VirtualMachineAPI::backup`` with a backup job id, as oneadmin: the checks of
    ``one.vm.backup`` but the job's own, then the DispatchManager's backup."""
    from oned.api.vm import dispatcher
    from oned.managers.dispatch.backups import backup_datastore
    from oned.managers.dispatch.manager import Requester

    vm = core.vms.get(vid)
    if vm is None:
        raise no_exists("virtual machine", vid)
    ds = backup_datastore(core, vm, ds_id, reset)
    await dispatcher(core).backup(vid, ds.oid, reset, Requester(0, 0, -1))


def _started_for(vm: VirtualMachine | None, bj_id: int) -> bool:
    """A VM of the job already in a backup (only its job backs it up)."""
    from oned.managers.vmm.backup_config import Backups

    if vm is None or vm.lcm_state not in _BACKUP_STATES:
        return False
    return Backups.of(vm).get_int("BACKUP_JOB_ID") == bj_id
