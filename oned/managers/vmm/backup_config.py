"""A VM's ``BACKUPS`` element (mirrors ``Backups.h``): ``BACKUP_CONFIG`` and the ids of
its backup images, plus the disk selection and the driver lines of a backup
(``VirtualMachine::backup_disk_ids``, ``TransferManager::backup_transfer_commands``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from oned.objects.vm import EMPTY_BACKUPS, VirtualMachine
from oned.template import Template, cdata


def _int(text: str | None, default: int = -1) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return default


@dataclass
class Backups:
    config: dict[str, str] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, vm: VirtualMachine) -> Backups:
        root = etree.fromstring(vm.backups_xml.encode())
        config = {
            str(c.tag): c.text or ""
            for c in root.findall("BACKUP_CONFIG/*")
            if isinstance(c.tag, str)
        }
        ids = [_int(i.text) for i in root.findall("BACKUP_IDS/ID")]
        return cls(config, ids)

    def to_xml(self) -> str:
        if self.config:
            inner = "".join(f"<{k}>{cdata(self.config[k])}</{k}>" for k in sorted(self.config))
            config = f"<BACKUP_CONFIG>{inner}</BACKUP_CONFIG>"
        else:
            config = "<BACKUP_CONFIG/>"
        ids = "".join(f"<ID>{i}</ID>" for i in sorted(set(self.ids)))
        return f"<BACKUPS>{config}<BACKUP_IDS>{ids}</BACKUP_IDS></BACKUPS>"

    def store(self, vm: VirtualMachine) -> None:
        vm.backups_xml = self.to_xml()

    def get_int(self, name: str, default: int = -1) -> int:
        return _int(self.config.get(name), default)

    @property
    def mode(self) -> str:
        """``mode()``: INCREMENT only when configured so, else FULL."""
        return "INCREMENT" if self.config.get("MODE", "").upper() == "INCREMENT" else "FULL"

    def clear_last(self) -> None:
        """``last_backup_clear``."""
        for name in (
            "LAST_DATASTORE_ID",
            "LAST_BRIDGE",
            "LAST_BACKUP_ID",
            "LAST_BACKUP_SIZE",
            "LAST_BACKUP_FORMAT",
        ):
            self.config.pop(name, None)

    def reset_chain(self) -> None:
        if self.config:
            self.config["LAST_INCREMENT_ID"] = "-1"
            self.config["INCREMENTAL_BACKUP_ID"] = "-1"

    def disk_ids(self) -> list[int]:
        """The configured ``DISK_IDS`` (empty: every eligible disk)."""
        raw = self.config.get("DISK_IDS", "")
        return [_int(t) for t in raw.split(",") if t.strip()]


def backup_disk_ids(vm: VirtualMachine, backups: Backups) -> list[int]:
    """``backup_disk_ids``: every disk but SWAP, CDROM, RBD_CDROM and FILESYSTEM ones
    (volatile FS disks only with BACKUP_VOLATILE), in the VM's order, restricted to
    DISK_IDS when configured."""
    volatile = backups.config.get("BACKUP_VOLATILE", "NO").upper() == "YES"
    selected = backups.disk_ids()
    out = []
    for disk in vm.template.vectors("DISK"):
        kind = disk.get("TYPE", "").upper()
        if kind in ("SWAP", "CDROM", "RBD_CDROM", "FILESYSTEM") or (kind == "FS" and not volatile):
            continue
        did = _int(disk.get("DISK_ID"))
        if did < 0 or (selected and did not in selected):
            continue
        out.append(did)
    return out


def backup_size(vm: VirtualMachine, backups: Backups) -> int:
    """``backup_size``: the MB of the disks a backup copies."""
    ids = set(backup_disk_ids(vm, backups))
    return sum(
        _int(d.get("SIZE"), 0) for d in vm.template.vectors("DISK") if _int(d.get("DISK_ID")) in ids
    )


def has_filesystem_disk(vm: VirtualMachine) -> bool:
    return any(d.get("TYPE", "").upper() == "FILESYSTEM" for d in vm.template.vectors("DISK"))


def backups_of_template(oid: int, vm_tmpl: Template, user_tmpl: Template) -> str:
    """``VirtualMachine::insert``: a BACKUP_CONFIG of the allocate template is parsed
    (``Backups::parse``, not appending) into the new VM's BACKUPS element and leaves
    the user template; ``InternalError`` with oned's text when it is wrong."""
    vector = user_tmpl.get_vector("BACKUP_CONFIG")
    if vector is None:
        return EMPTY_BACKUPS
    user_tmpl.erase("BACKUP_CONFIG")
    from oned.managers.vmm.system_backup_conf import backup_config

    probe = VirtualMachine(oid, "", template=vm_tmpl, user_template=user_tmpl)
    backup_config(probe, dict(vector), append=False)
    return Backups.of(probe).to_xml()


def reserved_usage(vm: VirtualMachine, backups: Backups, reset: bool = False) -> dict[str, float]:
    """The DATASTORE quota a backup reserves: the disks' size, and one image unless it
    continues an incremental chain."""
    chained = (
        backups.mode == "INCREMENT"
        and not reset
        and backups.get_int("INCREMENTAL_BACKUP_ID") != -1
        and backups.get_int("LAST_INCREMENT_ID") != -1
    )
    return {"IMAGES": 0.0 if chained else 1.0, "SIZE": float(backup_size(vm, backups))}
