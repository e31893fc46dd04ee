"""The VM object (mirrors ``VirtualMachine.h``/``VirtualMachine.cc``).

A VM keeps its whole history in memory; the stored body (``vm_pool.body``, the element
of ``one.vmpool.infoextended``) carries only the last record, as oned stores it, while
``one.vm.info`` shows every record (``info_xml``). ``short_xml`` is the ``vm_pool``
``short_body`` column and the element of ``one.vmpool.info``.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from oned.objects.base import (
    Lock,
    Permissions,
    esc,
    ids_of,
    ids_xml,
    owner_columns,
    owner_xml,
    parse_xml,
    template_of,
)
from oned.objects.history import History
from oned.template import Template, cdata


class VmState(IntEnum):
    """``VirtualMachine::VmState``."""

    INIT = 0
    PENDING = 1
    HOLD = 2
    ACTIVE = 3
    STOPPED = 4
    SUSPENDED = 5
    DONE = 6
    POWEROFF = 8
    UNDEPLOYED = 9
    CLONING = 10
    CLONING_FAILURE = 11


class LcmState(IntEnum):
    """``VirtualMachine::LcmState``."""

    LCM_INIT = 0
    PROLOG = 1
    BOOT = 2
    RUNNING = 3
    MIGRATE = 4
    SAVE_STOP = 5
    SAVE_SUSPEND = 6
    SAVE_MIGRATE = 7
    PROLOG_MIGRATE = 8
    PROLOG_RESUME = 9
    EPILOG_STOP = 10
    EPILOG = 11
    SHUTDOWN = 12
    CLEANUP_RESUBMIT = 15
    UNKNOWN = 16
    HOTPLUG = 17
    SHUTDOWN_POWEROFF = 18
    BOOT_UNKNOWN = 19
    BOOT_POWEROFF = 20
    BOOT_SUSPENDED = 21
    BOOT_STOPPED = 22
    CLEANUP_DELETE = 23
    HOTPLUG_SNAPSHOT = 24
    HOTPLUG_NIC = 25
    HOTPLUG_SAVEAS = 26
    HOTPLUG_SAVEAS_POWEROFF = 27
    HOTPLUG_SAVEAS_SUSPENDED = 28
    SHUTDOWN_UNDEPLOY = 29
    EPILOG_UNDEPLOY = 30
    PROLOG_UNDEPLOY = 31
    BOOT_UNDEPLOY = 32
    HOTPLUG_PROLOG_POWEROFF = 33
    HOTPLUG_EPILOG_POWEROFF = 34
    BOOT_MIGRATE = 35
    BOOT_FAILURE = 36
    BOOT_MIGRATE_FAILURE = 37
    PROLOG_MIGRATE_FAILURE = 38
    PROLOG_FAILURE = 39
    EPILOG_FAILURE = 40
    EPILOG_STOP_FAILURE = 41
    EPILOG_UNDEPLOY_FAILURE = 42
    PROLOG_MIGRATE_POWEROFF = 43
    PROLOG_MIGRATE_POWEROFF_FAILURE = 44
    PROLOG_MIGRATE_SUSPEND = 45
    PROLOG_MIGRATE_SUSPEND_FAILURE = 46
    BOOT_UNDEPLOY_FAILURE = 47
    BOOT_STOPPED_FAILURE = 48
    PROLOG_RESUME_FAILURE = 49
    PROLOG_UNDEPLOY_FAILURE = 50
    DISK_SNAPSHOT_POWEROFF = 51
    DISK_SNAPSHOT_REVERT_POWEROFF = 52
    DISK_SNAPSHOT_DELETE_POWEROFF = 53
    DISK_SNAPSHOT_SUSPENDED = 54
    DISK_SNAPSHOT_REVERT_SUSPENDED = 55
    DISK_SNAPSHOT_DELETE_SUSPENDED = 56
    DISK_SNAPSHOT = 57
    DISK_SNAPSHOT_REVERT = 58
    DISK_SNAPSHOT_DELETE = 59
    PROLOG_MIGRATE_UNKNOWN = 60
    PROLOG_MIGRATE_UNKNOWN_FAILURE = 61
    DISK_RESIZE = 62
    DISK_RESIZE_POWEROFF = 63
    DISK_RESIZE_UNDEPLOYED = 64
    HOTPLUG_NIC_POWEROFF = 65
    HOTPLUG_RESIZE = 66
    HOTPLUG_SAVEAS_UNDEPLOYED = 67
    HOTPLUG_SAVEAS_STOPPED = 68
    BACKUP = 69
    BACKUP_POWEROFF = 70
    RESTORE = 71


_SHORT_USER_ATTRS = (
    "LABELS",
    "ERROR",
    "SCHED_MESSAGE",
    "SCHED_RANK",
    "SCHED_DS_RANK",
    "SCHED_REQUIREMENTS",
    "SCHED_DS_REQUIREMENTS",
    "USER_PRIORITY",
)
_SHORT_DISK_ATTRS = (
    "DISK_ID",
    "DATASTORE",
    "DATASTORE_ID",
    "IMAGE",
    "IMAGE_ID",
    "SIZE",
    "TYPE",
    "CLONE",
    "CLONE_TARGET",
    "LN_TARGET",
    "DISK_SNAPSHOT_TOTAL_SIZE",
)
_SHORT_NIC_FIRST = (
    "IP",
    "EXTERNAL_IP",
    "IP6",
    "IP6_ULA",
    "IP6_LINK",
    "IP6_GLOBAL",
    "NETWORK_MODE",
    "SCHED_REQUIREMENTS",
    "SCHED_RANK",
)
_SHORT_NIC_LAST = ("MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS")

EMPTY_BACKUPS = "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS></BACKUP_IDS></BACKUPS>"


def _pick(vector: dict[str, str], names: tuple[str, ...]) -> str:
    return "".join(f"<{n}>{cdata(vector[n])}</{n}>" for n in names if vector.get(n))


def _nic_order(nic: dict[str, str]) -> int:
    """``VirtualMachineNics`` iterate by NIC_ID, aliases included."""
    raw = nic.get("NIC_ID", "").strip()
    return int(raw) if raw.isdigit() else 0


def vector_xml(name: str, vector: dict[str, str]) -> str:
    inner = "".join(f"<{k}>{cdata(vector[k])}</{k}>" for k in sorted(vector))
    return f"<{name}>{inner}</{name}>"


@dataclass
class VirtualMachine:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    perms: Permissions = field(default_factory=Permissions)
    last_poll: int = 0
    state: int = VmState.INIT
    lcm_state: int = LcmState.LCM_INIT
    prev_state: int = VmState.INIT
    prev_lcm_state: int = LcmState.LCM_INIT
    resched: int = 0
    stime: int = 0
    etime: int = 0
    deploy_id: str = ""
    lock: Lock = field(default_factory=Lock)
    #: The last monitoring sample as a template (empty: no sample yet).
    monitoring: Template = field(default_factory=Template)
    sched_actions: list[int] = field(default_factory=list)
    template: Template = field(default_factory=Template)
    user_template: Template = field(default_factory=Template)
    #: Every history record, oldest first (the body stores only the last one).
    history: list[History] = field(default_factory=list)
    #: Inner XML of ``SNAPSHOTS`` elements, kept as rendered.
    snapshots_xml: str = ""
    backups_xml: str = EMPTY_BACKUPS

    TABLE: ClassVar[str] = "vm_pool"
    ROOT: ClassVar[str] = "VM"

    # -- state -----------------------------------------------------------------------

    def set_state(self, state: int) -> None:
        """``set_state(VmState)``: records the previous state."""
        self.prev_state = self.state
        self.state = state

    def set_lcm(self, lcm: int) -> None:
        self.prev_lcm_state = self.lcm_state
        self.lcm_state = lcm

    def saved(self) -> VirtualMachine:
        """``VirtualMachinePool::update``: PREV_* follow what is written."""
        self.prev_state = self.state
        self.prev_lcm_state = self.lcm_state
        return self

    @property
    def current(self) -> History | None:
        return self.history[-1] if self.history else None

    @property
    def previous(self) -> History | None:
        return self.history[-2] if len(self.history) > 1 else None

    @property
    def cpu(self) -> float:
        try:
            return float(self.template.get("CPU") or 0)
        except ValueError:
            return 0.0

    @property
    def memory(self) -> int:
        try:
            return int(self.template.get("MEMORY") or 0)
        except ValueError:
            return 0

    @property
    def vcpu(self) -> int:
        try:
            return int(self.template.get("VCPU") or 1)
        except ValueError:
            return 1

    def host_capacity(self) -> tuple[int, int]:
        """``get_capacity``: CPU in percent units and MEMORY in KB."""
        return int(self.cpu * 100), self.memory * 1024

    # -- XML -------------------------------------------------------------------------

    def _monitoring_xml(self) -> str:
        if not self.monitoring.items:
            return "<MONITORING></MONITORING>"
        return self.monitoring.to_xml("MONITORING")

    def _head(self, history_xml: str, extra_template: str = "") -> str:
        tmpl = self.template.to_xml()
        if extra_template:
            tmpl = tmpl[: -len("</TEMPLATE>")] + extra_template + "</TEMPLATE>"
        return (
            f"<VM><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"{self.perms.to_xml()}<LAST_POLL>{self.last_poll}</LAST_POLL>"
            f"<STATE>{self.state}</STATE><LCM_STATE>{self.lcm_state}</LCM_STATE>"
            f"<PREV_STATE>{self.prev_state}</PREV_STATE>"
            f"<PREV_LCM_STATE>{self.prev_lcm_state}</PREV_LCM_STATE>"
            f"<RESCHED>{self.resched}</RESCHED><STIME>{self.stime}</STIME>"
            f"<ETIME>{self.etime}</ETIME><DEPLOY_ID>{esc(self.deploy_id)}</DEPLOY_ID>"
            f"{self.lock.to_xml()}{self._monitoring_xml()}"
            f"{ids_xml('SCHED_ACTIONS', self.sched_actions)}{tmpl}"
            f"{self.user_template.to_xml('USER_TEMPLATE')}{history_xml}"
            f"{self.snapshots_xml}{self.backups_xml}</VM>"
        )

    def to_xml(self) -> str:
        """The stored body: only the last history record."""
        current = self.current
        records = (
            f"<HISTORY_RECORDS>{current.to_xml()}</HISTORY_RECORDS>"
            if current is not None
            else "<HISTORY_RECORDS/>"
        )
        return self._head(records)

    def bare_xml(self) -> str:
        """The VM inside a ``history`` row (``<HISTORY_RECORDS/>``)."""
        return self._head("<HISTORY_RECORDS/>")

    def info_xml(self, sched_xml: str = "") -> str:
        """``one.vm.info``: every history record; ``sched_xml`` (the scheduled actions)
        ends the TEMPLATE."""
        if len(self.history) < 2 and not sched_xml:
            return self.to_xml()
        records = "".join(h.to_xml() for h in self.history)
        history = (
            f"<HISTORY_RECORDS>{records}</HISTORY_RECORDS>" if records else "<HISTORY_RECORDS/>"
        )
        return self._head(history, sched_xml)

    def short_xml(self) -> str:
        """``to_xml_short``: the ``one.vmpool.info`` element."""
        t = self.template
        lock = f"<LOCK><LOCKED>{self.lock.locked}</LOCKED></LOCK>" if self.lock.locked else ""
        disks = "".join(f"<DISK>{_pick(d, _SHORT_DISK_ATTRS)}</DISK>" for d in t.vectors("DISK"))
        nics = "".join(
            f"<NIC>{_pick(n, _SHORT_NIC_FIRST)}{_pick(n, _SHORT_NIC_LAST)}</NIC>"
            for n in sorted(t.vectors("NIC") + t.vectors("NIC_ALIAS"), key=_nic_order)
        )
        graphics = t.get_vector("GRAPHICS")
        gxml = vector_xml("GRAPHICS", graphics) if graphics is not None else ""
        if self.monitoring.items:
            mon = self.monitoring
            mxml = "<MONITORING>" + "".join(
                f"<{n}>{cdata(mon.get(n) or '')}</{n}>"
                for n in ("CPU", "MEMORY", "STATE")
                if mon.get(n) is not None
            )
            mxml += "</MONITORING>"
        else:
            mxml = "<MONITORING/>"
        current = self.current
        records = (
            f"<HISTORY_RECORDS>{current.to_xml_short()}</HISTORY_RECORDS>"
            if current is not None
            else "<HISTORY_RECORDS/>"
        )
        return (
            f"<VM><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"<LAST_POLL>{self.last_poll}</LAST_POLL><STATE>{self.state}</STATE>"
            f"<LCM_STATE>{self.lcm_state}</LCM_STATE><RESCHED>{self.resched}</RESCHED>"
            f"<STIME>{self.stime}</STIME><ETIME>{self.etime}</ETIME>"
            f"<DEPLOY_ID>{esc(self.deploy_id)}</DEPLOY_ID>{lock}"
            f"<TEMPLATE><CPU>{esc(t.get('CPU') or '')}</CPU>"
            f"<MEMORY>{esc(t.get('MEMORY') or '')}</MEMORY>"
            f"<VCPU>{esc(t.get('VCPU') or '')}</VCPU>{disks}{nics}{gxml}</TEMPLATE>"
            f"{mxml}{self._short_user_template()}{records}</VM>"
        )

    def _short_user_template(self) -> str:
        ut = self.user_template
        if not ut.items:
            return "<USER_TEMPLATE/>"
        out = []
        for n in _SHORT_USER_ATTRS:
            value = ut.get(n)
            if value is None or (not value and n in ("LABELS", "ERROR", "SCHED_MESSAGE")):
                continue
            out.append(f"<{n}>{cdata(value)}</{n}>")
        out += [vector_xml("SCHED_ACTION", sa) for sa in ut.vectors("SCHED_ACTION")]
        return "<USER_TEMPLATE>" + "".join(out) + "</USER_TEMPLATE>"

    def columns(self) -> dict[str, Any]:
        short = self.short_xml()
        self._short_cache = short
        cols = owner_columns(self)
        return {
            "uid": cols["uid"],
            "gid": cols["gid"],
            "state": self.state,
            "lcm_state": self.lcm_state,
            "resched": self.resched,
            "owner_u": cols["owner_u"],
            "group_u": cols["group_u"],
            "other_u": cols["other_u"],
            "short_body": short,
        }

    @classmethod
    def from_xml(cls, body: str) -> VirtualMachine:
        root = parse_xml(body)
        # One pass over the children: a find() per field costs ten times more, and a
        # daemon with 10,000 VMs reads every one of them at start.
        kids: dict[Any, Any] = {}
        snapshots = []
        for child in root:
            kids.setdefault(child.tag, child)
            if child.tag == "SNAPSHOTS":
                snapshots.append(child)
        mon = kids.get("MONITORING")
        backups = kids.get("BACKUPS")
        records = kids.get("HISTORY_RECORDS")
        from lxml import etree

        def raw(el: Any) -> str:
            return etree.tostring(el, encoding="unicode", with_tail=False)

        def text(tag: str) -> str:
            el = kids.get(tag)
            return "" if el is None or el.text is None else str(el.text)

        def num(tag: str) -> int:
            try:
                return int(text(tag))
            except ValueError:
                return 0

        history = (
            [History.from_element(h) for h in records.iterchildren("HISTORY")]
            if records is not None
            else []
        )
        vm = cls(
            oid=num("ID"),
            name=text("NAME"),
            uid=num("UID"),
            gid=num("GID"),
            uname=text("UNAME"),
            gname=text("GNAME"),
            perms=_permissions(kids.get("PERMISSIONS")),
            last_poll=num("LAST_POLL"),
            state=num("STATE"),
            lcm_state=num("LCM_STATE"),
            prev_state=num("PREV_STATE"),
            prev_lcm_state=num("PREV_LCM_STATE"),
            resched=num("RESCHED"),
            stime=num("STIME"),
            etime=num("ETIME"),
            deploy_id=text("DEPLOY_ID"),
            lock=Lock.from_xml(root) if "LOCK" in kids else Lock(),
            monitoring=template_of(mon, ".") if mon is not None else Template(),
            sched_actions=ids_of(root, "SCHED_ACTIONS") if "SCHED_ACTIONS" in kids else [],
            template=template_of(root),
            user_template=template_of(root, "USER_TEMPLATE"),
            history=history,
            snapshots_xml="".join(_cdata_raw(raw(s)) for s in snapshots),
            backups_xml=_cdata_raw(raw(backups)) if backups is not None else EMPTY_BACKUPS,
        )
        return vm

    def copy(self) -> VirtualMachine:
        return _copy.deepcopy(self)

    @property
    def clusters(self) -> tuple[int, ...]:
        return ()


def _permissions(node: Any) -> Permissions:
    """``Permissions.from_xml`` in one pass over the bits."""
    if node is None:
        return Permissions()
    bits = {child.tag: child.text for child in node}
    values = []
    for name in Permissions.FIELDS:
        try:
            values.append(int(bits.get(name.upper()) or ""))
        except ValueError:
            values.append(0)
    return Permissions(*values)


def _cdata_raw(text: str) -> str:
    """lxml re-serialises CDATA as escaped text; stored subtrees keep it as rendered."""
    return text.replace("<BACKUP_CONFIG></BACKUP_CONFIG>", "<BACKUP_CONFIG/>").replace(
        "<BACKUP_IDS/>", "<BACKUP_IDS></BACKUP_IDS>"
    )
