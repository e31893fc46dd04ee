"""``ScheduledActionManager``: runs due scheduled actions of VMs (mirrors
``ScheduledActionManager.cc``).

Every ``MANAGER_TIMER`` seconds (oned's ``timer_period``) the manager takes the due
actions (``TIME < now`` and ``TIME > DONE``, oldest first, one per VM), runs each as an
internal call by oneadmin through the very handler of the API method (``one.vm.action``,
``one.vm.snapshotcreate``, ``one.vm.backup``...), then marks it done and moves a
repeating one to its next time, or records the failure in ``MESSAGE`` (the action stays
due and is tried again on the next tick, as in oned). Backups are started last, within
``MAX_BACKUPS`` active backups and ``MAX_BACKUPS_HOST`` per host. State lives in the
database only: an action that fell due while the daemon was down runs once on the
first tick after the start.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall

from oned._async import async_to_deferred
from oned.api.context import Call
from oned.api.registry import declared
from oned.errors import ActionError, OneError, failure_message
from oned.log import logger
from oned.managers.backupjob.manager import BackupJobManager
from oned.objects.schedaction import ScheduledAction
from oned.objects.vm import LcmState, VmState

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.core import Core

#: Action name -> (API method, argument kinds after the VM id, the ARGS format text).
_WITH_ARGS: dict[str, tuple[str, str, str]] = {
    "snapshot-create": ("one.vm.snapshotcreate", "s", "snapshot-name"),
    "snapshot-revert": ("one.vm.snapshotrevert", "i", "snapshot-id"),
    "snapshot-delete": ("one.vm.snapshotdelete", "i", "snapshot-id"),
    "disk-snapshot-create": ("one.vm.disksnapshotcreate", "is", "disk-id, snapshot-name"),
    "disk-snapshot-revert": ("one.vm.disksnapshotrevert", "ii", "disk-id, snapshot-id"),
    "disk-snapshot-delete": ("one.vm.disksnapshotdelete", "ii", "disk-id, snapshot-id"),
    "backup": ("one.vm.backup", "ib", "datastore-id, reset"),
}

_BACKUP_STATES = (LcmState.BACKUP, LcmState.BACKUP_POWEROFF)


def log_time(now: int) -> str:
    """``one_util::log_time``: ``ctime`` without the newline."""
    return _time.ctime(now)


def parse_args(text: str, kinds: str) -> list[Any] | None:
    """``parse_args``: the comma-separated ARGS as ``kinds`` (s, i, b), or None."""
    tokens = text.split(",") if text else []
    if tokens and tokens[-1] == "":
        tokens.pop()  # getline drops an empty last field
    values: list[Any] = []
    for kind in kinds:
        if not tokens:
            return None
        token = tokens.pop(0)
        if kind == "s":
            values.append(token)
            continue
        stripped = token.strip()
        try:
            number = int(stripped)
        except ValueError:
            return None
        if not -(2**31) <= number < 2**31:
            return None
        if kind == "b":
            if number not in (0, 1):
                return None
            values.append(bool(number))
        else:
            values.append(number)
    return values


class ScheduledActionManager:
    """The timer that runs scheduled actions."""

    log = logger("SCH")

    def __init__(
        self,
        core: Core,
        clock: IReactorTime,
        timer: float | None = None,
        max_backups: int | None = None,
        max_backups_host: int | None = None,
    ) -> None:
        self.core = core
        self.clock = clock
        config = core.config
        self.timer = float(timer if timer is not None else config.manager_timer or 15)
        self.max_backups = (
            max_backups if max_backups is not None else _int(config.get("MAX_BACKUPS"), 5)
        )
        self.max_backups_host = (
            max_backups_host
            if max_backups_host is not None
            else _int(config.get("MAX_BACKUPS_HOST"), 2)
        )
        self.backup_jobs = BackupJobManager(core)
        self._loop: LoopingCall | None = None
        self._handlers: dict[str, Callable[..., Any]] | None = None

    # -- service -----------------------------------------------------------------------

    async def start(self) -> None:
        self.log.info("Starting Scheduled Action Manager...")
        await self.backup_jobs.recover()
        loop = LoopingCall(self._tick)
        loop.clock = self.clock
        self._loop = loop
        done = loop.start(self.timer, now=False)
        done.addErrback(lambda f: self.log.failure("scheduled action timer stopped", f))

    async def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    @async_to_deferred
    async def _tick(self) -> None:
        try:
            await self.timer_action()
        except Exception as exc:  # the timer must keep running
            self.log.error("Scheduled actions failed: {exc}", exc=exc)

    # -- the timer ---------------------------------------------------------------------

    async def timer_action(self) -> None:
        """``timer_action``: the due VM actions, then the due backups."""
        now = self.core.now()
        seen: set[int] = set()
        backups: list[ScheduledAction] = []
        for sa in self.core.sched_actions.due("VM", now):
            if sa.parent_id in seen:
                continue
            seen.add(sa.parent_id)
            if sa.action == "backup":
                backups.append(sa)
                continue
            await self.run_vm_action(sa.parent_id, sa.oid)
        if backups:
            await self._run_backups(backups)
        await self.backup_jobs.timer_action(self.max_backups, self.max_backups_host)

    async def _run_backups(self, backups: list[ScheduledAction]) -> None:
        """``run_vm_backups``: within MAX_BACKUPS and MAX_BACKUPS_HOST."""
        active = 0
        per_host: dict[int, int] = {}
        for busy in self.core.vms.objects():
            if busy.state == VmState.ACTIVE and busy.lcm_state in _BACKUP_STATES:
                active += 1
                hid = busy.current.hid if busy.current is not None else -1
                per_host[hid] = per_host.get(hid, 0) + 1
        for sa in backups:
            if self.max_backups and active >= self.max_backups:
                self.log.debug("Reached max number of active backups ({n})", n=self.max_backups)
                break
            vm = self.core.vms.get(sa.parent_id)
            if vm is None or vm.current is None:
                continue
            if await self.backup_jobs.refuse_scheduled_backup(vm):
                continue
            hid = vm.current.hid
            if self.max_backups_host and per_host.get(hid, 0) >= self.max_backups_host:
                self.log.debug(
                    "Reached max number of host backups ({n}) for host {hid}",
                    n=self.max_backups_host,
                    hid=hid,
                )
                break
            await self.run_vm_action(sa.parent_id, sa.oid)
            active += 1
            per_host[hid] = per_host.get(hid, 0) + 1

    async def run_vm_action(self, vid: int, sa_id: int) -> None:
        """``run_scheduled_action_vm``: run, then record the outcome on the action."""
        sa = self.core.sched_actions.get(sa_id)
        if sa is None:
            return
        name = sa.action
        error = await self._call(vid, sa)
        pool = self.core.sched_actions
        async with pool.lock(sa_id):
            current = pool.get(sa_id)
            if current is None:
                return
            current = current.copy()
            now = self.core.now()
            if error is None:
                current.message = ""
                current.next_action(now)
                outcome = "Success."
            else:
                current.message = f"{log_time(now)} : {error}"
                outcome = f"Failure. {error}"
            unit = self.core.unit()
            pool.save_in(unit, current)
            await unit.commit(f"scheduled action {sa_id}")
        self.log.info(
            "Executing action '{name}' for VM {vid} : {outcome}",
            name=name,
            vid=vid,
            outcome=outcome,
        )

    async def _call(self, vid: int, sa: ScheduledAction) -> str | None:
        """``vm_action_call``: None on success, else oned's failure text."""
        name = sa.action
        spec = _WITH_ARGS.get(name)
        if spec is None:
            method, params = "one.vm.action", [name, vid]
        else:
            method, kinds, fmt = spec
            args = sa.args
            if name == "backup" and args and "," not in args.rstrip(","):
                args += ",0"  # backward compatibility: reset = false
            values = parse_args(args, kinds)
            if values is None:
                return f"Missing or malformed ARGS for: {name}. Format: {fmt}"
            params = [vid, *values]
        handler = self._handler(method)
        if handler is None:
            return failure_message(name, ActionError(f"{method} is not available"), "", 0)
        call = Call(method, self.core.caller_of(0), -1)
        try:
            await handler(self.core, call, *params)
        except OneError as exc:
            text = failure_message(name, exc, "virtual machine", 0)
            self.log.error("{text}", text=text)
            return text
        return None

    def _handler(self, method: str) -> Callable[..., Any] | None:
        if self._handlers is None:
            self._handlers = {m.name: m.handler for m in declared()}
        return self._handlers.get(method)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
