"""The VM side of a backup job (mirrors ``BackupJob::process_backup_vms``,
``remove_id_from_vms`` and the ``backup_finished`` calls of
``LifeCycleManager::trigger_backup_success/failure``).

A VM named in BACKUP_VMS carries ``BACKUP_JOB_ID`` in its ``BACKUPS/BACKUP_CONFIG``;
one VM belongs to one job at most. The VMs change in the job's transaction, their
locks taken with the job's (callers hold them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned._async import background
from oned.log import logger
from oned.managers.vmm.backup_config import Backups
from oned.objects.backupjob import BackupJobError

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.tx import Tx
    from oned.pools.base import Unit

_log = logger("SCH")


def stage_vm_links(core: Core, unit: Unit, bj_id: int, new: list[int], old: list[int]) -> None:
    """``process_backup_vms``: added VMs get BACKUP_JOB_ID (``BackupJobError`` when one
    is in another existing job), removed ones lose it."""
    added = sorted(set(new) - set(old))
    deleted = sorted(set(old) - set(new))
    for vid in added:
        vm = core.vms.get(vid)
        if vm is None:
            continue
        backups = Backups.of(vm)
        current = backups.get_int("BACKUP_JOB_ID")
        if current not in (-1, bj_id) and core.backupjobs.get(current) is not None:
            raise BackupJobError(
                f"Unable to add VM {vid} to Backup Job {bj_id}. "
                f"It's already in Backup Job {current}"
            )
        if current == bj_id:
            continue
        backups.config["BACKUP_JOB_ID"] = str(bj_id)
        vm = vm.copy()
        backups.store(vm)
        unit.save(core.vms, vm)
    unstage_vm_links(core, unit, bj_id, deleted)


def unstage_vm_links(core: Core, unit: Unit, bj_id: int, vids: list[int]) -> None:
    """``remove_id_from_vms``: the VMs still in job ``bj_id`` leave it (an incremental
    chain starts again)."""
    for vid in vids:
        vm = core.vms.get(vid)
        if vm is None:
            continue
        backups = Backups.of(vm)
        if backups.get_int("BACKUP_JOB_ID") != bj_id:
            continue
        del backups.config["BACKUP_JOB_ID"]
        if backups.mode == "INCREMENT":
            backups.config["INCREMENTAL_BACKUP_ID"] = "-1"
            backups.config["LAST_INCREMENT_ID"] = "-1"
        vm = vm.copy()
        backups.store(vm)
        unit.save(core.vms, vm)


def job_backup_done(core: Core, tx: Tx, success: bool) -> None:
    """Called by the LCM inside a backup reply's transition: once the VM is committed,
    its job moves it from BACKING_UP_VMS to UPDATED_VMS (or ERROR_VMS)."""
    bj_id = Backups.of(tx.vm).get_int("BACKUP_JOB_ID")
    if bj_id < 0:
        return
    vid = tx.vm.oid

    def notify() -> None:
        background(finish(core, bj_id, vid, success), f"backup job {bj_id}")

    tx.then(notify)


async def finish(core: Core, bj_id: int, vid: int, success: bool) -> None:
    """``bj->backup_finished(vid, success)`` and save the job."""
    pool = core.backupjobs
    async with pool.lock(bj_id):
        job = pool.get(bj_id)
        if job is None or vid not in job.backing_up:
            return
        job = job.copy()
        job.backup_finished(vid, success, core.now())
        unit = core.unit()
        unit.save(pool, job)
        await unit.commit(f"backup of VM {vid} done for backup job {bj_id}")
    _log.info(
        "Backup Job {bj} : backup of VM {vid} {outcome}",
        bj=bj_id,
        vid=vid,
        outcome="finished" if success else "failed",
    )
