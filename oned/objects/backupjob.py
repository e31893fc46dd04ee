"""The BACKUPJOB object (mirrors ``BackupJob.h``/``BackupJob.cc``).

A backup job keeps its configuration in ``TEMPLATE`` (BACKUP_VMS in backup order,
KEEP_LAST, BACKUP_VOLATILE, FS_FREEZE, MODE, INCREMENT_MODE, EXECUTION, DATASTORE_ID,
DISK_IDS, RESET), its ``PRIORITY`` and the four VM lists a run moves: OUTDATED_VMS
(still to back up), BACKING_UP_VMS, UPDATED_VMS and ERROR_VMS. Its scheduled actions
live in ``schedaction_pool``; ``SCHED_ACTIONS`` lists their ids and ``info`` appends
them to the template.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import (
    Lock,
    Permissions,
    copy_object,
    esc,
    ids_of,
    ids_xml,
    int_of,
    owner_columns,
    owner_fields,
    owner_xml,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template

MAX_PRIO, MIN_PRIO, MAX_USER_PRIO = 99, 0, 49
DEFAULT_PRIO = 50
EXECUTIONS = ("SEQUENTIAL", "PARALLEL")

_LEADING_INT = re.compile(r"\s*([+-]?[0-9]+)")
_UINT_MAX = 2**32 - 1


class BackupJobError(ValueError):
    """A template oned refuses; ``str()`` is oned's text."""


def split_uints(text: str) -> list[int]:
    """``one_util::split<unsigned int>``: the comma-separated values ``>>`` reads
    (empty and unreadable parts skipped, negative ones wrapped as unsigned)."""
    out: list[int] = []
    for part in text.split(","):
        m = _LEADING_INT.match(part)
        if not part or m is None:
            continue
        value = int(m.group(1))
        if value < 0:
            value += _UINT_MAX + 1
        if 0 <= value <= _UINT_MAX:
            out.append(value)
    return out


def _unique_consecutive(values: list[int]) -> list[int]:
    """``std::unique``: drops repeated neighbours only."""
    out: list[int] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


def _int_attr(text: str | None) -> int | None:
    m = _LEADING_INT.match(text or "")
    return int(m.group(1)) if m else None


def parse_disk_ids(value: str) -> list[int]:
    """``Backups::parse_disk_ids``: sorted distinct ids (``BackupJobError`` if bad)."""
    if not value:
        return []
    ids: set[int] = set()
    for token in value.split(","):
        if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", token) or int(token) < 0:
            raise BackupJobError(f"Invalid DISK_IDS value: {value}")
        ids.add(int(token))
    return sorted(ids)


@dataclass
class BackupJob:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    lock: Lock = field(default_factory=Lock)
    priority: int = DEFAULT_PRIO
    last_time: int = 0
    last_duration: int = 0
    sched_actions: set[int] = field(default_factory=set)
    updated: set[int] = field(default_factory=set)
    outdated: set[int] = field(default_factory=set)
    backing_up: set[int] = field(default_factory=set)
    error: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "backupjob_pool"

    # -- document ---------------------------------------------------------------------

    def to_xml(self, sched_xml: str = "") -> str:
        """``to_xml_extended``: ``sched_xml`` (the SCHED_ACTION bodies) closes the
        template in ``info``; the stored body has none."""
        tmpl = self.template.to_xml()
        if sched_xml:
            tmpl = tmpl[: -len("</TEMPLATE>")] + sched_xml + "</TEMPLATE>"
        return (
            f"<BACKUPJOB><ID>{self.oid}</ID>{owner_xml(self)}<NAME>{esc(self.name)}</NAME>"
            f"{self.lock.to_xml()}{self.perms.to_xml()}<PRIORITY>{self.priority}</PRIORITY>"
            f"<LAST_BACKUP_TIME>{self.last_time}</LAST_BACKUP_TIME>"
            f"<LAST_BACKUP_DURATION>{self.last_duration}</LAST_BACKUP_DURATION>"
            f"{ids_xml('SCHED_ACTIONS', self.sched_actions)}"
            f"{ids_xml('UPDATED_VMS', self.updated)}{ids_xml('OUTDATED_VMS', self.outdated)}"
            f"{ids_xml('BACKING_UP_VMS', self.backing_up)}{ids_xml('ERROR_VMS', self.error)}"
            f"{tmpl}</BACKUPJOB>"
        )

    def columns(self) -> dict[str, Any]:
        cols = owner_columns(self)
        cols["priority"] = self.priority
        cols["outdated_vms"] = len(self.outdated)
        return cols

    @classmethod
    def from_xml(cls, body: str) -> BackupJob:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID", -1),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            lock=Lock.from_xml(root),
            priority=int_of(root, "PRIORITY", DEFAULT_PRIO),
            last_time=int_of(root, "LAST_BACKUP_TIME"),
            last_duration=int_of(root, "LAST_BACKUP_DURATION"),
            sched_actions=set(ids_of(root, "SCHED_ACTIONS")),
            updated=set(ids_of(root, "UPDATED_VMS")),
            outdated=set(ids_of(root, "OUTDATED_VMS")),
            backing_up=set(ids_of(root, "BACKING_UP_VMS")),
            error=set(ids_of(root, "ERROR_VMS")),
            template=template_of(root),
        )

    def copy(self) -> BackupJob:
        return copy_object(self)

    # -- configuration (``BackupJob::parse``) ------------------------------------------

    def _take(self, name: str) -> str | None:
        value = self.template.get(name)
        self.template.erase(name)
        return value

    def parse(self) -> tuple[list[int], list[int]]:
        """Normalise the template as oned does; returns (new, old) BACKUP_VMS (the old
        value comes from ``BACKUP_VMS_OLD``, set by an update)."""
        keep = _int_attr(self._take("KEEP_LAST"))
        self.template.add("KEEP_LAST", str(keep if keep is not None and keep >= 0 else 0))
        volatile = (self._take("BACKUP_VOLATILE") or "").strip().upper() == "YES"
        self.template.add("BACKUP_VOLATILE", "YES" if volatile else "NO")
        freeze = (self._take("FS_FREEZE") or "").upper()
        self.template.add("FS_FREEZE", freeze if freeze in ("NONE", "AGENT", "SUSPEND") else "NONE")
        mode = (self._take("MODE") or "").upper()
        mode = mode if mode in ("FULL", "INCREMENT") else "FULL"
        self.template.add("MODE", mode)
        if mode == "INCREMENT":
            inc = (self._take("INCREMENT_MODE") or "").upper()
            self.template.add("INCREMENT_MODE", inc if inc in ("CBT", "SNAPSHOT") else "CBT")
        execution = (self._take("EXECUTION") or "").upper()
        self.template.add("EXECUTION", execution if execution in EXECUTIONS else "SEQUENTIAL")
        raw_prio = self._take("PRIORITY")
        prio = _int_attr(raw_prio)
        if prio is not None and MIN_PRIO <= prio <= MAX_PRIO:
            self.priority = prio
        if "DISK_IDS" in self.template:
            value = self._take("DISK_IDS") or ""
            self.template.add("DISK_IDS", ",".join(map(str, parse_disk_ids(value))))
        raw = self._take("BACKUP_VMS")
        vms = _unique_consecutive(split_uints(raw)) if raw is not None else []
        self.template.add("BACKUP_VMS", ",".join(map(str, vms)))
        old = split_uints(self._take("BACKUP_VMS_OLD") or "")
        present = set(vms)
        for ids in (self.updated, self.outdated, self.backing_up, self.error):
            ids.intersection_update(present)
        return vms, old

    # -- runs ----------------------------------------------------------------------------

    def backup_vms(self) -> list[int]:
        return split_uints(self.template.get("BACKUP_VMS") or "")

    def execution(self) -> str:
        value = (self.template.get("EXECUTION") or "").upper()
        return value if value in EXECUTIONS else "SEQUENTIAL"

    def ds_id(self) -> int:
        value = _int_attr(self.template.get("DATASTORE_ID"))
        return -1 if value is None else value

    def reset(self) -> bool:
        return (self.template.get("RESET") or "").strip().upper() == "YES"

    def execute(self, now: int) -> None:
        """``execute``: every BACKUP_VMS becomes outdated (``BackupJobError`` if a run
        is pending)."""
        if self.backing_up or self.outdated:
            raise BackupJobError("Unable to execute Backup Job, pending backups in progress")
        self.error.clear()
        self.updated.clear()
        if self.template.get("BACKUP_VMS") is None:
            raise BackupJobError("Wrong BACKUP_VMS attribute or not defined")
        self.outdated.update(self.backup_vms())
        self.last_time = now
        self.template.erase("ERROR")

    def cancel(self) -> None:
        self.outdated.clear()
        self.backing_up.clear()

    def retry(self) -> None:
        self.outdated |= self.error
        self.error.clear()
        self.template.erase("ERROR")

    def backup_started(self, vid: int) -> None:
        self.outdated.discard(vid)
        self.backing_up.add(vid)

    def backup_finished(self, vid: int, success: bool, now: int) -> None:
        self.backing_up.discard(vid)
        (self.updated if success else self.error).add(vid)
        self.last_duration = now - self.last_time

    def add_error(self, vid: int, message: str, now: int) -> None:
        self.outdated.discard(vid)
        self.error.add(vid)
        self.set_error(message, now)

    def set_error(self, message: str, now: int) -> None:
        """``set_template_error_message``: ``ERROR = "<ctime> : <message>"``."""
        self.template.erase("ERROR")
        self.template.add("ERROR", f"{time.ctime(now)} : {message}")

    def remove_vm(self, vid: int) -> None:
        self.outdated.discard(vid)
        vms = [v for v in self.backup_vms() if v != vid]
        self.template.erase("BACKUP_VMS")
        self.template.add("BACKUP_VMS", ",".join(map(str, vms)))

    def backup_config(self) -> dict[str, str]:
        """``get_backup_config``: what a VM's BACKUP_CONFIG takes from the job."""
        out = {}
        for name in ("KEEP_LAST", "BACKUP_VOLATILE", "FS_FREEZE", "MODE", "INCREMENT_MODE"):
            value = self.template.get(name)
            if value is not None:
                out[name] = value
        disk_ids = self.template.get("DISK_IDS")
        if disk_ids is not None:
            out["DISK_IDS"] = disk_ids
        return out
