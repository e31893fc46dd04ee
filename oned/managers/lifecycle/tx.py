"""One VM state change as one transaction (the ``vmpool->update`` +
``update_history`` + ``hpool->add/del_capacity`` sequences of ``src/lcm``/``src/dm``).

A transition runs with the VM's lock and the locks of the hosts it touches, works on
copies, commits everything in one ``Unit`` and only then writes the VM log lines and
runs the follow-up work (driver messages). A ``kill -9`` between the commit and the
driver message leaves a persisted transient state that ``LifeCycleManager.resume``
re-issues on the next start.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from oned.errors import ActionError
from oned.log import logger
from oned.managers.lifecycle import quota
from oned.managers.lifecycle.disks import images_of
from oned.managers.lifecycle.vmlog import write_vm_log
from oned.managers.vmm.system_pci import host_add_vm_pci, host_del_vm_pci
from oned.objects.history import History
from oned.objects.vm import LcmState, VirtualMachine, VmState
from oned.pools.base import Locks, Pool

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.image.stage import Stage
    from oned.objects.host import Host
    from oned.objects.quotas import Quotas
    from oned.objects.vnet import LeaseChanges
    from oned.pools.base import Unit
    from oned.pools.quotas import QuotaTable


def state_str(vm: VirtualMachine) -> str:
    """``VirtualMachine::state_str``: the LCM state name when ACTIVE."""
    if vm.state == VmState.ACTIVE:
        return LcmState(vm.lcm_state).name
    return VmState(vm.state).name


def add_capacity(host: Host, vm: VirtualMachine) -> None:
    """``Host::add_capacity``: the VM's CPU/MEMORY, one more running VM, its id."""
    cpu, mem = vm.host_capacity()
    share = host.share
    share.cpu_usage += cpu
    share.mem_usage += mem
    share.running_vms += 1
    host.vms.add(vm.oid)
    host_add_vm_pci(host, vm)


def del_capacity(host: Host, vm: VirtualMachine) -> None:
    """``Host::del_capacity``."""
    if vm.oid not in host.vms:
        return
    cpu, mem = vm.host_capacity()
    share = host.share
    share.cpu_usage -= cpu
    share.mem_usage -= mem
    share.running_vms = max(0, share.running_vms - 1)
    host.vms.discard(vm.oid)
    host_del_vm_pci(host, vm)


_log = logger("LCM")


class QuotaRefusal(ActionError):
    """An action refused by a quota (its text goes out without the action prefix)."""


class Tx:
    """The working copy of one VM inside a transition."""

    def __init__(self, core: Core, vm: VirtualMachine, unit: Unit, now: int) -> None:
        self.core = core
        self.vm = vm
        self.unit = unit
        self.now = now
        self.logs: list[tuple[str, str, str]] = []
        self.after: list[Callable[[], None]] = []
        self._hosts: dict[int, Host] = {}
        self._history: set[int] = set()
        self._quotas: dict[tuple[str, int], Quotas] = {}
        #: Async work staged before the commit (lease release), and its undo.
        self.before: list[Callable[[], Awaitable[list[LeaseChanges]]]] = []
        self.lease_changes: list[LeaseChanges] = []
        #: Set when images change with the VM (its unit is this Tx's unit).
        self.stage_images: Stage | None = None
        self.running_checked = False

    def image_stage(self) -> Stage:
        """A ``Stage`` sharing this transaction, for image usage changes."""
        if self.stage_images is None:
            from oned.managers.image.stage import Stage

            stage = Stage(self.core)
            stage.unit = self.unit
            self.stage_images = stage
        return self.stage_images

    def state(self, state: int) -> None:
        if state != self.vm.state:
            self._state_quotas(self.vm.state, state)
        self.vm.set_state(state)
        self.log("VM", "I", f"New state is {VmState(state).name}")

    def lcm(self, lcm: int) -> None:
        self.vm.set_lcm(lcm)
        self.log("VM", "I", f"New LCM state is {LcmState(lcm).name}")

    def log(self, tag: str, letter: str, text: str) -> None:
        self.logs.append((tag, letter, text))

    def error(self, tag: str, message: str) -> None:
        """``log_error``: an ERROR line and the ``USER_TEMPLATE/ERROR`` attribute."""
        self.log(tag, "E", message)
        self.vm.user_template.set("ERROR", f"{time.ctime(self.now)}: {message}")

    def host(self, hid: int) -> Host | None:
        """A working copy of host ``hid`` (saved at commit); its lock must be held."""
        if hid in self._hosts:
            return self._hosts[hid]
        host = self.core.hosts.get(hid)
        if host is None:
            return None
        copy = host.copy()
        self._hosts[hid] = copy
        return copy

    @property
    def history(self) -> History:
        current = self.vm.current
        assert current is not None
        self._history.add(current.seq)
        return current

    def touch_history(self, record: History | None = None) -> None:
        record = record or self.vm.current
        if record is not None:
            self._history.add(record.seq)

    def add_history(self, record: History) -> None:
        self.vm.history.append(record)
        self._history.add(record.seq)

    def then(self, fn: Callable[[], None]) -> None:
        self.after.append(fn)

    # -- quotas (the owner's user and group are locked by ``transition``) ------------

    def _quota(self, kind: str, oid: int) -> Quotas:
        key = (kind, oid)
        if key not in self._quotas:
            table = self.core.user_quotas if kind == "user" else self.core.group_quotas
            self._quotas[key] = table.get(oid).copy()
        return self._quotas[key]

    def quota_add(self, amounts: dict[str, float]) -> str | None:
        """``quota_authorization`` for VM usage: None, or oned's refusal text."""
        vm = self.vm
        if vm.uid > 0:
            error = quota.check(
                self._quota("user", vm.uid), self.core.user_quotas.defaults, amounts
            )
            if error:
                self._quotas.pop(("user", vm.uid), None)
                return f"user [{vm.uid}] {error}"
        if vm.gid > 0:
            error = quota.check(
                self._quota("group", vm.gid), self.core.group_quotas.defaults, amounts
            )
            if error:
                self._quotas.pop(("user", vm.uid), None)
                self._quotas.pop(("group", vm.gid), None)
                return f"group [{vm.gid}] {error}"
        return None

    def quota_change(self, amounts: dict[str, float], count: bool) -> None:
        vm = self.vm
        for kind, oid, pool in (
            ("user", vm.uid, self.core.users),
            ("group", vm.gid, self.core.groups),
        ):
            if oid > 0 and pool.get(oid) is not None:
                if count:
                    quota.add(self._quota(kind, oid), amounts)
                else:
                    quota.release(self._quota(kind, oid), amounts)

    def _state_quotas(self, old: int, new: int) -> None:
        """RUNNING_* usage is held while the VM is not off; DONE gives back all."""
        was_on = old not in quota.OFF_STATES
        if new == VmState.DONE:
            self.quota_change(quota.usage(self.vm, running=was_on), count=False)
        elif was_on and new in quota.OFF_STATES:
            self.quota_change(quota.usage(self.vm, allocated=False), count=False)
        elif not was_on and new not in quota.OFF_STATES and not self.running_checked:
            self.quota_change(quota.usage(self.vm, allocated=False), count=True)

    def check_running(self) -> None:
        """``quota_authorization`` of RUNNING_* usage before a resume (oned refuses
        with the quota text); the state change then counts nothing more."""
        if self.vm.state not in quota.OFF_STATES:
            return
        error = self.quota_add(quota.usage(self.vm, allocated=False))
        if error:
            raise QuotaRefusal(error)
        self.running_checked = True

    def stage_quotas(self) -> None:
        core = self.core
        for (kind, oid), quotas in self._quotas.items():
            table = core.user_quotas if kind == "user" else core.group_quotas
            self.unit.sql(table.save(oid, quotas), _remember(table, oid, quotas))

    def stage(self) -> None:
        core = self.core
        vm = self.vm.saved()
        for host in self._hosts.values():
            self.unit.save(core.hosts, host)
        self.stage_quotas()
        for record in vm.history:
            if record.seq in self._history:
                self.unit.sql(core.vms.history_row(vm, record))
        self.unit.save(core.vms, vm)


async def transition(
    core: Core,
    vid: int,
    fn: Callable[[Tx], Any],
    desc: str,
    extra_hosts: Iterable[int] = (),
    extra_targets: Iterable[tuple[Pool[Any], int]] = (),
) -> VirtualMachine | None:
    """Run ``fn`` on a copy of VM ``vid`` and commit it with the hosts it touched.

    ``fn`` returns False to give up without changes; exceptions propagate. The VM's
    current and previous hosts (and ``extra_hosts``), its networks and security groups
    (and ``extra_targets``) are locked with it.

    Returns:
        The committed VM, or None when there is no such VM or ``fn`` gave up.
    """
    extra_locks = tuple(extra_targets)
    extra = tuple(extra_hosts)
    while True:
        vm = core.vms.get(vid)
        if vm is None:
            return None
        hids = _hosts_of(vm) | set(extra)
        vnets = _vnets_of(vm)
        images = images_of(vm)
        sgs = _sgs_of(vm)
        owner_ids = (vm.uid, vm.gid)
        owners: list[tuple[Pool[Any], int]] = [(core.users, vm.uid)] if vm.uid > 0 else []
        owners += [(core.groups, vm.gid)] if vm.gid > 0 else []
        async with Locks(
            (core.vms, vid),
            *((core.hosts, h) for h in hids),
            *((core.vnets, n) for n in vnets),
            *((core.images, i) for i in images),
            *owners,
            *((core.secgroups, s) for s in sgs),
            *extra_locks,
        ):
            vm = core.vms.get(vid)
            if vm is None:
                return None
            if (
                not _hosts_of(vm) <= hids
                or not _vnets_of(vm) <= vnets
                or not images_of(vm) <= images
                or not _sgs_of(vm) <= sgs
                or (vm.uid, vm.gid) != (owner_ids[0], owner_ids[1])
            ):
                continue
            now = core.now()
            tx = Tx(core, vm.copy(), core.unit(), now)
            if fn(tx) is False:
                return None
            try:
                for work in tx.before:
                    tx.lease_changes += await work()
                tx.stage()
                if tx.stage_images is not None:
                    await tx.stage_images.commit(desc)
                else:
                    await tx.unit.commit(desc)
            except Exception:
                for changes in reversed(tx.lease_changes):
                    changes.rollback()
                raise
        write_vm_log(core, vid, tx.logs, now)
        for step in tx.after:
            try:
                step()
            except Exception as exc:  # committed: a failed follow-up is logged, not raised
                _log.failure("follow-up of {desc} failed: {exc}", desc=desc, exc=exc)
        if core.scheduler_manager is not None:
            core.scheduler_manager.vm_changed(vm, tx.vm)
        return tx.vm


def _remember(table: QuotaTable, oid: int, quotas: Quotas) -> Callable[[], None]:
    return lambda: table.remember(oid, quotas)


def _vnets_of(vm: VirtualMachine) -> set[int]:
    ids = set()
    for name in ("NIC", "NIC_ALIAS"):
        for nic in vm.template.vectors(name):
            raw = nic.get("NETWORK_ID", "").strip()
            if raw.isdigit():
                ids.add(int(raw))
    return ids


def _sgs_of(vm: VirtualMachine) -> set[int]:
    ids: set[int] = set()
    for name in ("NIC", "NIC_ALIAS"):
        for nic in vm.template.vectors(name):
            raw = nic.get("SECURITY_GROUPS", "").split(",")
            ids.update(int(p) for p in raw if p.strip().isdigit())
    return ids


def _hosts_of(vm: VirtualMachine) -> set[int]:
    return {h.hid for h in vm.history[-2:] if h.hid >= 0}
