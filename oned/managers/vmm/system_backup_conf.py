"""``Backups::parse`` for ``one.vm.updateconf``: the BACKUP_CONFIG section of the
update goes to the VM's BACKUPS element (``KEEP_LAST``, ``BACKUP_VOLATILE``,
``DISK_IDS``, ``FS_FREEZE``, ``MODE``/``INCREMENT_MODE``, ``INTERACTIVE``), with oned's
refusals and the incremental chain reset when its disks change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.errors import InternalError

if TYPE_CHECKING:
    from oned.objects.vm import VirtualMachine


def _bool(text: str) -> bool:
    """``VectorAttribute::vector_value(name, bool&)``: only YES (any case) is true."""
    return text.upper() == "YES"


def _yes(value: bool) -> str:
    return "YES" if value else "NO"


def _disk_ids(vm: VirtualMachine, do_volatile: bool) -> list[int]:
    """``VirtualMachineDisks::backup_disk_ids``."""
    out = []
    for disk in vm.template.vectors("DISK"):
        dtype = disk.get("TYPE", "").upper()
        if dtype in ("SWAP", "CDROM", "RBD_CDROM", "FILESYSTEM") or (
            dtype == "FS" and not do_volatile
        ):
            continue
        raw = disk.get("DISK_ID", "").strip()
        if raw.isdigit():
            out.append(int(raw))
    return out


def _can_increment(vm: VirtualMachine, do_volatile: bool) -> bool:
    """``VirtualMachineDisks::backup_increment``."""
    for disk in vm.template.vectors("DISK"):
        dtype = disk.get("TYPE", "").upper()
        if dtype in ("SWAP", "FILESYSTEM") or (dtype == "FS" and not do_volatile):
            continue
        tm_mad = disk.get("TM_MAD", "").upper()
        fmt = disk.get("FORMAT", "").upper()
        snaps = f"<DISK_ID><![CDATA[{disk.get('DISK_ID', '')}]]></DISK_ID>" in vm.snapshots_xml
        thin = _bool(disk.get("LVM_THIN_ENABLE", ""))
        if (
            (fmt == "QCOW2" and snaps)
            or (fmt == "RAW" and tm_mad in ("SSH", "LOCAL", "SHARED", "QCOW2"))
            or (tm_mad in ("FS_LVM", "FS_LVM_SSH") and not thin)
        ):
            return False
    return True


def backup_config(vm: VirtualMachine, new: dict[str, str], append: bool) -> None:
    """``Backups::parse`` of the BACKUP_CONFIG given to updateconf, into the VM's
    BACKUPS element (its BACKUP_IDS kept)."""
    from lxml import etree

    root = etree.fromstring(vm.backups_xml.encode())
    config = {str(c.tag): c.text or "" for c in root.findall("BACKUP_CONFIG/*")}
    ids = "".join(
        etree.tostring(c, encoding="unicode", with_tail=False) for c in root.findall("BACKUP_IDS")
    )
    do_volatile = _bool(config.get("BACKUP_VOLATILE", ""))
    if new.get("BACKUP_VOLATILE"):
        wanted = _bool(new["BACKUP_VOLATILE"])
    else:
        wanted = do_volatile if append else False
    has_snapshots = bool(vm.template.vectors("SNAPSHOT"))
    increment = _can_increment(vm, wanted) and not has_snapshots
    mode = new.get("MODE", "")
    if mode and not increment and mode.upper() == "INCREMENT":
        why = (
            ", it has snapshots."
            if has_snapshots
            else (", it has disks snapshots or disks are not qcow2.")
        )
        raise InternalError("VM cannot use backup increment mode" + why)
    keep = new.get("KEEP_LAST", "").strip()
    if keep.lstrip("-").isdigit():
        config["KEEP_LAST"] = str(max(0, int(keep)))
    elif not append:
        config.pop("KEEP_LAST", None)
    volatile_changed = False
    if new.get("BACKUP_VOLATILE"):
        flag = _bool(new["BACKUP_VOLATILE"])
        volatile_changed = flag != do_volatile
        config["BACKUP_VOLATILE"] = _yes(flag)
    elif not append:
        volatile_changed = do_volatile
        config["BACKUP_VOLATILE"] = "NO"
    current = config.get("DISK_IDS", "")
    disks_changed = False
    if "DISK_IDS" in new:
        chosen: list[int] = []
        for token in [t for t in new["DISK_IDS"].split(",") if new["DISK_IDS"]]:
            if not token.strip().isdigit():
                raise InternalError(f"Invalid DISK_IDS value: {new['DISK_IDS']}")
            chosen.append(int(token))
        chosen = sorted(set(chosen))
        eligible = _disk_ids(vm, wanted)
        for did in chosen:
            if did not in eligible:
                raise InternalError(f"Invalid DISK_IDS, disk {did} cannot be backed up")
        joined = ",".join(str(d) for d in chosen)
        if chosen:
            config["DISK_IDS"] = joined
        else:
            config.pop("DISK_IDS", None)
        disks_changed = joined != current
    elif not append:
        config.pop("DISK_IDS", None)
        disks_changed = bool(current)
    freeze = new.get("FS_FREEZE", "").upper()
    if freeze:
        config["FS_FREEZE"] = freeze if freeze in ("NONE", "AGENT", "SUSPEND") else "NONE"
    elif not append:
        config["FS_FREEZE"] = "NONE"
    if not increment:
        config.update(INCREMENTAL_BACKUP_ID="-1", LAST_INCREMENT_ID="-1", MODE="FULL")
        config.pop("INCREMENT_MODE", None)
    elif mode or not append:
        new_mode = "INCREMENT" if mode.upper() == "INCREMENT" else "FULL"
        if new_mode != "INCREMENT" or config.get("MODE", "").upper() != "INCREMENT":
            config.update(INCREMENTAL_BACKUP_ID="-1", LAST_INCREMENT_ID="-1")
        config["MODE"] = new_mode
        inc = new.get("INCREMENT_MODE", "").upper()
        if inc:
            config["INCREMENT_MODE"] = inc if inc in ("CBT", "SNAPSHOT") else "CBT"
        elif not append:
            config["INCREMENT_MODE"] = "CBT"
    if increment and (disks_changed or volatile_changed):
        config.update(INCREMENTAL_BACKUP_ID="-1", LAST_INCREMENT_ID="-1")
    if new.get("INTERACTIVE"):
        config["INTERACTIVE"] = _yes(_bool(new["INTERACTIVE"]))
    elif not append:
        config["INTERACTIVE"] = "NO"
    if (
        _bool(config.get("INTERACTIVE", ""))
        and config.get("MODE", "").upper() == "INCREMENT"
        and config.get("INCREMENT_MODE", "").upper() == "SNAPSHOT"
    ):
        raise InternalError("Interactive backups do not support SNAPSHOT increment mode.")
    body = "".join(f"<{k}><![CDATA[{config[k]}]]></{k}>" for k in sorted(config))
    inner = f"<BACKUP_CONFIG>{body}</BACKUP_CONFIG>" if body else "<BACKUP_CONFIG/>"
    vm.backups_xml = f"<BACKUPS>{inner}{ids or '<BACKUP_IDS></BACKUP_IDS>'}</BACKUPS>"
